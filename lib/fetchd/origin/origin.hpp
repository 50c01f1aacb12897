// SPDX-License-Identifier: Apache-2.0
#pragma once
// fetchd's embedded HTTP/1.1 origin server on loopback: deterministic bodies (/bytes/<n>?seed=<s>, with
// Range), status codes (/status/<code>), injected latency (OriginOptions::latency, ?latency=<duration>), and
// the fault modes of the fault suite (truncation, reset, stall, trickle, endless and broken framing, bad
// Content-Length, huge heads, redirect loops, digests...; docs/origin.md lists every route and parameter).
// `fetchd origin` runs it as a process for `fetchd bench`; tests run it in-process with OriginThread.
// Keep-alive, pipelining, GET and HEAD; bodies are generated as they are sent, in bounded chunks with
// backpressure, and every wait is a timer on the loop, so no connection holds up another.

#include <uv.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "fetchd/origin/origin_options.hpp"
#include "fetchd/uv/handle.hpp"

namespace fetchd::origin {

struct OriginStats {
  std::uint64_t connections = 0;             // open now
  std::uint64_t max_connections = 0;         // most open at once since start or reset_max()
  std::uint64_t connections_total = 0;       // accepted since start
  std::uint64_t requests_total = 0;          // parsed since start (including refused ones)
  std::uint64_t requests_in_flight = 0;      // parsed, response not completely written yet
  std::uint64_t max_requests_in_flight = 0;  // most in flight at once since start or reset_max()
  std::uint64_t bytes_sent = 0;              // response bytes (head and body) the kernel accepted
};

// The live counters behind OriginStats. Written by the origin's loop thread only; snapshot() and reset_max()
// may be called from any thread (relaxed atomics: each value is exact, a snapshot is not one instant).
class OriginCounters {
 public:
  OriginStats snapshot() const;
  void reset_max();  // the maxima restart from the current values

  // Loop thread only.
  void connection_opened();
  void connection_closed();
  void request_started();
  void request_finished();
  void add_bytes_sent(std::uint64_t n) {
    bytes_sent_.fetch_add(n, std::memory_order_relaxed);
    changed();
  }

  // Any thread: blocks until `condition` holds for a snapshot, or `limit` passed (then false). Woken by every
  // counter change, so a test waits for the server's state instead of polling it.
  bool wait_for(const std::function<bool(const OriginStats&)>& condition,
                std::chrono::milliseconds limit) const;

 private:
  void changed();  // wakes wait_for(); costs one fence and a load while nobody waits

  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;
  mutable std::atomic<int> waiters_{0};
  std::atomic<std::uint64_t> connections_{0};
  std::atomic<std::uint64_t> max_connections_{0};
  std::atomic<std::uint64_t> connections_total_{0};
  std::atomic<std::uint64_t> requests_total_{0};
  std::atomic<std::uint64_t> requests_in_flight_{0};
  std::atomic<std::uint64_t> max_requests_in_flight_{0};
  std::atomic<std::uint64_t> bytes_sent_{0};
};

// The server, on a loop the caller runs. Listens from construction (throws uv::Error when it cannot bind).
// close() (or the destructor) stops listening and closes every connection; the handles' memory goes back in
// the close callbacks, so the caller then runs the loop until it is empty. Writing to a client that is gone
// raises SIGPIPE: the caller's process ignores it (fetchd's main() does). Thread: the loop's thread only,
// except stats(), reset_max() and counters().
class Origin {
 public:
  static constexpr int kListenBacklog = 4096;

  Origin(uv_loop_t* loop, OriginOptions options);
  ~Origin();
  Origin(const Origin&) = delete;
  Origin& operator=(const Origin&) = delete;

  std::uint16_t port() const;
  std::string url(std::string_view path) const;  // "http://127.0.0.1:PORT" + path ("[::1]" for IPv6)
  OriginStats stats() const { return counters()->snapshot(); }
  void reset_max() { counters()->reset_max(); }
  // Shared, so that the counters stay readable after the Origin is gone.
  const std::shared_ptr<OriginCounters>& counters() const;
  void close();  // idempotent

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// An Origin on its own thread and loop, for tests and tools. The constructor returns once the server listens
// (and rethrows if it could not start); stop() or the destructor shut it down cleanly and join. SIGPIPE is
// blocked on the internal thread, so a test binary need not ignore it. Thread: any one thread (the owner);
// the server itself runs on the internal thread.
class OriginThread {
 public:
  explicit OriginThread(OriginOptions options = {});
  ~OriginThread();
  OriginThread(const OriginThread&) = delete;
  OriginThread& operator=(const OriginThread&) = delete;

  std::uint16_t port() const { return port_; }
  std::string url(std::string_view path) const;
  OriginStats stats() const { return counters_->snapshot(); }
  bool wait_for(const std::function<bool(const OriginStats&)>& condition,
                std::chrono::milliseconds limit) const {
    return counters_->wait_for(condition, limit);
  }
  void reset_max() { counters_->reset_max(); }

  // Stops the server: closes all handles, runs the loop until it is empty, closes it and joins. Returns 0
  // when uv_loop_close() succeeded with no handle left behind, else a uv error (UV_EBUSY). Idempotent.
  int stop();

 private:
  void run(OriginOptions options, std::promise<void>& started);

  std::thread thread_;
  std::uint16_t port_ = 0;
  std::string base_url_;
  std::shared_ptr<OriginCounters> counters_;
  uv::Async* stop_async_ = nullptr;  // lives on the server thread's stack until the loop is done
  bool stopped_ = false;
  int loop_close_result_ = 0;
};

}  // namespace fetchd::origin
