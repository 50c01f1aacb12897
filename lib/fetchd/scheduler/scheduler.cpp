// SPDX-License-Identifier: Apache-2.0
#include "fetchd/scheduler/scheduler.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

#include "fetchd/curl/curl.hpp"

namespace fetchd::scheduler {

std::string_view to_string(JobState s) {
  switch (s) {
    case JobState::kQueued: return "queued";
    case JobState::kRunning: return "running";
    case JobState::kRetryWait: return "queued";  // waiting for a retry is still queued, to a client
    case JobState::kDone: return "done";
    case JobState::kFailed: return "failed";
    case JobState::kCancelled: return "cancelled";
  }
  return "?";
}

std::chrono::milliseconds retry_delay(const core::RetryPolicy& policy, int attempt,
                                      std::optional<std::chrono::seconds> retry_after, std::mt19937_64& rng) {
  double base = static_cast<double>(policy.initial.count()) * std::pow(policy.multiplier, std::max(0, attempt - 1));
  base = std::min(base, static_cast<double>(policy.max.count()));
  if (policy.jitter == core::Jitter::kFull) {
    // Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"): spreads a herd of failed clients.
    std::uniform_real_distribution<double> jitter(0.0, base);
    base = jitter(rng);
  }
  auto d = std::chrono::milliseconds(static_cast<std::int64_t>(base));
  if (retry_after) {
    auto ra = std::min(std::chrono::duration_cast<std::chrono::milliseconds>(*retry_after), policy.retry_after_max);
    d = std::max(d, ra);
  }
  return d;
}

bool retry_allowed(const core::RetryPolicy& policy, const core::TransferResult& r) {
  const core::RetryOn& on = policy.retry_on;
  switch (r.category) {
    case core::ErrorCategory::kHttpStatus:
      return std::binary_search(on.statuses.begin(), on.statuses.end(), static_cast<int>(r.http_status));
    case core::ErrorCategory::kResolve:
    case core::ErrorCategory::kConnect:
      return r.retryable && on.connect;
    case core::ErrorCategory::kTimeout:
      return r.retryable && on.timeout;
    case core::ErrorCategory::kPartial:
      return r.retryable && on.partial;
    case core::ErrorCategory::kTls:
      return on.tls;
    default:
      // Protocol trouble that is worth another try (a resume the server refused, a digest the server says
      // does not match): the transfer decides.
      return r.retryable;
  }
}

Scheduler::Scheduler(uv_loop_t* loop, const StrategyFactory& make_strategy, Options options)
    : strategy_(make_strategy([this](core::TransferResult r) { on_result(std::move(r)); })),
      options_(std::move(options)),
      retry_timer_(loop),
      release_timer_(loop),
      pause_timer_(loop),
      rng_(std::random_device{}()) {}

void Scheduler::drain(std::function<void()> done) {
  draining_ = true;
  retry_timer_.close();
  pause_timer_.close();
  drain_done_ = std::move(done);
  // The current strategy and every retiring one must report all they run; the retiring ones drain already.
  draining_strategies_ += 1;
  strategy_->drain([this] {
    --draining_strategies_;
    maybe_finish_drain();
  });
}

void Scheduler::maybe_finish_drain() {
  if (!drain_done_ || draining_strategies_ != 0) return;
  release_timer_.close();
  auto done = std::move(drain_done_);
  drain_done_ = nullptr;
  done();
}

void Scheduler::replace_strategy(const StrategyFactory& make_strategy) {
  if (draining_) return;
  auto fresh = make_strategy([this](core::TransferResult r) { on_result(std::move(r)); });
  retire(std::exchange(strategy_, std::move(fresh)));
  dispatch();
}

void Scheduler::retire(std::unique_ptr<strategy::Strategy> old) {
  auto* raw = old.get();
  retiring_.push_back(std::move(old));
  ++draining_strategies_;
  raw->drain([this, raw] {
    // Called from inside the strategy: move it aside and free it from a timer callback instead.
    auto it = std::find_if(retiring_.begin(), retiring_.end(), [raw](const auto& p) { return p.get() == raw; });
    retired_bytes_ += raw->snapshot().bytes;
    retired_.push_back(std::move(*it));
    retiring_.erase(it);
    --draining_strategies_;
    if (release_timer_) {
      release_timer_.start(0, 0, [this] {
        retired_.clear();
        maybe_finish_drain();
      });
    } else {
      maybe_finish_drain();
    }
  });
}

core::JobId Scheduler::add(core::TransferRequest request, int prior_attempts) {
  core::JobId id = request.id != 0 ? request.id : next_id_++;
  if (id >= next_id_) next_id_ = id + 1;
  request.id = id;
  request.attempt = std::max(0, prior_attempts);
  JobRecord record;
  record.origin = curl::origin_of(request.url);
  record.request = std::move(request);
  jobs_.emplace(id, std::move(record));
  queue_.insert(key_of(jobs_.at(id)));
  dispatch();
  return id;
}

bool Scheduler::host_blocked(const Host& host) const {
  if (host.paused_until > Clock::now()) return true;
  return options_.per_host > 0 && host.running >= static_cast<std::size_t>(options_.per_host);
}

void Scheduler::dispatch() {
  if (draining_) return;
  auto cap = static_cast<std::size_t>(std::max(1, strategy_->capacity()));
  while (running_ < cap && !queue_.empty()) {
    const QueueKey key = *queue_.begin();
    queue_.erase(queue_.begin());
    auto it = jobs_.find(key.id);
    if (it == jobs_.end() || it->second.state != JobState::kQueued) continue;
    auto& job = it->second;
    Host& host = hosts_[job.origin];
    if (host_blocked(host)) {
      // Held back here, not in the strategy: time waiting for the origin never counts against the transfer's
      // own timeouts.
      host.parked.insert(key);
      ++parked_;
      continue;
    }
    ++host.running;
    job.state = JobState::kRunning;
    job.runner = strategy_.get();
    ++job.request.attempt;
    ++running_;
    if (options_.on_started) options_.on_started(job);
    strategy_->submit(job.request);
  }
}

void Scheduler::unpark(Host& host) {
  if (host.parked.empty() || host.paused_until > Clock::now()) return;
  std::size_t room = host.parked.size();
  if (options_.per_host > 0) {
    const auto cap = static_cast<std::size_t>(options_.per_host);
    room = std::min(room, host.running >= cap ? 0 : cap - host.running);
  }
  while (room-- > 0) {
    queue_.insert(*host.parked.begin());
    host.parked.erase(host.parked.begin());
    --parked_;
  }
}

void Scheduler::release_host(const std::string& origin) {
  auto it = hosts_.find(origin);
  if (it == hosts_.end()) return;
  Host& host = it->second;
  if (host.running > 0) --host.running;
  unpark(host);
  if (host.running == 0 && host.parked.empty() && host.paused_until <= Clock::now()) hosts_.erase(it);
}

void Scheduler::set_per_host(int per_host) {
  options_.per_host = per_host;
  for (auto& [origin, host] : hosts_) unpark(host);
  dispatch();
}

void Scheduler::pause_origin(const std::string& origin, std::chrono::milliseconds for_how_long) {
  if (for_how_long.count() <= 0) return;
  Host& host = hosts_[origin];
  const auto until = Clock::now() + for_how_long;
  if (until <= host.paused_until) return;
  host.paused_until = until;
  spdlog::warn("origin {} asked to back off: no new transfers to it for {}ms", origin, for_how_long.count());
  pauses_.push(Pause{until, origin});
  arm_pause_timer();
}

void Scheduler::arm_pause_timer() {
  if (!pause_timer_) return;
  if (pauses_.empty()) {
    pause_timer_.stop();
    return;
  }
  auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(pauses_.top().until - Clock::now());
  pause_timer_.start(static_cast<std::uint64_t>(std::max<std::int64_t>(0, wait.count()) + 1), 0,
                     [this] { on_pause_timer(); });
}

void Scheduler::on_pause_timer() {
  const auto now = Clock::now();
  while (!pauses_.empty() && pauses_.top().until <= now) {
    const std::string origin = pauses_.top().origin;
    pauses_.pop();
    auto it = hosts_.find(origin);
    if (it == hosts_.end() || it->second.paused_until > now) continue;  // paused again meanwhile: a later entry
    unpark(it->second);
    if (it->second.running == 0 && it->second.parked.empty()) hosts_.erase(it);
  }
  arm_pause_timer();
  dispatch();
}

void Scheduler::on_result(core::TransferResult result) {
  auto it = jobs_.find(result.id);
  if (it == jobs_.end() || it->second.state != JobState::kRunning) {
    spdlog::error("scheduler: result for unknown or idle job {}", result.id);
    return;
  }
  --running_;
  auto& job = it->second;
  job.runner = nullptr;
  job.last = std::move(result);
  const auto& r = job.last;
  const core::RetryPolicy& policy = job.request.options.retry;
  if (r.retry_after && (r.http_status == 429 || r.http_status == 503)) {
    // The origin asked everyone to wait, not only this job.
    const auto pause = std::min(std::chrono::duration_cast<std::chrono::milliseconds>(*r.retry_after),
                                policy.retry_after_max);
    pause_origin(job.origin, pause);
    if (options_.on_pause && pause.count() > 0) options_.on_pause(job.origin, pause);
  }
  release_host(job.origin);
  if (r.ok()) {
    finish(job, JobState::kDone);
  } else if (r.category == core::ErrorCategory::kCancelled) {
    job.interrupted = true;
    finish(job, JobState::kCancelled);
  } else {
    job.attempt_errors.push_back(r.message);
    int attempt = job.request.attempt;
    if (attempt <= policy.retries && retry_allowed(policy, r)) {
      auto delay = retry_delay(policy, attempt, r.retry_after, rng_);
      spdlog::warn("job {} attempt {}/{} failed: {}; retrying in {}ms", job.request.id, attempt,
                   policy.retries + 1, r.message, delay.count());
      job.state = JobState::kRetryWait;
      ++waiting_;
      retries_.push(Due{Clock::now() + delay, job.request.id});
      arm_retry_timer();
      if (options_.on_retry) options_.on_retry(job);
    } else {
      finish(job, JobState::kFailed);
    }
  }
  dispatch();
  check_idle();
}

void Scheduler::finish(JobRecord& job, JobState state) {
  job.state = state;
  if (state == JobState::kDone) {
    ++done_;
  } else if (state == JobState::kCancelled) {
    ++cancelled_;  // not a failure: a client asked, or a shutdown stopped it (it stays queued in a store)
  } else {
    ++failed_;
    // The transfer's message already names the (redacted) URL.
    spdlog::error("job {} failed after {} attempt(s): {}", job.request.id, job.request.attempt,
                  job.last.message);
  }
  if (options_.on_finished) options_.on_finished(job);
  core::JobId id = job.request.id;  // a copy: erase must not read the key of the element it destroys
  jobs_.erase(id);                  // `job` is gone from here on
}

void Scheduler::arm_retry_timer() {
  // Closed by drain(): an attempt that failed during the shutdown grace is retried at the next start (the job
  // stays queued in the store), not in this process.
  if (!retry_timer_) return;
  if (retries_.empty()) {
    retry_timer_.stop();
    return;
  }
  auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(retries_.top().at - Clock::now());
  retry_timer_.start(static_cast<std::uint64_t>(std::max<std::int64_t>(0, wait.count())), 0,
                     [this] { on_retry_timer(); });
}

void Scheduler::on_retry_timer() {
  auto now = Clock::now();
  while (!retries_.empty() && retries_.top().at <= now) {
    core::JobId id = retries_.top().id;
    retries_.pop();
    auto it = jobs_.find(id);
    if (it == jobs_.end() || it->second.state != JobState::kRetryWait) continue;
    --waiting_;
    it->second.state = JobState::kQueued;
    queue_.insert(key_of(it->second));
  }
  arm_retry_timer();
  dispatch();
}

void Scheduler::cancel(core::JobId id) {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return;
  auto& job = it->second;
  switch (job.state) {
    case JobState::kQueued:
      if (queue_.erase(key_of(job)) == 0) {
        if (auto h = hosts_.find(job.origin); h != hosts_.end() && h->second.parked.erase(key_of(job)) != 0) {
          --parked_;
          if (h->second.running == 0 && h->second.parked.empty() && h->second.paused_until <= Clock::now())
            hosts_.erase(h);
        }
      }
      job.last.category = core::ErrorCategory::kCancelled;
      job.last.message = "cancelled before it started";
      finish(job, JobState::kCancelled);
      break;
    case JobState::kRetryWait:
      --waiting_;
      job.last.category = core::ErrorCategory::kCancelled;
      job.last.message = "cancelled while waiting to retry";
      finish(job, JobState::kCancelled);
      break;
    case JobState::kRunning:
      job.runner->cancel(id);  // the kCancelled result arrives through on_result
      return;
    default:
      return;
  }
  check_idle();
}

void Scheduler::cancel_all() {
  std::vector<core::JobId> ids;
  for (const auto& [id, job] : jobs_) {
    if (job.state == JobState::kQueued || job.state == JobState::kRetryWait || job.state == JobState::kRunning)
      ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  for (auto id : ids) cancel(id);
}

void Scheduler::cancel_running() {
  std::vector<core::JobId> ids;
  for (const auto& [id, job] : jobs_) {
    if (job.state == JobState::kRunning) ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  for (auto id : ids) cancel(id);
}

void Scheduler::check_idle() {
  if (idle() && options_.on_idle) options_.on_idle();
}

stats::Counters Scheduler::counters() const {
  stats::Counters c;
  c.active = running_;
  c.queued = queue_.size() + parked_ + waiting_;
  c.done = done_;
  c.failed = failed_;
  c.cancelled = cancelled_;
  c.bytes = strategy_->snapshot().bytes + retired_bytes_;
  for (const auto& s : retiring_) c.bytes += s->snapshot().bytes;
  return c;
}

std::vector<strategy::JobProgress> Scheduler::progress() const {
  std::vector<strategy::JobProgress> out;
  strategy_->progress(out);
  for (const auto& s : retiring_) s->progress(out);
  return out;
}

const JobRecord* Scheduler::find(core::JobId id) const {
  auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : &it->second;
}

}  // namespace fetchd::scheduler
