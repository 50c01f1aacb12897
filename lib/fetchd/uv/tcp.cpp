// SPDX-License-Identifier: Apache-2.0
#include "fetchd/uv/tcp.hpp"

#include <netinet/in.h>

#include <memory>
#include <string_view>

namespace fetchd::uv {

namespace {

struct WriteReq {
  uv_write_t req{};
  std::function<void(int)> done;
};

struct ShutdownReq {
  uv_shutdown_t req{};
  std::function<void(int)> done;
};

}  // namespace

Tcp::Tcp(uv_loop_t* loop) {
  auto box = std::make_unique<Box>();
  check(uv_tcp_init(loop, &box->handle), "uv_tcp_init");
  adopt(box.release());
}

void Tcp::bind(const std::string& host, std::uint16_t port) {
  sockaddr_storage addr{};
  if (uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&addr)) != 0) {
    check(uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&addr)),
          std::string("not a numeric IP address: ") + host);
  }
  check(uv_tcp_bind(get(), reinterpret_cast<const sockaddr*>(&addr), 0), "uv_tcp_bind " + host);
}

void Tcp::listen(int backlog, std::function<void(int)> on_connection) {
  box()->callback.on_connection = std::move(on_connection);
  check(uv_listen(stream(), backlog,
                  [](uv_stream_t* s, int status) noexcept {
                    box_of(reinterpret_cast<uv_tcp_t*>(s)).callback.on_connection(status);
                  }),
        "uv_listen");
}

int Tcp::accept(Tcp& client) {
  return uv_accept(stream(), client.stream());
}

std::uint16_t Tcp::local_port() const {
  sockaddr_storage addr{};
  int len = sizeof addr;
  if (!get() || uv_tcp_getsockname(get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
  return 0;
}

int Tcp::set_nodelay(bool on) {
  return uv_tcp_nodelay(get(), on ? 1 : 0);
}

int Tcp::read_start(std::function<void(std::size_t, uv_buf_t*)> on_alloc,
                    std::function<void(ssize_t, const uv_buf_t*)> on_read) {
  box()->callback.on_alloc = std::move(on_alloc);
  box()->callback.on_read = std::move(on_read);
  return uv_read_start(
      stream(),
      [](uv_handle_t* h, std::size_t suggested, uv_buf_t* buf) noexcept {
        box_of(reinterpret_cast<uv_tcp_t*>(h)).callback.on_alloc(suggested, buf);
      },
      [](uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept {
        box_of(reinterpret_cast<uv_tcp_t*>(s)).callback.on_read(nread, buf);
      });
}

void Tcp::read_stop() {
  if (get()) uv_read_stop(stream());
}

int Tcp::write(std::span<const uv_buf_t> bufs, std::function<void(int)> done) {
  auto w = std::make_unique<WriteReq>();
  w->done = std::move(done);
  w->req.data = w.get();
  int rc = uv_write(&w->req, stream(), bufs.data(), static_cast<unsigned>(bufs.size()),
                    [](uv_write_t* r, int status) noexcept {
                      std::unique_ptr<WriteReq> owned(static_cast<WriteReq*>(r->data));
                      owned->done(status);
                    });
  if (rc == 0) w.release();
  return rc;
}

int Tcp::shutdown(std::function<void(int)> done) {
  auto s = std::make_unique<ShutdownReq>();
  s->done = std::move(done);
  s->req.data = s.get();
  int rc = uv_shutdown(&s->req, stream(), [](uv_shutdown_t* r, int status) noexcept {
    std::unique_ptr<ShutdownReq> owned(static_cast<ShutdownReq*>(r->data));
    owned->done(status);
  });
  if (rc == 0) s.release();
  return rc;
}

std::size_t Tcp::write_queue_size() const {
  return get() ? uv_stream_get_write_queue_size(stream()) : 0;
}

void Tcp::close_then(std::function<void()> on_closed) {
  Box* box = release_box();
  if (!box) return;
  box->callback.on_closed = std::move(on_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&box->handle), [](uv_handle_t* h) noexcept {
    std::unique_ptr<Box> owned(static_cast<Box*>(h->data));
    auto on_closed = std::move(owned->callback.on_closed);
    owned.reset();
    if (on_closed) on_closed();
  });
}

}  // namespace fetchd::uv
