// SPDX-License-Identifier: Apache-2.0
#pragma once
// Counts the requests an origin receives, per request target, for tests ("the server saw exactly
// max_redirects + 1 requests"): plug hook() into OriginOptions::on_request. It keeps one entry per distinct
// target, so it belongs in tests, not in a benchmark's origin. Thread-safe: the origin's loop thread counts,
// the test reads and waits.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace fetchd::origin {

struct RequestCounts {
  std::uint64_t total = 0;
  std::map<std::string, std::uint64_t, std::less<>> by_target;  // "/path?query" as requested

  std::uint64_t target(std::string_view target) const;  // exactly this target
  std::uint64_t path(std::string_view path) const;      // this path, with any query or none
  std::uint64_t prefix(std::string_view prefix) const;  // targets that start with prefix
};

class RequestCounter {
 public:
  RequestCounter();

  // For OriginOptions::on_request. It shares the counts, so it stays valid after the counter is gone.
  std::function<void(std::string_view target)> hook() const;

  RequestCounts snapshot() const;
  std::uint64_t total() const { return snapshot().total; }
  std::uint64_t target(std::string_view target) const { return snapshot().target(target); }
  std::uint64_t path(std::string_view path) const { return snapshot().path(path); }
  std::uint64_t prefix(std::string_view prefix) const { return snapshot().prefix(prefix); }
  void reset();

  // Blocks until condition holds (checked at once and after every request), or limit passed: then false.
  bool wait_for(const std::function<bool(const RequestCounts&)>& condition,
                std::chrono::milliseconds limit) const;

 private:
  struct State {
    std::mutex mutex;
    std::condition_variable cv;
    RequestCounts counts;
  };
  std::shared_ptr<State> state_;
};

}  // namespace fetchd::origin
