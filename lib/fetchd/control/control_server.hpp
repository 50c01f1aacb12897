// SPDX-License-Identifier: Apache-2.0
#pragma once
// The control socket's server: Unix (and optionally loopback TCP) listeners, one uv stream per connection,
// lines split and parsed (protocol.hpp) and handed to the daemon in order, replies written with bounded
// memory. It knows nothing about jobs: the daemon answers each line through send(). Thread: the control loop
// only.

#include <sys/types.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "fetchd/control/protocol.hpp"

namespace fetchd::control {

using ConnectionId = std::uint64_t;  // never reused within one server; 0 is never an id

namespace detail {
struct ControlServerImpl;
}

class ControlServer {
 public:
  struct Options {
    std::size_t max_line = kMaxLineBytes;
    std::size_t max_connections = 1024;
    // Unwritten reply bytes of one connection above which its input is not read any more (resumed below
    // half).
    std::size_t pause_reading_backlog = 1 << 20;
    // Unwritten bytes above which the connection is dropped (a watcher that does not read).
    std::size_t max_backlog = 16 << 20;
  };

  // Every complete, non-empty line of a connection, parsed, in order. The handler answers with send(), now or
  // later. It may call any method, close() included.
  using LineHandler = std::function<void(ConnectionId, ParseResult)>;
  // Once per connection, after it is gone (peer closed, error, dropped, or close()); send() to it is a no-op.
  using CloseHandler = std::function<void(ConnectionId)>;

  // Two overloads rather than `Options options = {}`: GCC cannot use the member initializers of a nested
  // struct in a default argument of the enclosing class.
  ControlServer(uv_loop_t* loop, LineHandler on_line, CloseHandler on_close);
  ControlServer(uv_loop_t* loop, LineHandler on_line, CloseHandler on_close, Options options);
  ~ControlServer();  // close() must have completed (asserted), like the other uv owners
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Listens on a Unix socket at `path`. The parent directory must exist. An existing socket nobody listens on
  // (connect() is refused) is replaced; one in use is refused ("another fetchd is listening on …"), and so is
  // a path that is not a socket. `mode` (e.g. 0660) and `group` are applied before listen(), so no client can
  // connect under looser permissions. The socket file is removed again by stop_listening()/close(). Throws
  // std::runtime_error naming the path.
  void listen_unix(const std::filesystem::path& path, unsigned mode, std::optional<gid_t> group);
  // Listens on a numeric loopback address (127.0.0.0/8, ::1); anything else throws std::runtime_error, as
  // there is no authentication on this socket. Port 0 picks an ephemeral port. Returns the bound port.
  int listen_tcp(const std::string& host, int port);
  // Takes ownership of an already listening stream socket (systemd socket activation): AF_UNIX, or AF_INET/6
  // on a loopback address. Sets FD_CLOEXEC (systemd passes it without). Throws std::runtime_error (the fd is
  // closed) when it is not a listening stream socket of those kinds. The socket file of an adopted Unix
  // socket belongs to systemd and is never removed.
  void adopt(int fd);

  // Queues one line (a '\n' is appended when missing). Dropped silently when the connection is gone or
  // closing. A line that starts like encode_result/encode_error's (`{"ok":`) counts as the answer to one
  // request: after the peer half-closes its side, the connection closes once every request got its answer and
  // all is written.
  void send(ConnectionId id, std::string line);
  // Hands no more lines of this connection to the handler (the rest of what was read is held, in order)
  // until resume_yielded(), which the owner calls once per loop iteration: a burst of pipelined requests that
  // each cost much (a submit of 10,000 jobs in several lines) then takes turns with the loop's other work
  // instead of holding the loop until the last line. May be called from the handler.
  void yield(ConnectionId id);
  void resume_yielded();
  void stop_listening();  // closes the listeners; existing connections go on. Idempotent.
  // Closes the listeners and every connection (the close handler runs for each); `done` runs once all close
  // callbacks ran (at once when nothing was open). Then the server may be destroyed.
  void close(std::function<void()> done);

  std::size_t connection_count() const;  // open connections (not counting those being closed)
  // Reply bytes of a connection not yet written (0 when unknown): for stats and tests.
  std::size_t pending_bytes(ConnectionId id) const;
  // Whether reading from a connection is paused by backpressure (false when unknown): for stats and tests.
  bool reading_paused(ConnectionId id) const;

 private:
  std::unique_ptr<detail::ControlServerImpl> impl_;
};

}  // namespace fetchd::control
