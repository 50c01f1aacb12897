// SPDX-License-Identifier: Apache-2.0
#include "fetchd/strategy/process_pool_strategy.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "fetchd/uv/error.hpp"

namespace fetchd::strategy {

namespace {

std::string describe_exit(pid_t pid, std::int64_t exit_status, int term_signal) {
  if (term_signal != 0) {
    return fmt::format("worker {} killed by signal {} ({})", pid, term_signal, ::strsignal(term_signal));
  }
  return fmt::format("worker {} exited with status {}", pid, exit_status);
}

core::TransferResult cancelled_result() {
  core::TransferResult r;
  r.category = core::ErrorCategory::kCancelled;
  r.message = "cancelled";
  return r;
}

int workers_for(const config::StrategyConfig& config) {
  int w = config.workers;
  if (w <= 0) w = static_cast<int>(std::max(1U, std::thread::hardware_concurrency()));
  if (w > config.concurrency) {
    // The loader refuses an explicit workers > concurrency; this is `workers: 0` on a big machine, or a
    // --concurrency override.
    if (config.workers > 0) {
      spdlog::warn("process-pool: {} workers for concurrency {}: using {}", config.workers,
                   config.concurrency, config.concurrency);
    }
    w = config.concurrency;
  }
  return std::max(1, w);
}

}  // namespace

ProcessPoolStrategy::ProcessPoolStrategy(const config::StrategyConfig& config, bool fsync, uv_loop_t* loop,
                                         ResultCallback on_result, std::uint64_t rate)
    : rate_(rate),
      loop_(loop),
      on_result_(std::move(on_result)),
      capacity_(std::max(1, config.concurrency)),
      worker_exe_(config.worker_exe),
      deferred_timer_(loop) {
  const int count = workers_for(config);
  if (config.inner == config::InnerKind::kBlocking && count != capacity_) {
    throw std::invalid_argument(
        fmt::format("process-pool with inner blocking runs one transfer per worker: workers ({}) must equal "
                    "concurrency ({})",
                    count, capacity_));
  }
  auto level = spdlog::level::to_string_view(spdlog::get_level());
  worker_args_base_ = {worker_exe_,    "worker",
                       "--fsync",      fsync ? "1" : "0",
                       "--inner",      std::string(config::to_string(config.inner)),
                       "--parent-pid", std::to_string(::getpid()),
                       "--log-level",  std::string(level.data(), level.size())};
  for (int i = 0; i < count; ++i) {
    auto slot = std::make_unique<Slot>();
    slot->index = i;
    // The remainder goes one each to the first slots: capacities differ by at most one.
    slot->capacity = capacity_ / count + (i < capacity_ % count ? 1 : 0);
    slot->respawn_timer = uv::Timer(loop);
    if (rate_ > 0) {
      // Equal shares until the first rebalance; each worker hears its share before its first job.
      slot->rate_share = std::max<std::uint64_t>(1, rate_ / static_cast<std::uint64_t>(count));
      slot->rate_weight = 1;
    }
    slots_.push_back(std::move(slot));
  }
  try {
    for (auto& slot : slots_) {
      // At start-up a worker that cannot be started is a configuration error, not something to retry.
      uv::check(spawn(*slot), "process-pool: starting `" + worker_exe_ + " worker`");
    }
  } catch (...) {
    kill_all();  // the destructor does not run for a constructor that throws
    throw;
  }
  if (rate_ > 0) {
    rate_timer_ = uv::Timer(loop);
    rate_timer_.start(static_cast<std::uint64_t>(kRebalanceInterval.count()),
                      static_cast<std::uint64_t>(kRebalanceInterval.count()), [this] { rebalance_rates(); });
    rate_timer_.ref(false);  // never what keeps the loop alive
  }
  int low = slots_.back()->capacity;
  int high = slots_.front()->capacity;
  spdlog::info("process-pool: {} workers (pids {}), {} transfers each, inner {}", count,
               fmt::join(worker_pids(), ","),
               low == high ? fmt::format("{}", low) : fmt::format("{}-{}", low, high),
               config::to_string(config.inner));
}

ProcessPoolStrategy::~ProcessPoolStrategy() {
  kill_all();
}

void ProcessPoolStrategy::kill_all() noexcept {
  // Only without a completed drain (an exception unwinding start-up, say): nothing may outlive us, so the
  // workers are killed and reaped here, blocking briefly. Closing a process handle stops libuv reaping it.
  for (auto& slot : slots_) {
    if (!slot->worker) continue;
    auto& w = *slot->worker;
    bool reap = !w.exited;
    pid_t pid = w.pid;
    if (reap) w.process.kill(SIGKILL);
    slot->worker.reset();
    if (reap) {
      int status = 0;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    }
  }
}

int ProcessPoolStrategy::spawn(Slot& slot) {
  auto inc = std::make_unique<Incarnation>();
  inc->in = Pipe(loop_);
  inc->out = Pipe(loop_);
  SpawnOptions options;
  options.file = worker_exe_;
  options.args = worker_args_base_;
  options.args.insert(options.args.end(), {"--concurrency", std::to_string(slot.capacity)});
  options.stdin_pipe = &inc->in;
  options.stdout_pipe = &inc->out;
  Incarnation* raw = inc.get();
  int rc = inc->process.spawn(loop_, options, [this, &slot, raw](std::int64_t status, int signal) {
    on_exit(slot, raw, status, signal);
  });
  if (rc != 0) return rc;  // inc's pipes close with it
  inc->pid = inc->process.pid();
  inc->started = Clock::now();
  rc =
      inc->out.read_start([this, &slot, raw](ssize_t n, const char* data) { on_output(slot, raw, n, data); });
  if (rc != 0) {
    // Cannot happen for a fresh pipe; if it did, the worker would be deaf: kill it and let death handle it.
    slot.worker = std::move(inc);
    kill_broken(*raw, "cannot read its output: " + uv::describe(rc));
    return 0;
  }
  slot.worker = std::move(inc);
  // Before any submit: the pipe keeps the order, so no transfer of this worker runs without its share.
  if (rate_ > 0) send_rate(slot);
  return 0;
}

bool ProcessPoolStrategy::send_rate(Slot& slot) {
  auto& w = *slot.worker;
  if (w.input_closed) return false;
  const int rc = w.in.write(protocol::encode(protocol::Rate{slot.rate_share}));
  if (rc != 0) {
    kill_broken(w, "cannot write to it: " + uv::describe(rc));
    return false;
  }
  return true;
}

void ProcessPoolStrategy::rebalance_rates() {
  if (rate_ == 0 || shutting_down_) return;
  // Weights: the most transfers each live worker ran at once since the last rebalance, so that a worker which
  // finished a file a moment ago still counts; an idle pool splits equally. A worker with weight 0 keeps 1
  // B/s (0 would mean "no limit"); dispatch() rebalances at once when such a worker gets a job.
  std::size_t total = 0;
  for (const auto& slot : slots_) {
    const bool live = slot->worker && !slot->worker->input_closed;
    slot->peak_jobs = std::max(slot->peak_jobs, live ? slot->worker->jobs.size() : 0);
    if (!live) slot->peak_jobs = 0;
    total += slot->peak_jobs;
  }
  for (auto& slot : slots_) {
    const std::size_t weight = total == 0 ? 1 : slot->peak_jobs;
    const std::size_t sum = total == 0 ? slots_.size() : total;
    const auto share = static_cast<std::uint64_t>(
        static_cast<long double>(rate_) * static_cast<long double>(weight) / static_cast<long double>(sum));
    slot->rate_weight = weight;
    slot->peak_jobs = slot->worker ? slot->worker->jobs.size() : 0;
    const std::uint64_t next = std::max<std::uint64_t>(1, share);
    if (next == slot->rate_share) continue;
    slot->rate_share = next;
    if (slot->worker) send_rate(*slot);
  }
}

void ProcessPoolStrategy::respawn(Slot& slot) {
  if (shutting_down_ || slot.worker) return;
  int rc = spawn(slot);
  if (rc != 0) {
    ++slot.spawn_failures;
    auto delay = slot.backoff;
    slot.backoff = std::min(slot.backoff * 2, kRespawnMax);
    spdlog::error("process-pool: cannot start worker {}: {}; retrying in {}ms", slot.index, uv::describe(rc),
                  delay.count());
    slot.respawn_timer.start(static_cast<std::uint64_t>(delay.count()), 0, [this, &slot] { respawn(slot); });
    return;
  }
  spdlog::info("process-pool: worker {} respawned as pid {}", slot.index, slot.worker->pid);
  dispatch();
}

void ProcessPoolStrategy::on_output(Slot& slot, Incarnation* inc, ssize_t nread, const char* data) {
  if (slot.worker.get() != inc || inc->output_closed) return;
  if (nread < 0) {
    if (nread != UV_EOF) {
      spdlog::warn("process-pool: reading from worker {}: {}", inc->pid,
                   uv::describe(static_cast<int>(nread)));
    }
    inc->out.read_stop();
    inc->output_closed = true;
    inc->input_closed = true;  // a worker that stopped talking gets no more work
    if (!inc->exited && inc->exit_timer.get() == nullptr) {
      // A worker closes its stdout just before it exits: normally the exit follows at once. One that keeps
      // running without an output is broken; give it the grace period, then kill it.
      inc->exit_timer = uv::Timer(loop_);
      inc->exit_timer.start(static_cast<std::uint64_t>(kExitGrace.count()), 0,
                            [this, inc] { kill_broken(*inc, "it closed its output but did not exit"); });
    }
  } else {
    bool ok = inc->lines.feed(data, static_cast<std::size_t>(nread), [&](std::string_view line) {
      if (!inc->output_closed) on_line(slot, *inc, line);
    });
    if (!ok) kill_broken(*inc, fmt::format("it wrote a line longer than {} bytes", protocol::kMaxLineBytes));
  }
  // Last: gone() destroys *inc, which must not happen while feed() above still walks its buffer.
  maybe_gone(slot);
}

void ProcessPoolStrategy::on_line(Slot& slot, Incarnation& inc, std::string_view line) {
  std::string error;
  auto message = protocol::decode_from_worker(line, &error);
  if (!message) {
    kill_broken(inc, "it wrote an unreadable line: " + error);
    return;
  }
  if (const auto* progress = std::get_if<protocol::Progress>(&*message)) {
    inc.reported_bytes = progress->bytes;
    return;
  }
  core::TransferResult result = std::move(std::get<protocol::Result>(*message).result);
  auto it = jobs_.find(result.id);
  if (it == jobs_.end() || it->second.slot != slot.index || inc.jobs.erase(result.id) == 0) {
    kill_broken(inc, fmt::format("it reported job {}, which it was not running", result.id));
    return;
  }
  ready(it->second, std::move(result));
  dispatch();
}

void ProcessPoolStrategy::on_exit(Slot& slot, Incarnation* inc, std::int64_t exit_status, int term_signal) {
  if (slot.worker.get() != inc) return;
  inc->exited = true;
  inc->exit_status = exit_status;
  inc->term_signal = term_signal;
  inc->input_closed = true;
  inc->exit_timer.close();
  maybe_gone(slot);
}

void ProcessPoolStrategy::kill_broken(Incarnation& inc, std::string why) {
  // Nothing more it says is believed, and it gets no more work, whether or not it still runs.
  inc.input_closed = true;
  inc.output_closed = true;
  inc.out.read_stop();
  // If it already exited, nothing else will call maybe_gone() for it; this may run inside its own output
  // callback or a dispatch(), where it must not be destroyed yet: the deferred pass does it.
  arm_deferred();
  if (!inc.broken.empty()) return;
  spdlog::error("process-pool: worker {} is broken: {}", inc.pid, why);
  inc.broken = std::move(why);
  if (inc.exited) return;  // already reaped: its pid may belong to someone else by now
  int rc = inc.process.kill(SIGKILL);
  if (rc != 0 && rc != UV_ESRCH) spdlog::error("process-pool: kill({}): {}", inc.pid, uv::describe(rc));
}

void ProcessPoolStrategy::maybe_gone(Slot& slot) {
  if (slot.worker && slot.worker->exited && slot.worker->output_closed) gone(slot);
}

void ProcessPoolStrategy::gone(Slot& slot) {
  std::unique_ptr<Incarnation> inc = std::move(slot.worker);
  retired_bytes_ += inc->reported_bytes;
  const bool clean = shutting_down_ && inc->exit_status == 0 && inc->term_signal == 0 && inc->jobs.empty();
  if (clean) {
    spdlog::debug("process-pool: worker {} exited", inc->pid);
  } else {
    ++deaths_;
    std::string death = describe_exit(inc->pid, inc->exit_status, inc->term_signal);
    if (!inc->broken.empty()) death += " (" + inc->broken + ")";
    // Sorted, so that re-queued jobs keep their submission order.
    std::vector<core::JobId> ids(inc->jobs.begin(), inc->jobs.end());
    std::sort(ids.begin(), ids.end());
    std::size_t requeued = 0;
    std::size_t poisoned = 0;
    for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
      Job& job = jobs_.at(*it);
      job.slot = -1;
      if (job.cancelled) {
        ready(job, cancelled_result());
        continue;
      }
      job.deaths.push_back(death);
      if (static_cast<int>(job.deaths.size()) >= kPoisonDeaths) {
        // The job itself is the likely killer (a response that crashes the parser, say): stop feeding it to
        // workers. Not retryable: the scheduler's retries would only repeat this.
        core::TransferResult r;
        r.category = core::ErrorCategory::kInternal;
        r.message = fmt::format("poison: in flight in {} worker deaths: {}", job.deaths.size(),
                                fmt::join(job.deaths, "; "));
        ready(job, std::move(r));
        ++poisoned;
        continue;
      }
      queue_.push_front(*it);
      ++requeued;
    }
    if (shutting_down_) {
      spdlog::warn("process-pool: {} while shutting down", death);
    } else {
      auto lived = Clock::now() - inc->started;
      if (lived >= kStablePeriod) slot.backoff = kRespawnInitial;
      auto delay = slot.backoff;
      slot.backoff = std::min(slot.backoff * 2, kRespawnMax);
      spdlog::warn("process-pool: {}; {} job(s) re-queued, {} failed as poison; respawning in {}ms", death,
                   requeued, poisoned, delay.count());
      slot.respawn_timer.start(static_cast<std::uint64_t>(delay.count()), 0,
                               [this, &slot] { respawn(slot); });
    }
  }
  inc.reset();  // closes its handles; libuv already reaped the process
  dispatch();
  maybe_shutdown_complete();
}

