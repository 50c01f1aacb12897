// SPDX-License-Identifier: Apache-2.0
#pragma once
// The scheduler owns the queue of runnable jobs, keeps at most strategy.capacity() transfers in flight and at
// most limits.per_host to one origin, pauses an origin that answered 429/503 with Retry-After, retries what
// each job's retry policy allows after an exponential backoff with jitter (honouring Retry-After), and decides
// each job's fate. It is strategy-agnostic: it only sees the Strategy interface.
// Thread: the control loop thread only.

#include <chrono>
#include <set>
#include <functional>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "fetchd/core/transfer_types.hpp"
#include "fetchd/stats/stats.hpp"
#include "fetchd/strategy/strategy.hpp"
#include "fetchd/uv/handle.hpp"

namespace fetchd::scheduler {

// The delay before attempt `attempt + 1`, given that `attempt` (>= 1) attempts failed: min(max, initial *
// multiplier^(attempt-1)), with full jitter over [0, that] unless jitter is none, but never earlier than a
// Retry-After (clamped to retry_after_max).
std::chrono::milliseconds retry_delay(const core::RetryPolicy& policy, int attempt,
                                      std::optional<std::chrono::seconds> retry_after, std::mt19937_64& rng);

// Whether the policy's retry_on covers this failure (the attempt count is checked separately).
bool retry_allowed(const core::RetryPolicy& policy, const core::TransferResult& result);

enum class JobState { kQueued, kRunning, kRetryWait, kDone, kFailed, kCancelled };
std::string_view to_string(JobState s);

struct JobRecord {
  core::TransferRequest request;  // request.attempt is the attempt being made or last made
  JobState state = JobState::kQueued;
  core::TransferResult last;      // the latest attempt's result
  std::vector<std::string> attempt_errors;  // one line per failed attempt
  bool interrupted = false;  // cancelled while an attempt ran (that attempt did not fail on its own)
  strategy::Strategy* runner = nullptr;     // the strategy running it (kRunning only)
  std::string origin;                       // "scheme://host:port", what limits.per_host counts
};

class Scheduler {
 public:
  struct Options {
    int per_host = 0;  // simultaneous transfers to one origin; 0 = no limit
    // Called when an attempt starts (state kRunning, request.attempt counts it).
    std::function<void(const JobRecord&)> on_started;
    // Called when an attempt failed and another one is scheduled (state kRetryWait, last = the failure).
    std::function<void(const JobRecord&)> on_retry;
    // Called once per job when it reaches done, failed or cancelled; the scheduler forgets the job afterwards,
    // so memory stays bounded by what is queued, waiting or running.
    std::function<void(const JobRecord&)> on_finished;
    // Called whenever nothing is queued, waiting or running.
    std::function<void()> on_idle;
    // Called when an origin answered 429/503 with Retry-After and is paused for that long (a fleet node tells
    // the others; pause() is how they apply it).
    std::function<void(const std::string& origin, std::chrono::milliseconds)> on_pause;
  };

  using StrategyFactory =
      std::function<std::unique_ptr<strategy::Strategy>(strategy::Strategy::ResultCallback on_result)>;

  Scheduler(uv_loop_t* loop, const StrategyFactory& make_strategy, Options options);
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a job; returns its id: request.id when set (ids from a job store), else a new one. prior_attempts:
  // attempts an earlier daemon run made (from the job store); they count against the retry budget, so a job
  // that used 2 of 3 retries before a restart has 1 left after it.
  core::JobId add(core::TransferRequest request, int prior_attempts = 0);
  // Transfers started from now on run on a new strategy (config reload); the old one finishes what it runs
  // (results arrive as usual) and is released afterwards.
  void replace_strategy(const StrategyFactory& make_strategy);
  void set_per_host(int per_host);
  // Starts no transfer to `origin` ("scheme://host:port") for that long, as if it had answered 429/503 with
  // Retry-After itself (a pause another fleet node learned of). A longer pause in force stays.
  void pause(const std::string& origin, std::chrono::milliseconds for_how_long) { pause_origin(origin, for_how_long); }
  // Cancels one job wherever it is; a running transfer is asked to stop and reports kCancelled.
  void cancel(core::JobId id);
  // Cancels everything (queued, waiting, running).
  void cancel_all();
  // Cancels the running transfers only (the end of a shutdown's grace): each reports kCancelled with
  // JobRecord::interrupted set; queued and waiting jobs are left alone (a drained scheduler starts nothing).
  void cancel_running();

