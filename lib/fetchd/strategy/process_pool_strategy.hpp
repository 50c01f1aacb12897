// SPDX-License-Identifier: Apache-2.0
#pragma once
// process-pool: W `fetchd worker` processes (uv_spawn of config.worker_exe, /proc/self/exe by default), each
// running its share of the transfers with an inner strategy (event-loop, or one blocking transfer). Requests
// go down each worker's stdin, results and byte totals come back on its stdout (worker_protocol.hpp,
// docs/protocol.md) and are delivered on the control loop. A worker that dies is reaped by libuv's exit
// callback and respawned with backoff; the jobs it was running go to a live worker, invisibly to the
// scheduler, and a job that was running in kPoisonDeaths deaths fails as kInternal "poison: ...".
// limits.rate: each worker runs its own RateLimiter (event-loop inner: paused transfers; blocking: sleeps)
// with a share of the budget that the pool sets with "rate" messages: an equal split at start, then every
// kRebalanceInterval in proportion to the transfers each worker ran in that interval (its peak), and at once
// when a worker whose share was the 1 B/s minimum of an idle one receives a job.
// The process must ignore SIGPIPE (main() does, design.md §3): a write to a worker that just died fails with
// EPIPE, which is handled, instead of killing the daemon.
// Thread: the control loop thread only.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "fetchd/strategy/strategy.hpp"
#include "fetchd/strategy/worker_io.hpp"
#include "fetchd/strategy/worker_protocol.hpp"
#include "fetchd/uv/handle.hpp"

namespace fetchd::strategy {

class ProcessPoolStrategy final : public Strategy {
 public:
  static constexpr int kPoisonDeaths = 3;
  static constexpr std::chrono::milliseconds kRespawnInitial{100};
  static constexpr std::chrono::milliseconds kRespawnMax{5000};
  // A worker that lived this long died of something new: its slot's backoff starts over.
  static constexpr std::chrono::milliseconds kStablePeriod{10000};
  // After its stdin closed at drain, a worker has this long to exit before it is killed.
  static constexpr std::chrono::milliseconds kExitGrace{10000};
  static constexpr std::chrono::milliseconds kRebalanceInterval{1000};

  // fsync: output.fsync, which sizes each worker's file threads. rate: limits.rate in bytes/s (0: none),
  // split across the workers. Starts every worker before it returns.
  // Throws std::invalid_argument for settings that cannot work (inner blocking with workers != concurrency)
  // and uv::Error when a worker cannot be started at all (e.g. worker_exe does not exist).
  ProcessPoolStrategy(const config::StrategyConfig& config, bool fsync, uv_loop_t* loop,
                      ResultCallback on_result, std::uint64_t rate = 0);
  // Normally after drain() completed. Otherwise kills and reaps the remaining workers (blocking briefly).
  ~ProcessPoolStrategy() override;
  ProcessPoolStrategy(const ProcessPoolStrategy&) = delete;
  ProcessPoolStrategy& operator=(const ProcessPoolStrategy&) = delete;

  std::string_view name() const override { return "process-pool"; }
  int capacity() const override { return capacity_; }
  void submit(core::TransferRequest request) override;
  void cancel(core::JobId id) override;
  void drain(std::function<void()> done) override;
  StrategySnapshot snapshot() const override;

  // Diagnostics (and tests): the number of worker slots, the pid of the worker that runs `id` (0 while it is
  // queued here or its result is on the way), the pids of the workers alive now, and how many died unasked.
  int workers() const { return static_cast<int>(slots_.size()); }
  pid_t worker_pid(core::JobId id) const;
  std::vector<pid_t> worker_pids() const;
  std::uint64_t worker_deaths() const { return deaths_; }
  // The share of limits.rate last sent to slot `index` (0 without a limit).
  std::uint64_t rate_share(int index) const { return slots_.at(static_cast<std::size_t>(index))->rate_share; }

 private:
  using Clock = std::chrono::steady_clock;

  struct Job {
    core::TransferRequest request;
    int slot = -1;  // the slot whose worker runs it, -1 while queued or reported
    bool cancelled = false;
    bool reported = false;            // its result waits in ready_
    std::vector<std::string> deaths;  // the worker deaths it was in flight for
  };

  // One running worker process and its pipe. Gone once it has exited (reaped) and its stdout reached EOF:
  // only then is every result it wrote read, and only then are its jobs given to another worker.
  struct Incarnation {
    Process process;
    Pipe in;   // its stdin: our requests
    Pipe out;  // its stdout: its results
    protocol::LineBuffer lines;
    uv::Timer exit_timer;  // kExitGrace after its stdin closed
    pid_t pid = 0;
    Clock::time_point started;
    std::unordered_set<core::JobId> jobs;
    std::uint64_t reported_bytes = 0;  // its latest Progress
    bool input_closed = false;         // we closed its stdin, or it cannot take more requests
    bool output_closed = false;        // EOF, an error, or a protocol error on its stdout
    bool exited = false;
    std::int64_t exit_status = 0;
    int term_signal = 0;
    std::string broken;  // why we killed it, if we did
  };

  struct Slot {
    int index = 0;
    int capacity = 0;                     // transfers its worker runs at once
    std::unique_ptr<Incarnation> worker;  // null while waiting to respawn
    uv::Timer respawn_timer;
    std::chrono::milliseconds backoff = kRespawnInitial;
    std::uint64_t spawn_failures = 0;
    // limits.rate: this slot's share in bytes/s (what its worker was last told), the weight it was computed
    // from, and the most transfers its worker ran at once since the last rebalance.
    std::uint64_t rate_share = 0;
    std::size_t rate_weight = 0;
    std::size_t peak_jobs = 0;
  };

  int spawn(Slot& slot);
  void respawn(Slot& slot);
  void on_output(Slot& slot, Incarnation* inc, ssize_t nread, const char* data);
  void on_line(Slot& slot, Incarnation& inc, std::string_view line);
  void on_exit(Slot& slot, Incarnation* inc, std::int64_t exit_status, int term_signal);
  void kill_broken(Incarnation& inc, std::string why);
  void maybe_gone(Slot& slot);
  void gone(Slot& slot);
  bool accepts_work(const Slot& slot) const;
  void dispatch();
  void ready(Job& job, core::TransferResult result);
  void arm_deferred();
  void run_deferred();
  void maybe_finish_drain();
  void maybe_shutdown_complete();
  void kill_all() noexcept;
  void rebalance_rates();
  bool send_rate(Slot& slot);

  std::uint64_t rate_ = 0;  // limits.rate; 0: none
  uv::Timer rate_timer_;    // every kRebalanceInterval while rate_ > 0

  uv_loop_t* loop_;
  ResultCallback on_result_;
  int capacity_;
  std::vector<std::string> worker_args_base_;  // argv without the per-slot --concurrency value
  std::string worker_exe_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::unordered_map<core::JobId, Job> jobs_;  // submitted and not yet delivered
  std::deque<core::JobId> queue_;              // waiting for a free worker slot; re-queued jobs go first
  std::vector<core::TransferResult> ready_;    // delivered by run_deferred() on the next loop iteration
  uv::Timer deferred_timer_;  // 0 ms: runs run_deferred() once the current callback has unwound
  bool deferred_armed_ = false;
  std::uint64_t retired_bytes_ = 0;  // byte totals of workers that are gone
  std::uint64_t deaths_ = 0;
  bool draining_ = false;
  bool shutting_down_ = false;  // drained: workers are told to exit, none is respawned
  bool finished_ = false;
  std::function<void()> drain_done_;
};

}  // namespace fetchd::strategy
