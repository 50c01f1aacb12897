// SPDX-License-Identifier: Apache-2.0
#pragma once
// thread-pool: pre-emptive threads, one whole blocking attempt each (transfer::perform_blocking: prepare, then
// curl_easy_perform, finish and publish, all inline on the worker). Up to `concurrency` workers take jobs from
// one queue (bounded by capacity(): the scheduler never has more in flight) and hand results back to the
// control loop through a mutex-guarded vector and one uv_async_t.
// Cancel sets the Transfer's flag; its write/xferinfo callback aborts the transfer. curl calls the xferinfo
// callback about once a second even while nothing arrives (measured with curl 7.88 for a stalled connect and
// for a response that never starts), so a stalled transfer stops within about a second.
// limits.rate: the workers share one RateLimiter; a transfer that must wait sleeps in its write callback in
// slices of at most 100 ms, checking its cancel flag (rate_limiter.hpp: the sleep keeps a low-speed floor).
// Thread: every public method on the control loop thread; run_worker() on the workers.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "fetchd/strategy/strategy.hpp"
#include "fetchd/transfer/transfer.hpp"
#include "fetchd/uv/handle.hpp"

namespace fetchd::strategy {

class ThreadPoolStrategy final : public Strategy {
 public:
  // limiter: limits.rate shared by every transfer (nullptr: none).
  ThreadPoolStrategy(const config::StrategyConfig& config, uv_loop_t* loop, ResultCallback on_result,
                     std::shared_ptr<transfer::RateLimiter> limiter = nullptr);
  // Contract shared with the other strategies: destroyed only after drain() called done. If not, in-flight
  // transfers are cancelled and the workers joined here, and no result is delivered any more.
  ~ThreadPoolStrategy() override;

  std::string_view name() const override { return "thread-pool"; }
  int capacity() const override { return capacity_; }
  void submit(core::TransferRequest request) override;
  void cancel(core::JobId id) override;
  void drain(std::function<void()> done) override;
  StrategySnapshot snapshot() const override;
  void progress(std::vector<JobProgress>& out) const override;

 private:
  // The worker that takes a Job owns its Transfer and destroys it right after the attempt: that closes the
  // attempt's connection (a Transfer's easy handle keeps its own connection cache) before the worker opens the
  // next one, so open connections never exceed the number of workers.
  struct Job {
    core::JobId id = 0;
    std::unique_ptr<transfer::Transfer> transfer;
  };
  struct Completion {
    core::JobId id;
    core::TransferResult result;
  };

  // Control loop thread.
  void start_worker_if_needed();
  void on_completions();
  void maybe_finish_drain();
  void stop_workers();

  // Worker threads.
  void run_worker() noexcept;

  int capacity_;
  ResultCallback on_result_;
  uv::Async async_;
  std::shared_ptr<transfer::RateLimiter> limiter_;  // thread-safe; set once

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> queue_;  // guarded by mutex_
  // Every Transfer that exists (queued or running), for cancel() and snapshot(); a worker removes its entry
  // under the lock before it destroys the Transfer.
  std::unordered_map<core::JobId, transfer::Transfer*> live_;  // guarded by mutex_
  std::vector<Completion> completions_;                         // guarded by mutex_
  std::uint64_t finished_bytes_ = 0;                            // guarded by mutex_
  std::size_t idle_ = 0;                                        // guarded by mutex_: workers waiting for a job
  bool stopping_ = false;                                       // guarded by mutex_

  // Control loop state.
  std::vector<std::thread> workers_;
  std::size_t active_ = 0;  // submitted, result not yet delivered
  bool draining_ = false;
  std::function<void()> drain_done_;
};

}  // namespace fetchd::strategy