bool ProcessPoolStrategy::accepts_work(const Slot& slot) const {
  const auto* w = slot.worker.get();
  return w != nullptr && !w->input_closed && static_cast<int>(w->jobs.size()) < slot.capacity;
}

void ProcessPoolStrategy::dispatch() {
  bool rebalance = false;
  while (!queue_.empty()) {
    // Least loaded: the fewest transfers running, ties to the one with more room.
    Slot* best = nullptr;
    for (auto& slot : slots_) {
      if (!accepts_work(*slot)) continue;
      if (best == nullptr || slot->worker->jobs.size() < best->worker->jobs.size() ||
          (slot->worker->jobs.size() == best->worker->jobs.size() && slot->capacity > best->capacity)) {
        best = slot.get();
      }
    }
    if (best == nullptr) break;
    core::JobId id = queue_.front();
    Job& job = jobs_.at(id);
    auto& w = *best->worker;
    int rc = w.in.write(protocol::encode(protocol::Submit{job.request}));
    if (rc != 0) {
      // Its stdin is unusable: the death that follows (or our kill) hands its jobs on; this one stays queued.
      kill_broken(w, "cannot write to it: " + uv::describe(rc));
      continue;
    }
    queue_.pop_front();
    job.slot = best->index;
    w.jobs.insert(id);
    best->peak_jobs = std::max(best->peak_jobs, w.jobs.size());
    if (rate_ > 0 && best->rate_weight == 0) rebalance = true;
  }
  // A worker that had no share (it was idle at the last rebalance) just got work: give it one now rather than
  // let it trickle at 1 B/s until the next tick.
  if (rebalance) rebalance_rates();
}

