// SPDX-License-Identifier: Apache-2.0
#pragma once
// A TCP relay for the fault suite that shows the request heads fetchd sends (the embedded origin's hooks only
// see request targets): used where a case must prove "the request carries Range: bytes=N- and If-Range".
// Used by the strategy cases (fault_test) and the daemon cases (fault_daemon_test) alike, so it depends on
// nothing of fetchd. Thread: any; one relay thread per connection, state under a mutex.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace fetchd::fault {

// A TCP relay on 127.0.0.1 in front of an upstream port that records every request head going through it, so
// a test can see the headers fetchd sends (the origin only shows targets). EOF from either side is passed on
// as a FIN; a reset from upstream is passed on as a reset (SO_LINGER 0) once the client acknowledged every
// byte before it, as the origin's reset_after does. One thread per connection.
class RecordingProxy {
 public:
  struct Head {
    std::string request_line;                                        // "GET /x HTTP/1.1"
    std::vector<std::pair<std::string, std::string>> headers;        // as sent
    std::optional<std::string> header(std::string_view name) const;  // case-insensitive
  };

  explicit RecordingProxy(std::uint16_t upstream_port);
  ~RecordingProxy();
  RecordingProxy(const RecordingProxy&) = delete;
  RecordingProxy& operator=(const RecordingProxy&) = delete;

  std::uint16_t port() const { return port_; }
  std::string url(std::string_view path) const;
  std::vector<Head> heads() const;
  // Heads whose request target starts with prefix.
  std::vector<Head> heads_for(std::string_view prefix) const;
  // Waits until no relayed connection is open (bounded): their descriptors are closed then.
  bool wait_idle(std::chrono::milliseconds limit) const;

 private:
  void accept_loop();
  void relay(int client);
  void record(std::string& pending);

  std::uint16_t upstream_;
  std::uint16_t port_ = 0;
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // eventfd: readable once the proxy stops
  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;
  std::vector<Head> heads_;
  int open_ = 0;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

}  // namespace fetchd::fault
