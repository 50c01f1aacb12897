// SPDX-License-Identifier: Apache-2.0
#pragma once
// curl-multi: one dedicated thread drives a curl multi handle with curl's own loop (curl_multi_perform +
// curl_multi_poll). The control loop hands it work (add, cancel, stop) through a mutex-guarded queue and wakes
// it with curl_multi_wakeup; the thread hands back finish()'s result through the same mutex and one uv_async_t.
// The blocking file steps run on FileWorkers, posted from the control loop, so neither the control loop nor the
// multi thread ever waits for the disk:
//   control: submit → FileWorkers: prepare() → control: add → multi thread: transfer, finish()
//   → control: FileWorkers: publish() → control: result callback.
// limits.rate: a transfer that must wait for the shared RateLimiter pauses (CURL_WRITEFUNC_PAUSE); the
// multi thread resumes the oldest paused transfers with curl_easy_pause(CURLPAUSE_CONT) between
// curl_multi_poll calls, whose timeout it shortens to the limiter's wait.
// Thread: every public method on the control loop thread; run() and everything named multi_* on the multi
// thread only.

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "fetchd/curl/curl.hpp"
#include "fetchd/strategy/file_workers.hpp"
#include "fetchd/strategy/strategy.hpp"
#include "fetchd/transfer/transfer.hpp"
#include "fetchd/uv/handle.hpp"

namespace fetchd::strategy {

class CurlMultiStrategy final : public Strategy, private transfer::RatePauseListener {
 public:
  // file_threads: see FileWorkers (1 without fsync, a few with). limiter: limits.rate shared by every
  // transfer (nullptr: none). Starts the multi thread.
  CurlMultiStrategy(const config::StrategyConfig& config, int file_threads, uv_loop_t* loop,
                    ResultCallback on_result, std::shared_ptr<transfer::RateLimiter> limiter = nullptr);
  // Contract shared with the other strategies: destroyed only after drain() called done. If not (an exception
  // unwinding the owner), the thread is stopped and joined here and no result is delivered any more.
  ~CurlMultiStrategy() override;

  std::string_view name() const override { return "curl-multi"; }
  int capacity() const override { return capacity_; }
  void submit(core::TransferRequest request) override;
  void cancel(core::JobId id) override;
  void drain(std::function<void()> done) override;
  StrategySnapshot snapshot() const override;
  void progress(std::vector<JobProgress>& out) const override;

 private:
  // Control-loop view of a transfer: its file is being prepared, the multi thread has it, or its file is being
  // published.
  enum class Stage { kPreparing, kRunning, kPublishing };
  struct Entry {
    std::unique_ptr<transfer::Transfer> transfer;
    Stage stage = Stage::kPreparing;
    bool cancelled = false;
  };
  // Control loop → multi thread. The Transfer stays owned by the control loop's Entry; the multi thread only
  // drives it between kAdd and the Completion it sends back.
  struct Command {
    enum class Kind { kAdd, kCancel, kStop };
    Kind kind;
    core::JobId id = 0;
    transfer::Transfer* transfer = nullptr;  // kAdd only
  };
  // Multi thread → control loop: exactly one per kAdd.
  struct Completion {
    core::JobId id;
    core::TransferResult result;
  };

  // Control loop thread.
  void prepared(core::JobId id, std::optional<core::TransferResult> early);
  void post(Command command);
  void on_completions();
  void start_publish(core::JobId id, core::TransferResult result);
  void deliver(core::JobId id, core::TransferResult result);
  void maybe_finish_drain();
  void stop_thread();

  // Multi thread.
  void run() noexcept;
  using Running = std::unordered_map<core::JobId, transfer::Transfer*>;
  bool multi_apply(const std::vector<Command>& commands, Running& running, std::vector<Completion>& out);
  void multi_read_done(Running& running, std::vector<Completion>& out);
  void rate_paused(transfer::Transfer& transfer, std::chrono::steady_clock::time_point wake) override;
  void multi_resume_paused(Running& running, std::vector<Completion>& out);
  int multi_poll_timeout_ms();

  int capacity_;
  ResultCallback on_result_;
  FileWorkers file_workers_;
  uv::Async async_;
  // Created and configured here, then driven and cleaned up (curl_multi_cleanup) by the multi thread only.
  // The control loop touches it only through curl_multi_wakeup (thread-safe), under mutex_, and never after it
  // posted kStop, so the wakeup can never race the cleanup.
  curl::Multi multi_;
  CURLM* const wakeup_target_;

  mutable std::mutex mutex_;
  std::vector<Command> commands_;        // guarded by mutex_
  std::vector<Completion> completions_;  // guarded by mutex_

  std::shared_ptr<transfer::RateLimiter> limiter_;  // thread-safe; set once
  struct Paused {
    core::JobId id;
    transfer::Transfer* transfer;
  };
  std::deque<Paused> paused_;  // multi thread only: transfers the limiter paused, oldest first

  // Control loop state.
  std::unordered_map<core::JobId, Entry> entries_;
  std::uint64_t finished_bytes_ = 0;
  bool draining_ = false;
  bool closing_ = false;  // the destructor runs: FileWorkers' last done() callbacks must not start new work
  std::function<void()> drain_done_;

  std::thread thread_;  // last: started once everything above exists
};

}  // namespace fetchd::strategy
