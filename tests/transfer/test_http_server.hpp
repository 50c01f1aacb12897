// SPDX-License-Identifier: Apache-2.0
#pragma once
// A deliberately tiny HTTP/1.1 server for the transfer tests: 127.0.0.1 on an ephemeral port, one
// std::thread, blocking sockets, one connection at a time, one request per connection, canned raw replies
// chosen by path. It is not fetchd's origin server (lib/fetchd/origin): just enough to put curl in the
// situations under test. Thread: the methods may be called from any thread; the server thread only touches
// state under the mutex.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace fetchd::transfer::testutil {

struct Reply {
  std::string bytes;  // status line, headers and body, sent as they are
  bool hold =
      false;  // after sending, keep the connection open until the client closes it (or the server stops)
};

struct RecordedRequest {
  std::string method;
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;
  std::optional<std::string> header(std::string_view name) const;  // case-insensitive
};

// "HTTP/1.1 <status> <reason>" + the extra header lines + Content-Length (unless omitted) + Connection:
// close.
std::string make_reply(int status, std::string_view reason, std::string_view body,
                       const std::vector<std::string>& extra_headers = {}, bool content_length = true);

class TestHttpServer {
 public:
  TestHttpServer();   // binds and starts serving; unknown paths get a 404
  ~TestHttpServer();  // stops the thread and closes every socket
  TestHttpServer(const TestHttpServer&) = delete;
  TestHttpServer& operator=(const TestHttpServer&) = delete;

  void route(const std::string& path, Reply reply);
  std::string url(std::string_view path) const;
  std::uint16_t port() const { return port_; }

  int hits(const std::string& path) const;
  std::vector<RecordedRequest> requests() const;
  // Waits until a `hold` reply has been sent in full. False when `timeout` (a failsafe) passes first.
  bool wait_held(std::chrono::milliseconds timeout);

 private:
  void serve();
  void handle(int fd);
  bool wait_readable(int fd);  // false when stopping

  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  std::uint16_t port_ = 0;
  mutable std::mutex mutex_;
  std::condition_variable held_cv_;
  int held_ = 0;
  std::map<std::string, Reply> routes_;
  std::map<std::string, int> hits_;
  std::vector<RecordedRequest> requests_;
  std::thread thread_;
};

// A port that was bound on 127.0.0.1 and closed again: nothing listens there (connection refused).
std::uint16_t closed_port();

}  // namespace fetchd::transfer::testutil
