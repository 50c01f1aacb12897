// SPDX-License-Identifier: Apache-2.0
#include "server_harness.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "fetchd/uv/loop.hpp"

namespace fetchd::control::test {

TempDir::TempDir() {
  std::string pattern = "/tmp/fetchd-ctl-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr)
    throw std::system_error(errno, std::generic_category(), "mkdtemp");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void echo(ControlServer& server, ConnectionId id, const ParseResult& parsed) {
  if (const auto* error = std::get_if<ProtocolError>(&parsed)) {
    server.send(id, encode_error(*error));
    return;
  }
  const auto& request = std::get<Request>(parsed);
  server.send(id, encode_result(op_name(request.op), request.req, nlohmann::json{{"connection", id}}));
}

ServerThread::ServerThread(Setup setup, ControlServer::Options options, Handler handler)
    : handler_(std::move(handler)) {
  // The thread owns the promise: set_value may still be running there when this constructor returns.
  std::promise<void> started;
  auto ready = started.get_future();
  thread_ = std::thread([this, started = std::move(started), setup = std::move(setup), options]() mutable {
    run(std::move(setup), options, started);
  });
  try {
    ready.get();
  } catch (...) {
    thread_.join();
    stopped_ = true;
    throw;
  }
}

ServerThread::~ServerThread() {
  stop();
}

void ServerThread::run(Setup setup, ControlServer::Options options, std::promise<void>& started) {
  uv::Loop loop;
  std::optional<ControlServer> server;
  uv::Async wake;
  server.emplace(
      loop.get(),
      [this, &server](ConnectionId id, ParseResult parsed) {
        {
          std::lock_guard lock(closed_mutex_);
          ++lines_;
        }
        handler_(*server, id, std::move(parsed));
      },
      [this](ConnectionId id) {
        std::lock_guard lock(closed_mutex_);
        closed_.push_back(id);
        closed_cv_.notify_all();
      },
      options);
  wake = uv::Async(loop.get(), [this] {
    std::deque<std::function<void()>> tasks;
    {
      std::lock_guard lock(mutex_);
      tasks.swap(tasks_);
    }
    for (auto& t : tasks) t();  // uv_async_send coalesces: drain everything
  });
  server_ = &*server;
  wake_ = &wake;
  try {
    setup(*server);
  } catch (...) {
    server->close([] {});
    wake.close();
    loop.run();
    server.reset();
    started.set_exception(std::current_exception());
    return;
  }
  started.set_value();
  loop.run();      // ends when stop() closed the server and the async handle
  server.reset();  // asserts that close() completed
  int left = 0;
  uv_walk(
      loop.get(), [](uv_handle_t*, void* n) { ++*static_cast<int*>(n); }, &left);
  const int rc = loop.close();
  loop_close_result_ = left == 0 ? rc : UV_EBUSY;
}

void ServerThread::post(std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    tasks_.push_back(std::move(task));
  }
  wake_->send();
}

int ServerThread::stop() {
  if (stopped_) return loop_close_result_;
  stopped_ = true;
  std::promise<void> done;
  post([this, &done] {
    server_->close([this, &done] {
      wake_->close();
      done.set_value();
    });
  });
  if (done.get_future().wait_for(kFailsafe) != std::future_status::ready) {
    ADD_FAILURE() << "ControlServer::close() did not complete";
    std::abort();  // the loop thread cannot be joined
  }
  thread_.join();
  return loop_close_result_;
}

std::vector<ConnectionId> ServerThread::closed() const {
  std::lock_guard lock(closed_mutex_);
  return closed_;
}

bool ServerThread::wait_closed(ConnectionId id) {
  std::unique_lock lock(closed_mutex_);
  return closed_cv_.wait_for(lock, kFailsafe, [&] {
    for (auto c : closed_) {
      if (c == id) return true;
    }
    return false;
  });
}

bool ServerThread::wait_closed_count(std::size_t n) {
  std::unique_lock lock(closed_mutex_);
  return closed_cv_.wait_for(lock, kFailsafe, [&] { return closed_.size() >= n; });
}

std::uint64_t ServerThread::lines() const {
  std::lock_guard lock(closed_mutex_);
  return lines_;
}

namespace {
void set_timeouts(int fd) {
  timeval tv{};
  tv.tv_sec = std::chrono::duration_cast<std::chrono::seconds>(kFailsafe).count();
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}
}  // namespace

Client Client::unix_socket(const std::filesystem::path& path) {
  core::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw std::system_error(errno, std::generic_category(), "socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  set_timeouts(fd.get());
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    throw std::system_error(errno, std::generic_category(), "connect " + path.string());
  }
  return Client(std::move(fd));
}

Client Client::tcp(const std::string& host, int port) {
  sockaddr_storage addr{};
  socklen_t len = 0;
  auto* in = reinterpret_cast<sockaddr_in*>(&addr);
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (inet_pton(AF_INET, host.c_str(), &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
    in->sin_port = htons(static_cast<std::uint16_t>(port));
    len = sizeof *in;
  } else if (inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<std::uint16_t>(port));
    len = sizeof *in6;
  } else {
    throw std::invalid_argument("not a numeric address: " + host);
  }
  core::UniqueFd fd(::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw std::system_error(errno, std::generic_category(), "socket");
  set_timeouts(fd.get());
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    throw std::system_error(errno, std::generic_category(), "connect " + host);
  }
  return Client(std::move(fd));
}

Client::Client(core::UniqueFd fd) : fd_(std::move(fd)) {}

void Client::send(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ADD_FAILURE() << "send: " << std::strerror(errno);
      return;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::optional<std::string> Client::read_line() {
  for (;;) {
    if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    char chunk[65536];
    ssize_t n = ::recv(fd_.get(), chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error_ = n == 0 ? 0 : errno;
      return std::nullopt;
    }
    buffer_.append(chunk, static_cast<std::size_t>(n));
  }
}

bool Client::at_eof() {
  if (!buffer_.empty()) return false;
  char c = 0;
  ssize_t n;
  do {
    n = ::recv(fd_.get(), &c, 1, 0);
  } while (n < 0 && errno == EINTR);
  if (n > 0) buffer_.push_back(c);
  error_ = n < 0 ? errno : 0;
  return n == 0;
}

void Client::shutdown_write() {
  ::shutdown(fd_.get(), SHUT_WR);
}

}  // namespace fetchd::control::test