void ProcessPoolStrategy::submit(core::TransferRequest request) {
  if (draining_) throw std::logic_error("ProcessPoolStrategy::submit after drain");
  core::JobId id = request.id;
  auto [it, fresh] = jobs_.emplace(id, Job{std::move(request), -1, false, false, {}});
  if (!fresh)
    throw std::logic_error(fmt::format("ProcessPoolStrategy::submit: job {} is already running", id));
  queue_.push_back(id);
  dispatch();
}

void ProcessPoolStrategy::cancel(core::JobId id) {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return;
  Job& job = it->second;
  if (job.cancelled || job.reported) return;
  job.cancelled = true;
  if (job.slot < 0) {
    if (auto q = std::find(queue_.begin(), queue_.end(), id); q != queue_.end()) queue_.erase(q);
    ready(job, cancelled_result());
    return;
  }
  auto& w = *slots_[static_cast<std::size_t>(job.slot)]->worker;
  // A failed write means the worker is dying: its death reports the job as cancelled.
  if (!w.input_closed) w.in.write(protocol::encode(protocol::Cancel{id}));
}

void ProcessPoolStrategy::ready(Job& job, core::TransferResult result) {
  job.reported = true;
  job.slot = -1;
  result.id = job.request.id;
  // Delivered from the deferred pass, never from inside submit()/cancel() or while a worker's output is being
  // parsed: the callback may call back into us.
  ready_.push_back(std::move(result));
  arm_deferred();
}

