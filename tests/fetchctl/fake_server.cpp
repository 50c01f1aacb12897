// SPDX-License-Identifier: Apache-2.0
#include "fake_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace fetchd::testing {

namespace {

[[noreturn]] void throw_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// Failsafe for one wait of the server thread; the stop eventfd ends every wait long before.
constexpr int kPollFailsafeMs = 60000;

}  // namespace

FakeServer::FakeServer(std::filesystem::path path, Handler handler) : handler_(std::move(handler)) {
  listener_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listener_) throw_errno("socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string p = path.string();
  if (p.size() >= sizeof addr.sun_path) throw std::runtime_error("socket path too long: " + p);
  std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
  if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw_errno("bind");
  start();
}

FakeServer::FakeServer(Handler handler) : handler_(std::move(handler)) {
  listener_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listener_) throw_errno("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw_errno("bind");
  socklen_t len = sizeof addr;
  if (::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    throw_errno("getsockname");
  port_ = ntohs(addr.sin_port);
  start();
}

void FakeServer::start() {
  if (::listen(listener_.get(), 16) != 0) throw_errno("listen");
  stop_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop_) throw_errno("eventfd");
  thread_ = std::thread([this] { run(); });
}

FakeServer::~FakeServer() {
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(stop_.get(), &one, sizeof one);
  thread_.join();
}

std::vector<std::string> FakeServer::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

std::vector<nlohmann::json> FakeServer::request_json() const {
  std::vector<nlohmann::json> out;
  for (const auto& line : requests()) out.push_back(nlohmann::json::parse(line, nullptr, false));
  return out;
}

std::size_t FakeServer::connections() const {
  std::lock_guard lock(mutex_);
  return connections_;
}

std::string FakeServer::error() const {
  std::lock_guard lock(mutex_);
  return error_;
}

void FakeServer::fail(const std::string& message) {
  std::lock_guard lock(mutex_);
  if (error_.empty()) error_ = message;
}

void FakeServer::run() {
  try {
    for (;;) {
      pollfd fds[2] = {{listener_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
      int rc = ::poll(fds, 2, kPollFailsafeMs);
      if (rc < 0 && errno == EINTR) continue;
      if (rc < 0) throw_errno("poll");
      if (rc == 0 || fds[1].revents != 0) return;
      core::UniqueFd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!conn) throw_errno("accept4");
      {
        std::lock_guard lock(mutex_);
        ++connections_;
      }
      serve(conn.get());
    }
  } catch (const std::exception& e) {
    fail(e.what());
  }
}

void FakeServer::serve(int fd) {
  std::string in;
  std::size_t index = 0;
  char buf[65536];
  for (;;) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    int rc = ::poll(fds, 2, kPollFailsafeMs);
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) throw_errno("poll");
    if (rc == 0 || fds[1].revents != 0) return;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return;  // the client closed (or reset): wait for the next one
    in.append(buf, static_cast<std::size_t>(n));
    std::size_t nl = 0;
    while ((nl = in.find('\n')) != std::string::npos) {
      std::string line = in.substr(0, nl);
      in.erase(0, nl + 1);
      {
        std::lock_guard lock(mutex_);
        index = requests_.size();
        requests_.push_back(line);
      }
      Action action = handler_(nlohmann::json::parse(line, nullptr, false), index);
      for (const auto& text : action.send) {
        std::size_t sent = 0;
        while (sent < text.size()) {
          ssize_t w = ::send(fd, text.data() + sent, text.size() - sent, MSG_NOSIGNAL);
          if (w < 0 && errno == EINTR) continue;
          if (w <= 0) return;  // the client is gone
          sent += static_cast<std::size_t>(w);
        }
      }
      if (action.close) return;
    }
  }
}

std::string ok_reply(const std::string& op, const nlohmann::json& result) {
  return nlohmann::json{{"ok", true}, {"op", op}, {"result", result}}.dump() + "\n";
}

std::string error_reply(const std::string& op, const std::string& code, const std::string& message) {
  return nlohmann::json{{"ok", false}, {"op", op}, {"error", {{"code", code}, {"message", message}}}}.dump() +
         "\n";
}

}  // namespace fetchd::testing