  // Stops dispatching; calls done once the strategy finished its in-flight transfers and released its resources.
  void drain(std::function<void()> done);

  strategy::Strategy& strategy() { return *strategy_; }
  bool idle() const { return running_ == 0 && queue_.empty() && waiting_ == 0 && parked_ == 0; }
  // Queued, not running, not waiting for a retry (including those held back by their origin's limit or pause).
  std::size_t runnable() const { return queue_.size() + parked_; }
  std::size_t running() const { return running_; }
  bool contains(core::JobId id) const { return jobs_.count(id) != 0; }
  // Body bytes so far of each running transfer whose strategy can tell (see Strategy::progress).
  std::vector<strategy::JobProgress> progress() const;
  stats::Counters counters() const;
  const JobRecord* find(core::JobId id) const;

 private:
  void dispatch();
  void on_result(core::TransferResult result);
  void finish(JobRecord& job, JobState state);
  void arm_retry_timer();
  void on_retry_timer();
  void check_idle();
  void retire(std::unique_ptr<strategy::Strategy> old);
  void maybe_finish_drain();
  struct Host;
  bool host_blocked(const Host& host) const;
  void unpark(Host& host);  // moves as many parked jobs back to the queue as the origin can take now
  void pause_origin(const std::string& origin, std::chrono::milliseconds for_how_long);
  void arm_pause_timer();
  void on_pause_timer();
  void release_host(const std::string& origin);

  using Clock = std::chrono::steady_clock;
  struct Due {
    Clock::time_point at;
    core::JobId id;
    bool operator>(const Due& o) const { return at > o.at; }
  };

  std::unique_ptr<strategy::Strategy> strategy_;
  // Strategies replaced by a reload, finishing their transfers; freed from a timer, never inside their callback.
  std::vector<std::unique_ptr<strategy::Strategy>> retiring_;
  std::vector<std::unique_ptr<strategy::Strategy>> retired_;
  std::uint64_t retired_bytes_ = 0;
  std::size_t draining_strategies_ = 0;
  std::function<void()> drain_done_;
  Options options_;
  uv::Timer retry_timer_;
  uv::Timer release_timer_;
  uv::Timer pause_timer_;  // fires when the earliest origin pause ends
  std::mt19937_64 rng_;
  std::unordered_map<core::JobId, JobRecord> jobs_;
  // Runnable jobs in run order: priority descending, then id (so, among equals, the order they came in).
  struct QueueKey {
    int priority;
    core::JobId id;
    bool operator<(const QueueKey& o) const { return priority != o.priority ? priority > o.priority : id < o.id; }
  };
  static QueueKey key_of(const JobRecord& job) { return {job.request.priority, job.request.id}; }
  std::set<QueueKey> queue_;
  // Per origin: transfers running, a pause after 429/503 + Retry-After, and the runnable jobs held back by
  // either (in run order). An entry lives while any of these is non-empty.
  struct Host {
    std::size_t running = 0;
    Clock::time_point paused_until{};
    std::set<QueueKey> parked;
  };
  std::unordered_map<std::string, Host> hosts_;
  std::size_t parked_ = 0;
  struct Pause {
    Clock::time_point until;
    std::string origin;
    bool operator>(const Pause& o) const { return until > o.until; }
  };
  std::priority_queue<Pause, std::vector<Pause>, std::greater<>> pauses_;
  std::priority_queue<Due, std::vector<Due>, std::greater<>> retries_;
  core::JobId next_id_ = 1;
  std::size_t running_ = 0;
  std::size_t waiting_ = 0;  // jobs in kRetryWait (retries_ may also hold stale entries of cancelled jobs)
  std::uint64_t done_ = 0;
  std::uint64_t failed_ = 0;
  std::uint64_t cancelled_ = 0;
  bool draining_ = false;
};

}  // namespace fetchd::scheduler
