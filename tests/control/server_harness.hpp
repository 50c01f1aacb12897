// SPDX-License-Identifier: Apache-2.0
#pragma once
// Test support for the control server: a ControlServer on its own loop thread (so that the test thread can
// use plain blocking sockets), and a raw line client. Timeouts are failsafes only: a bug fails the test
// instead of hanging it. Thread: the test's thread, except the handler, which runs on the loop thread.

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "fetchd/control/control_server.hpp"
#include "fetchd/core/unique_fd.hpp"
#include "fetchd/uv/handle.hpp"

namespace fetchd::control::test {

inline constexpr auto kFailsafe = std::chrono::seconds(30);

// A fresh directory under /tmp (short: Unix socket paths are limited to 107 bytes), removed at destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Answers every request with encode_result(op, req, {"connection": id}) and every error with encode_error.
void echo(ControlServer& server, ConnectionId id, const ParseResult& parsed);

class ServerThread {
 public:
  using Handler = std::function<void(ControlServer&, ConnectionId, ParseResult)>;
  using Setup = std::function<void(ControlServer&)>;

  // Constructs the server on the loop thread and runs setup there (e.g. listen_unix); rethrows its exception.
  explicit ServerThread(Setup setup, ControlServer::Options options = {}, Handler handler = echo);
  ~ServerThread();
  ServerThread(const ServerThread&) = delete;
  ServerThread& operator=(const ServerThread&) = delete;

  // Runs f(server) on the loop thread and returns its result; rethrows its exception.
  template <typename F>
  auto call(F f) {
    using R = decltype(f(std::declval<ControlServer&>()));
    auto task =
        std::make_shared<std::packaged_task<R()>>([this, f = std::move(f)]() mutable { return f(*server_); });
    auto future = task->get_future();
    post([task] { (*task)(); });
    if (future.wait_for(kFailsafe) != std::future_status::ready)
      throw std::runtime_error("loop thread timed out");
    return future.get();
  }

  // close() the server, run the loop until it is empty and close it. Returns uv_loop_close()'s result (0 =
  // every handle closed), or UV_EBUSY when handles were left. Idempotent.
  int stop();

  // Connections the close handler reported, in order.
  std::vector<ConnectionId> closed() const;
  // Waits until the close handler ran for id (true) or the failsafe expired (false).
  bool wait_closed(ConnectionId id);
  // Waits until at least n connections were reported closed.
  bool wait_closed_count(std::size_t n);
  std::uint64_t lines() const;  // lines handed to the handler so far

 private:
  void post(std::function<void()> task);
  void run(Setup setup, ControlServer::Options options, std::promise<void>& started);

  Handler handler_;
  ControlServer* server_ = nullptr;  // lives on the loop thread's stack
  uv::Async* wake_ = nullptr;
  std::mutex mutex_;
  std::deque<std::function<void()>> tasks_;
  mutable std::mutex closed_mutex_;
  std::condition_variable closed_cv_;
  std::vector<ConnectionId> closed_;
  std::uint64_t lines_ = 0;
  std::thread thread_;
  bool stopped_ = false;
  int loop_close_result_ = 0;
};

// A blocking client socket with a line reader. Every receive has a failsafe timeout.
class Client {
 public:
  static Client unix_socket(const std::filesystem::path& path);
  static Client tcp(const std::string& host, int port);
  explicit Client(core::UniqueFd fd);

  int fd() const { return fd_.get(); }
  void send(std::string_view bytes);  // all of it (blocking); fails the test on error
  // One line without its '\n'; nullopt on EOF (error() == 0) or an error/timeout (error() = errno).
  std::optional<std::string> read_line();
  int error() const { return error_; }
  // True when the next read sees a clean EOF (no more lines, no reset).
  bool at_eof();
  void shutdown_write();
  void close() { fd_.reset(); }

 private:
  core::UniqueFd fd_;
  std::string buffer_;
  int error_ = 0;
};

}  // namespace fetchd::control::test