void ProcessPoolStrategy::arm_deferred() {
  if (deferred_armed_ || finished_) return;
  deferred_armed_ = true;
  deferred_timer_.start(0, 0, [this] { run_deferred(); });
}

void ProcessPoolStrategy::run_deferred() {
  deferred_armed_ = false;
  for (auto& slot : slots_) maybe_gone(*slot);
  if (finished_) return;  // the last worker just went and done() ran
  std::vector<core::TransferResult> batch;
  batch.swap(ready_);
  for (auto& r : batch) {
    jobs_.erase(r.id);
    on_result_(std::move(r));
  }
  maybe_finish_drain();
}

void ProcessPoolStrategy::drain(std::function<void()> done) {
  draining_ = true;
  drain_done_ = std::move(done);
  maybe_finish_drain();
}

void ProcessPoolStrategy::maybe_finish_drain() {
  if (!draining_ || shutting_down_ || !jobs_.empty() || !drain_done_) return;
  shutting_down_ = true;
  for (auto& slot : slots_) {
    slot->respawn_timer.stop();
    if (!slot->worker) continue;
    auto* w = slot->worker.get();
    // EOF on its stdin: it finishes (it has nothing in flight) and exits 0.
    w->input_closed = true;
    w->in.close();
    if (!w->exited && !w->exit_timer) {
      w->exit_timer = uv::Timer(loop_);
      w->exit_timer.start(static_cast<std::uint64_t>(kExitGrace.count()), 0,
                          [this, w] { kill_broken(*w, "it did not exit after its input closed"); });
    }
  }
  maybe_shutdown_complete();
}

