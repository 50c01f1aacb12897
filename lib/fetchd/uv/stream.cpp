// SPDX-License-Identifier: Apache-2.0
#include "fetchd/uv/stream.hpp"

#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cassert>
#include <memory>
#include <utility>

namespace fetchd::uv {

namespace {

struct WriteReq {
  uv_write_t req{};
  std::string data;
  std::function<void(int)> done;
};

struct ShutdownReq {
  uv_shutdown_t req{};
  std::function<void(int)> done;
};

}  // namespace

Stream::Stream(uv_loop_t* loop, Kind kind) {
  auto box = std::make_unique<Box>();
  // An uninitialised handle must not be passed to uv_close: the Box is ours until init succeeded.
  if (kind == Kind::kPipe) {
    check(uv_pipe_init(loop, &box->handle.pipe, 0), "uv_pipe_init");
  } else {
    check(uv_tcp_init(loop, &box->handle.tcp), "uv_tcp_init");
  }
  box->handle.handle.data = box.get();
  box_ = box.release();
}

Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    close();
    box_ = std::exchange(other.box_, nullptr);
  }
  return *this;
}

Stream::Kind Stream::kind() const {
  assert(box_);
  return box_->handle.handle.type == UV_NAMED_PIPE ? Kind::kPipe : Kind::kTcp;
}

void Stream::open(int fd) {
  if (kind() == Kind::kPipe) {
    check(uv_pipe_open(&box_->handle.pipe, fd), "uv_pipe_open");
  } else {
    check(uv_tcp_open(&box_->handle.tcp, fd), "uv_tcp_open");
  }
}

void Stream::bind_tcp(const std::string& host, std::uint16_t port) {
  assert(kind() == Kind::kTcp);
  sockaddr_storage addr{};
  if (uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&addr)) != 0) {
    check(uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&addr)),
          "not a numeric IP address: " + host);
  }
  check(uv_tcp_bind(&box_->handle.tcp, reinterpret_cast<const sockaddr*>(&addr), 0), "uv_tcp_bind " + host);
}

void Stream::listen(int backlog, std::function<void(int)> on_connection) {
  box_->callback.on_connection = std::move(on_connection);
  check(uv_listen(stream(), backlog,
                  [](uv_stream_t* s, int status) noexcept {
                    guarded("connection", [&] { box_of(s).callback.on_connection(status); });
                  }),
        "uv_listen");
}

int Stream::accept(Stream& client) {
  if (!box_ || !client.box_) return UV_EBADF;
  return uv_accept(stream(), client.stream());
}

int Stream::fileno() const {
  uv_os_fd_t fd = -1;
  if (!box_ || uv_fileno(&box_->handle.handle, &fd) != 0) return -1;
  return fd;
}

std::uint16_t Stream::local_port() const {
  if (!box_ || kind() != Kind::kTcp) return 0;
  sockaddr_storage addr{};
  int len = sizeof addr;
  if (uv_tcp_getsockname(&box_->handle.tcp, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
  return 0;
}

int Stream::set_nodelay(bool on) {
  if (!box_ || kind() != Kind::kTcp) return UV_EINVAL;
  return uv_tcp_nodelay(&box_->handle.tcp, on ? 1 : 0);
}

int Stream::read_start(std::function<void(std::size_t, uv_buf_t*)> on_alloc,
                       std::function<void(ssize_t, const uv_buf_t*)> on_read) {
  if (!box_) return UV_EBADF;
  box_->callback.on_alloc = std::move(on_alloc);
  box_->callback.on_read = std::move(on_read);
  return uv_read_start(
      stream(),
      [](uv_handle_t* h, std::size_t suggested, uv_buf_t* buf) noexcept {
        *buf = uv_buf_init(nullptr, 0);  // libuv reports UV_ENOBUFS if the callback leaves it empty
        guarded("alloc", [&] { box_of(h).callback.on_alloc(suggested, buf); });
      },
      [](uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept {
        guarded("read", [&] { box_of(s).callback.on_read(nread, buf); });
      });
}

void Stream::read_stop() {
  if (box_) uv_read_stop(stream());
}

int Stream::write(std::string data, std::function<void(int)> done) {
  if (!box_) return UV_EBADF;
  auto w = std::make_unique<WriteReq>();
  w->data = std::move(data);
  w->done = std::move(done);
  w->req.data = w.get();
  // The buffer points into the request's own string, which no longer moves.
  uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  int rc = uv_write(&w->req, stream(), &buf, 1, [](uv_write_t* r, int status) noexcept {
    std::unique_ptr<WriteReq> owned(static_cast<WriteReq*>(r->data));
    guarded("write", [&] { owned->done(status); });
  });
  if (rc == 0) w.release();
  return rc;
}

int Stream::shutdown(std::function<void(int)> done) {
  if (!box_) return UV_EBADF;
  auto s = std::make_unique<ShutdownReq>();
  s->done = std::move(done);
  s->req.data = s.get();
  int rc = uv_shutdown(&s->req, stream(), [](uv_shutdown_t* r, int status) noexcept {
    std::unique_ptr<ShutdownReq> owned(static_cast<ShutdownReq*>(r->data));
    guarded("shutdown", [&] { owned->done(status); });
  });
  if (rc == 0) s.release();
  return rc;
}

std::size_t Stream::write_queue_size() const {
  return box_ ? uv_stream_get_write_queue_size(stream()) : 0;
}

void Stream::close_then(std::function<void()> on_closed) {
  Box* box = std::exchange(box_, nullptr);
  if (!box) return;
  box->callback.on_closed = std::move(on_closed);
  uv_close(&box->handle.handle, [](uv_handle_t* h) noexcept {
    std::unique_ptr<Box> owned(static_cast<Box*>(h->data));
    auto on_closed = std::move(owned->callback.on_closed);
    owned.reset();
    if (on_closed) guarded("close", [&] { on_closed(); });
  });
}

}  // namespace fetchd::uv
