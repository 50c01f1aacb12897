// SPDX-License-Identifier: Apache-2.0
#include "test_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace fetchd::origin::test {

std::string ClientResponse::header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

Client::Client(std::uint16_t port, const char* host) {
  const bool v6 = std::strchr(host, ':') != nullptr;
  fd_ = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  timeval tv{kTimeoutSeconds, 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int rc = 0;
  if (v6) {
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_port = htons(port);
    ::inet_pton(AF_INET6, host, &addr.sin6_addr);
    rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  } else {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    ::inet_pton(AF_INET, host, &addr.sin_addr);
    rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  }
  if (rc != 0) {
    int err = errno;
    ::close(fd_);
    throw std::runtime_error(std::string("connect: ") + std::strerror(err));
  }
}

Client::Client(Client&& other) noexcept : fd_(other.fd_), buffer_(std::move(other.buffer_)) {
  other.fd_ = -1;
}

Client::~Client() {
  if (fd_ >= 0) ::close(fd_);
}

void Client::send(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error(std::string("send: ") + std::strerror(errno));
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

void Client::shutdown_write() {
  if (::shutdown(fd_, SHUT_WR) != 0)
    throw std::runtime_error(std::string("shutdown: ") + std::strerror(errno));
}

bool Client::fill() {
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) throw std::runtime_error("recv: timed out");
    if (n <= 0) return false;
    buffer_.append(buf, static_cast<std::size_t>(n));
    return true;
  }
}

std::string Client::read_line() {
  for (;;) {
    auto lf = buffer_.find("\r\n");
    if (lf != std::string::npos) {
      std::string line = buffer_.substr(0, lf);
      buffer_.erase(0, lf + 2);
      return line;
    }
    if (!fill()) throw std::runtime_error("connection closed inside a response head");
  }
}

ClientResponse Client::read_response(bool head_request) {
  ClientResponse r;
  std::string status_line = read_line();
  if (status_line.rfind("HTTP/1.1 ", 0) != 0 || status_line.size() < 12) {
    throw std::runtime_error("bad status line: " + status_line);
  }
  r.status = std::stoi(status_line.substr(9, 3));
  for (std::string line = read_line(); !line.empty(); line = read_line()) {
    auto colon = line.find(':');
    if (colon == std::string::npos) throw std::runtime_error("bad header line: " + line);
    std::string name = line.substr(0, colon);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    if (r.headers.count(name)) throw std::runtime_error("duplicate header: " + name);
    r.headers[name] = value;
  }
  if (head_request || r.status == 204 || r.status == 304) return r;
  if (!r.has("content-length")) throw std::runtime_error("response without Content-Length");
  const std::size_t length = std::stoull(r.header("content-length"));
  while (buffer_.size() < length) {
    if (!fill()) throw std::runtime_error("connection closed inside a response body");
  }
  r.body = buffer_.substr(0, length);
  buffer_.erase(0, length);
  return r;
}

bool Client::closed_by_server() {
  if (!buffer_.empty()) return false;
  char c = 0;
  for (;;) {
    ssize_t n = ::recv(fd_, &c, 1, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) throw std::runtime_error("recv: timed out");
    if (n > 0) buffer_.push_back(c);
    return n <= 0;
  }
}

std::string Client::read_raw_head() {
  for (;;) {
    auto end = buffer_.find("\r\n\r\n");
    if (end != std::string::npos) {
      std::string head = buffer_.substr(0, end + 4);
      buffer_.erase(0, end + 4);
      return head;
    }
    if (!fill()) throw std::runtime_error("connection closed inside a response head");
  }
}

std::string Client::read_exactly(std::size_t n) {
  while (buffer_.size() < n) {
    if (!fill())
      throw std::runtime_error("connection closed after " + std::to_string(buffer_.size()) + " of " +
                               std::to_string(n) + " bytes");
  }
  std::string out = buffer_.substr(0, n);
  buffer_.erase(0, n);
  return out;
}

int Client::read_to_end(std::string& out, std::size_t max) {
  out = std::move(buffer_);
  buffer_.clear();
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) throw std::runtime_error("recv: timed out");
    if (n < 0) return errno;
    if (n == 0) return 0;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > max) throw std::runtime_error("more than " + std::to_string(max) + " bytes");
  }
}

bool Client::quiet_for(std::chrono::milliseconds limit) {
  if (!buffer_.empty()) return false;
  pollfd p{fd_, POLLIN, 0};
  int rc = 0;
  do {
    rc = ::poll(&p, 1, static_cast<int>(limit.count()));
  } while (rc < 0 && errno == EINTR);
  return rc == 0;
}

void Client::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

std::string request(std::string_view target, std::string_view extra_headers, std::string_view method) {
  std::string out;
  out.append(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: 127.0.0.1\r\n");
  out.append(extra_headers);
  out.append("\r\n");
  return out;
}

}  // namespace fetchd::origin::test
