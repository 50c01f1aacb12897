// SPDX-License-Identifier: Apache-2.0
#include "test_http_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>

namespace fetchd::transfer::testutil {

namespace {

// Failsafe only: no test waits this long unless something is broken.
constexpr int kIoTimeoutMs = 15000;

[[noreturn]] void throw_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

int bind_loopback(std::uint16_t* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) < 0) {
    int err = errno;
    ::close(fd);
    errno = err;
    throw_errno("bind 127.0.0.1:0");
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

}  // namespace

std::optional<std::string> RecordedRequest::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) return v;
  }
  return std::nullopt;
}

std::string make_reply(int status, std::string_view reason, std::string_view body,
                       const std::vector<std::string>& extra_headers, bool content_length) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n";
  for (const auto& h : extra_headers) out += h + "\r\n";
  if (content_length) out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  out += "Connection: close\r\n\r\n";
  out += body;
  return out;
}

TestHttpServer::TestHttpServer() {
  listen_fd_ = bind_loopback(&port_);
  if (::listen(listen_fd_, 16) < 0) throw_errno("listen");
  if (::pipe2(stop_pipe_, O_CLOEXEC) < 0) throw_errno("pipe2");
  thread_ = std::thread([this] { serve(); });
}

TestHttpServer::~TestHttpServer() {
  char byte = 'x';
  while (::write(stop_pipe_[1], &byte, 1) < 0 && errno == EINTR) {
  }
  thread_.join();
  ::close(listen_fd_);
  ::close(stop_pipe_[0]);
  ::close(stop_pipe_[1]);
}

void TestHttpServer::route(const std::string& path, Reply reply) {
  std::lock_guard lock(mutex_);
  routes_[path] = std::move(reply);
}

std::string TestHttpServer::url(std::string_view path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + std::string(path);
}

int TestHttpServer::hits(const std::string& path) const {
  std::lock_guard lock(mutex_);
  auto it = hits_.find(path);
  return it == hits_.end() ? 0 : it->second;
}

std::vector<RecordedRequest> TestHttpServer::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

bool TestHttpServer::wait_held(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return held_cv_.wait_for(lock, timeout, [this] { return held_ > 0; });
}

bool TestHttpServer::wait_readable(int fd) {
  pollfd fds[2] = {{fd, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
  while (true) {
    int n = ::poll(fds, 2, kIoTimeoutMs);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;  // error or failsafe timeout
    if (fds[1].revents != 0) return false;
    return true;
  }
}

void TestHttpServer::serve() {
  while (wait_readable(listen_fd_)) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    handle(fd);
    ::close(fd);
  }
}

void TestHttpServer::handle(int fd) {
  // Read the request head (no request bodies in these tests).
  std::string head;
  char buf[4096];
  while (head.find("\r\n\r\n") == std::string::npos) {
    if (!wait_readable(fd)) return;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    head.append(buf, static_cast<std::size_t>(n));
  }
  RecordedRequest req;
  std::string_view rest(head);
  auto eol = rest.find("\r\n");
  std::string_view request_line = rest.substr(0, eol);
  rest.remove_prefix(eol + 2);
  auto sp1 = request_line.find(' ');
  auto sp2 = request_line.find(' ', sp1 + 1);
  req.method = std::string(request_line.substr(0, sp1));
  req.target = std::string(request_line.substr(sp1 + 1, sp2 - sp1 - 1));
  while ((eol = rest.find("\r\n")) != 0 && eol != std::string_view::npos) {
    std::string_view line = rest.substr(0, eol);
    rest.remove_prefix(eol + 2);
    auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    req.headers.emplace_back(std::string(trim(line.substr(0, colon))),
                             std::string(trim(line.substr(colon + 1))));
  }
  std::string path = req.target.substr(0, req.target.find('?'));

  Reply reply{make_reply(404, "Not Found", "no such path\n"), false};
  {
    std::lock_guard lock(mutex_);
    if (auto it = routes_.find(path); it != routes_.end()) reply = it->second;
    ++hits_[path];
    requests_.push_back(std::move(req));
  }
  if (!send_all(fd, reply.bytes)) return;
  if (reply.hold) {
    {
      std::lock_guard lock(mutex_);
      ++held_;
    }
    held_cv_.notify_all();
    // Until the client goes away (or the server stops): recv returns 0 on close.
    while (wait_readable(fd)) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
    }
    return;
  }
  // Half-close and wait for the client's close, so that closing never resets a connection with data in
  // flight.
  ::shutdown(fd, SHUT_WR);
  while (wait_readable(fd)) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
  }
}

std::uint16_t closed_port() {
  std::uint16_t port = 0;
  int fd = bind_loopback(&port);
  ::close(fd);
  return port;
}

}  // namespace fetchd::transfer::testutil
