// SPDX-License-Identifier: Apache-2.0
#include "recording_proxy.hpp"

#include <fmt/format.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace fetchd::fault {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

bool write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace

// ------------------------------------------------------------------------------------------------ proxy

std::optional<std::string> RecordingProxy::Head::header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (iequals(n, name)) return v;
  }
  return std::nullopt;
}

RecordingProxy::RecordingProxy(std::uint16_t upstream_port) : upstream_(upstream_port) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 128) != 0) {
    throw std::runtime_error(std::string("RecordingProxy: ") + std::strerror(errno));
  }
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC);
  acceptor_ = std::thread([this] { accept_loop(); });
}

RecordingProxy::~RecordingProxy() {
  std::uint64_t one = 1;
  (void)!::write(stop_fd_, &one, sizeof one);
  acceptor_.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
  ::close(listen_fd_);
  ::close(stop_fd_);
}

std::string RecordingProxy::url(std::string_view path) const {
  return fmt::format("http://127.0.0.1:{}{}", port_, path);
}

std::vector<RecordingProxy::Head> RecordingProxy::heads() const {
  std::lock_guard lock(mutex_);
  return heads_;
}

std::vector<RecordingProxy::Head> RecordingProxy::heads_for(std::string_view prefix) const {
  std::vector<Head> out;
  for (auto& h : heads()) {
    auto sp = h.request_line.find(' ');
    std::string_view target =
        sp == std::string::npos ? std::string_view() : std::string_view(h.request_line).substr(sp + 1);
    if (target.starts_with(prefix)) out.push_back(h);
  }
  return out;
}

bool RecordingProxy::wait_idle(std::chrono::milliseconds limit) const {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, limit, [&] { return open_ == 0; });
}

void RecordingProxy::accept_loop() {
  for (;;) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[1].revents != 0) return;
    if ((p[0].revents & POLLIN) == 0) continue;
    int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    std::lock_guard lock(mutex_);
    ++open_;
    threads_.emplace_back([this, client] { relay(client); });
  }
}

void RecordingProxy::record(std::string& pending) {
  for (;;) {
    auto end = pending.find("\r\n\r\n");
    if (end == std::string::npos) return;
    std::string head = pending.substr(0, end);
    pending.erase(0, end + 4);
    Head h;
    std::size_t pos = 0;
    bool first = true;
    while (pos <= head.size()) {
      auto nl = head.find("\r\n", pos);
      std::string line = head.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
      if (first) {
        h.request_line = line;
        first = false;
      } else if (auto colon = line.find(':'); colon != std::string::npos) {
        std::string value = line.substr(colon + 1);
        value.erase(0, value.find_first_not_of(" \t"));
        h.headers.emplace_back(line.substr(0, colon), value);
      }
      if (nl == std::string::npos) break;
      pos = nl + 2;
    }
    std::lock_guard lock(mutex_);
    heads_.push_back(std::move(h));
  }
}

void RecordingProxy::relay(int client) {
  int upstream = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(upstream_);
  bool ok = upstream >= 0 && ::connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  std::string pending;
  bool client_eof = false;
  bool upstream_eof = false;
  bool reset = false;
  char buf[64 * 1024];
  while (ok && !(client_eof && upstream_eof)) {
    pollfd p[3] = {{client, static_cast<short>(client_eof ? 0 : POLLIN), 0},
                   {upstream, static_cast<short>(upstream_eof ? 0 : POLLIN), 0},
                   {stop_fd_, POLLIN, 0}};
    if (::poll(p, 3, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[2].revents != 0) break;
    if (!client_eof && (p[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      ssize_t n = ::recv(client, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        client_eof = true;
        if (n < 0) break;  // the client reset: drop both
        ::shutdown(upstream, SHUT_WR);
      } else {
        pending.append(buf, static_cast<std::size_t>(n));
        record(pending);
        if (!write_all(upstream, buf, static_cast<std::size_t>(n))) break;
      }
    }
    if (!upstream_eof && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      ssize_t n = ::recv(upstream, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        reset = errno == ECONNRESET;
        break;
      }
      if (n == 0) {
        upstream_eof = true;
        ::shutdown(client, SHUT_WR);
      } else if (!write_all(client, buf, static_cast<std::size_t>(n))) {
        break;
      }
    }
  }
  if (reset) {
    // As the origin does: wait (1 ms checks, at most 2 s) until the client acknowledged every byte relayed,
    // so that the reset cannot overtake them, then close with SO_LINGER {1, 0}.
    for (int i = 0; i < 2000; ++i) {
      int unacked = 0;
      if (::ioctl(client, SIOCOUTQ, &unacked) != 0 || unacked == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    linger l{1, 0};
    ::setsockopt(client, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  if (upstream >= 0) ::close(upstream);
  ::close(client);
  std::lock_guard lock(mutex_);
  --open_;
  cv_.notify_all();
}

}  // namespace fetchd::fault
