// SPDX-License-Identifier: Apache-2.0
#pragma once
// event-loop on several cores (strategy.threads > 1): one thread per loop, each running its own uv loop with an
// EventLoopStrategy (its own curl multi handles, sockets and timers) for its share of the concurrency. A job
// stays on the loop that started it. The control loop keeps the queue and the scheduler: submit() hands the
// request to the least busy loop through that loop's inbox (a mutex-guarded vector and one uv_async_t), and the
// results come back the same way to one uv_async_t on the control loop. Both sides take the whole queue per
// wake-up, so a busy run pays one wake-up per batch, not per file.
// snapshot() and progress() report what each loop published at its last tick (every kTickMs).
// Thread: the Strategy methods on the control loop thread; everything of a loop on its own thread.

#include <atomic>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "fetchd/config/config.hpp"
#include "fetchd/strategy/strategy.hpp"
#include "fetchd/transfer/rate_limiter.hpp"
#include "fetchd/uv/handle.hpp"

namespace fetchd::strategy {

class LoopThreadsStrategy final : public Strategy {
 public:
  static constexpr std::uint64_t kTickMs = 250;

  // threads >= 2 loops share config.concurrency (each at least 1); file_threads and limiter as for
  // EventLoopStrategy (one limiter, shared by every loop: it is thread-safe).
  LoopThreadsStrategy(const config::StrategyConfig& config, int threads, int file_threads, uv_loop_t* loop,
                      ResultCallback on_result, std::shared_ptr<transfer::RateLimiter> limiter = nullptr);
  ~LoopThreadsStrategy() override;

  std::string_view name() const override { return "event-loop"; }
  int capacity() const override { return capacity_; }
  void submit(core::TransferRequest request) override;
  void cancel(core::JobId id) override;
  void drain(std::function<void()> done) override;
  StrategySnapshot snapshot() const override;
  void progress(std::vector<JobProgress>& out) const override;

  int threads() const { return static_cast<int>(loops_.size()); }

 private:
  struct Command {
    enum class Kind { kSubmit, kCancel, kDrain } kind = Kind::kSubmit;
    core::TransferRequest request;  // kSubmit
    core::JobId id = 0;             // kCancel
  };
  struct Loop {
    int capacity = 0;
    int active = 0;  // control loop thread only
    std::thread thread;
    std::mutex mutex;
    std::vector<Command> inbox;      // guarded by mutex
    uv_async_t* wake = nullptr;      // the loop's inbox handle; guarded by mutex, nullptr once it closed
    std::vector<JobProgress> ticks;  // guarded by mutex: the in-flight transfers at the last tick
    std::atomic<std::uint64_t> bytes{0};  // body bytes of its finished and in-flight transfers, at the last tick
  };
  struct Outcome {
    Loop* loop = nullptr;
    std::optional<core::TransferResult> result;  // none: that loop has drained and its thread ends
  };

  void run_loop(Loop& loop, config::StrategyConfig config, int file_threads,
                std::shared_ptr<transfer::RateLimiter> limiter, std::promise<void>* ready);
  void post(Loop& loop, Command command);
  void report(Outcome outcome);  // any loop's thread
  void on_outcomes();            // control loop
  void finish_drain();

  int capacity_;
  ResultCallback on_result_;
  std::vector<std::unique_ptr<Loop>> loops_;
  std::unordered_map<core::JobId, Loop*> owner_;  // in-flight jobs
  std::uint64_t finished_bytes_ = 0;              // reported by results (for snapshot between ticks)
  std::mutex outcomes_mutex_;
  std::vector<Outcome> outcomes_;  // guarded by outcomes_mutex_
  uv::Async outcomes_async_;
  std::size_t drained_ = 0;
  bool draining_ = false;
  bool joined_ = false;
  std::function<void()> drain_done_;
};

}  // namespace fetchd::strategy
