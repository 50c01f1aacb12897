// SPDX-License-Identifier: Apache-2.0
#pragma once
// RAII owner of a uv_tcp_t in the Box style of handle.hpp: bind/listen/accept for servers, read/write for
// connections. Write requests (uv_write_t) are owned here too: each write allocates a small request that is
// freed after its callback ran. Callback trampolines are noexcept: a callback that throws terminates (a bug),
// so the callbacks given here must catch what they can handle themselves. Thread: every method must be called
// on the thread that runs the handle's loop.

#include <sys/socket.h>
#include <sys/types.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "fetchd/uv/handle.hpp"

namespace fetchd::uv {

struct TcpCallbacks {
  std::function<void(int status)> on_connection;
  std::function<void(std::size_t suggested_size, uv_buf_t* buf)> on_alloc;
  std::function<void(ssize_t nread, const uv_buf_t* buf)> on_read;
  std::function<void()> on_closed;
};

class Tcp : public Handle<uv_tcp_t, TcpCallbacks> {
 public:
  Tcp() = default;
  explicit Tcp(uv_loop_t* loop);  // throws Error

  // Binds a numeric IPv4 or IPv6 address ("127.0.0.1", "::1"); port 0 picks an ephemeral port. Throws Error.
  void bind(const std::string& host, std::uint16_t port);
  // Starts listening; on_connection(status) runs once per pending connection (status < 0: accept failed, e.g.
  // EMFILE). Throws Error.
  void listen(int backlog, std::function<void(int status)> on_connection);
  // Accepts a pending connection into client, an initialised Tcp on the same loop. Returns 0 or a uv error.
  int accept(Tcp& client);
  // The port the socket is bound to, or 0 if unknown.
  std::uint16_t local_port() const;
  int set_nodelay(bool on);

  // on_alloc hands libuv a buffer, on_read receives nread bytes of it (0: nothing this time, < 0: UV_EOF or
  // an error; the stream should then be closed). The buffer may be reused once on_read returns.
  int read_start(std::function<void(std::size_t, uv_buf_t*)> on_alloc,
                 std::function<void(ssize_t, const uv_buf_t*)> on_read);
  void read_stop();

  // Queues bufs; the memory they point to must stay valid until done(status) runs, exactly once, on the loop
  // thread: status 0, a uv error, or UV_ECANCELED when the handle is closed first. Returns 0 or a uv error
  // (then done never runs).
  int write(std::span<const uv_buf_t> bufs, std::function<void(int status)> done);
  // Half-closes (FIN) once the queued writes are done; done(status) runs exactly once, like write's. Returns
  // 0 or a uv error (then done never runs).
  int shutdown(std::function<void(int status)> done);
  // Bytes queued in libuv and not yet handed to the kernel.
  std::size_t write_queue_size() const;

  // Like close(), then calls on_closed from the close callback. libuv runs the callbacks of cancelled writes
  // before that, so an object that owns this Tcp and is referenced by pending writes can delete itself there.
  void close_then(std::function<void()> on_closed);

 private:
  uv_stream_t* stream() const { return reinterpret_cast<uv_stream_t*>(get()); }
};

}  // namespace fetchd::uv
