// SPDX-License-Identifier: Apache-2.0
#pragma once
// RAII owner of a libuv stream that is either a Unix-domain socket (uv_pipe_t) or a TCP socket (uv_tcp_t), in
// the Box style of handle.hpp, for servers that treat both alike (the control socket). Listening, accepting,
// reading, and writes that own their bytes. Callback trampolines are noexcept: a callback that throws is a
// bug (logged at critical), so callbacks must handle their own errors. Thread: every method must be called on
// the thread that runs the handle's loop.

#include <sys/types.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>

#include "fetchd/uv/error.hpp"

namespace fetchd::uv {

struct StreamCallbacks {
  std::function<void(int status)> on_connection;
  std::function<void(std::size_t suggested_size, uv_buf_t* buf)> on_alloc;
  std::function<void(ssize_t nread, const uv_buf_t* buf)> on_read;
  std::function<void()> on_closed;
};

// The Box holds a uv_any_handle: the handle's own type field says which kind was initialised. (Not a
// Handle<T>: that template reaches the handle's `data` through T, which a union does not have.)
class Stream {
 public:
  enum class Kind { kPipe, kTcp };

  Stream() = default;
  Stream(uv_loop_t* loop, Kind kind);  // uv_pipe_init (no IPC) or uv_tcp_init; throws Error
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  Stream(Stream&& other) noexcept : box_(std::exchange(other.box_, nullptr)) {}
  Stream& operator=(Stream&& other) noexcept;
  ~Stream() { close(); }

  explicit operator bool() const { return box_ != nullptr; }
  Kind kind() const;

  // Takes over an open socket of the right family (uv_pipe_open / uv_tcp_open, which make it non-blocking).
  // On success the handle owns fd and closes it in uv_close; on failure (throws Error) the caller still owns
  // it.
  void open(int fd);
  // TCP only: binds a numeric IPv4 or IPv6 address; port 0 picks an ephemeral port. Throws Error. libuv may
  // report a bind error (EADDRINUSE) only at listen().
  void bind_tcp(const std::string& host, std::uint16_t port);
  // on_connection(status) runs once per pending connection (status < 0: accept failed, e.g. EMFILE). Throws
  // Error.
  void listen(int backlog, std::function<void(int status)> on_connection);
  // Accepts a pending connection into client, an initialised Stream of the same kind on the same loop.
  // Returns 0 or a uv error.
  int accept(Stream& client);

  // The socket's descriptor (still owned by the handle), or -1.
  int fileno() const;
  // TCP only: the bound port, or 0 if unknown.
  std::uint16_t local_port() const;
  // TCP only: disables Nagle's algorithm. Returns 0 or a uv error.
  int set_nodelay(bool on);

  // on_alloc hands libuv a buffer, on_read receives nread bytes of it (0: nothing this time; < 0: UV_EOF or
  // an error). The buffer may be reused once on_read returns. Returns 0 or a uv error.
  int read_start(std::function<void(std::size_t, uv_buf_t*)> on_alloc,
                 std::function<void(ssize_t, const uv_buf_t*)> on_read);
  void read_stop();

  // Queues data (owned by the request until done); done(status) runs exactly once on the loop thread: 0, a uv
  // error (EPIPE when the peer is gone: SIGPIPE must be ignored), or UV_ECANCELED when the handle is closed
  // first. Returns 0 or a uv error (then done never runs).
  int write(std::string data, std::function<void(int status)> done);
  // Half-closes (FIN) once the queued writes are done; done(status) runs exactly once, like write's. Returns
  // 0 or a uv error (then done never runs).
  int shutdown(std::function<void(int status)> done);
  // Bytes queued in libuv and not yet handed to the kernel.
  std::size_t write_queue_size() const;

  // Like close(), then calls on_closed from the close callback. libuv runs the callbacks of cancelled writes
  // before that, so an object that owns this Stream and is referenced by pending writes can delete itself
  // there.
  void close_then(std::function<void()> on_closed);
  // Starts closing; the memory goes in the close callback (write callbacks run first with UV_ECANCELED).
  // Idempotent.
  void close() { close_then(nullptr); }

 private:
  struct Box {
    uv_any_handle handle{};
    StreamCallbacks callback;
  };
  static Box& box_of(void* uv_handle) {
    return *static_cast<Box*>(static_cast<uv_handle_t*>(uv_handle)->data);
  }
  uv_stream_t* stream() const { return box_ ? &box_->handle.stream : nullptr; }

  Box* box_ = nullptr;
};

}  // namespace fetchd::uv