void ProcessPoolStrategy::maybe_shutdown_complete() {
  if (!shutting_down_ || finished_) return;
  for (const auto& slot : slots_) {
    if (slot->worker) return;  // not reaped yet
  }
  finished_ = true;
  for (auto& slot : slots_) slot->respawn_timer.close();
  deferred_timer_.close();
  rate_timer_.close();
  auto done = std::move(drain_done_);
  drain_done_ = nullptr;
  done();
}

StrategySnapshot ProcessPoolStrategy::snapshot() const {
  StrategySnapshot s;
  s.active = jobs_.size();
  s.bytes = retired_bytes_;
  for (const auto& slot : slots_) {
    if (slot->worker) s.bytes += slot->worker->reported_bytes;
  }
  return s;
}

pid_t ProcessPoolStrategy::worker_pid(core::JobId id) const {
  auto it = jobs_.find(id);
  if (it == jobs_.end() || it->second.slot < 0) return 0;
  const auto& w = slots_[static_cast<std::size_t>(it->second.slot)]->worker;
  return w ? w->pid : 0;
}

std::vector<pid_t> ProcessPoolStrategy::worker_pids() const {
  std::vector<pid_t> pids;
  for (const auto& slot : slots_) {
    if (slot->worker && !slot->worker->exited) pids.push_back(slot->worker->pid);
  }
  return pids;
}

}  // namespace fetchd::strategy
