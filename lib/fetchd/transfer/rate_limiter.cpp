// SPDX-License-Identifier: Apache-2.0
#include "fetchd/transfer/rate_limiter.hpp"

#include <algorithm>
#include <thread>

namespace fetchd::transfer {

using std::chrono::nanoseconds;

static_assert(RateLimiter::kBurstTime == std::chrono::milliseconds(100), "burst_for() divides by 10");

std::uint64_t RateLimiter::burst_for(std::uint64_t bytes_per_s) {
  if (bytes_per_s == 0) return 0;
  return std::max<std::uint64_t>(bytes_per_s / 10, kMinBurst);
}

RateLimiter::RateLimiter(std::uint64_t bytes_per_s, Now now) : now_(std::move(now)), rate_(bytes_per_s) {
  cap_ = static_cast<Scaled>(burst_for(bytes_per_s)) * kScale;
  tokens_ = cap_;
  last_ = this->now();
}

void RateLimiter::refill(Clock::time_point now) {
  if (now <= last_) return;  // a clock read by another thread before ours may arrive after it
  const Scaled elapsed = std::chrono::duration_cast<nanoseconds>(now - last_).count();
  last_ = now;
  const Scaled rate = rate_.load(std::memory_order_relaxed);
  if (rate == 0 || tokens_ >= cap_) return;
  // Compared before multiplying: after a long idle period elapsed × rate could overflow even 128 bits.
  const Scaled missing = cap_ - tokens_;
  if (elapsed >= (missing + rate - 1) / rate) {
    tokens_ = cap_;
  } else {
    tokens_ += elapsed * rate;
  }
}

nanoseconds RateLimiter::debt_time() const {
  const Scaled rate = rate_.load(std::memory_order_relaxed);
  if (tokens_ >= 0 || rate == 0) return nanoseconds(0);
  return nanoseconds(static_cast<nanoseconds::rep>((-tokens_ + rate - 1) / rate));
}

nanoseconds RateLimiter::acquire(std::uint64_t n) {
  if (rate_.load(std::memory_order_relaxed) == 0) return nanoseconds(0);
  std::lock_guard lock(mutex_);
  refill(now());
  if (tokens_ < 0) return debt_time();
  tokens_ -= static_cast<Scaled>(n) * kScale;
  return nanoseconds(0);
}

void RateLimiter::consume(std::uint64_t n) {
  if (rate_.load(std::memory_order_relaxed) == 0) return;
  std::lock_guard lock(mutex_);
  refill(now());
  tokens_ -= static_cast<Scaled>(n) * kScale;
}

nanoseconds RateLimiter::wait() {
  if (rate_.load(std::memory_order_relaxed) == 0) return nanoseconds(0);
  std::lock_guard lock(mutex_);
  refill(now());
  return debt_time();
}

void RateLimiter::set_rate(std::uint64_t bytes_per_s) {
  std::lock_guard lock(mutex_);
  const auto t = now();
  const bool was_unlimited = rate_.load(std::memory_order_relaxed) == 0;
  refill(t);  // what accrued so far, at the old rate
  last_ = std::max(last_, t);
  rate_.store(bytes_per_s, std::memory_order_relaxed);
  cap_ = static_cast<Scaled>(burst_for(bytes_per_s)) * kScale;
  tokens_ = was_unlimited ? cap_ : std::min(tokens_, cap_);
}

std::int64_t RateLimiter::tokens() {
  std::lock_guard lock(mutex_);
  refill(now());
  Scaled q = tokens_ / kScale;
  if (tokens_ % kScale < 0) --q;
  return static_cast<std::int64_t>(q);
}

void RateGate::attach(RateLimiter* limiter, RatePauseListener* pauses, std::uint64_t low_speed_limit,
                      std::chrono::milliseconds low_speed_time) {
  limiter_ = limiter;
  pauses_ = pauses;
  paused_ = false;
  floor_ = pauses == nullptr ? 2 * low_speed_limit : 0;
  window_ = std::max<nanoseconds>(std::chrono::seconds(1), low_speed_time / 2);
  window_start_ = {};
  window_bytes_ = 0;
}

void RateGate::admitted(std::size_t n) {
  paused_ = false;
  if (floor_ == 0) return;
  const auto now = Clock::now();
  if (window_start_ == Clock::time_point{} || now - window_start_ >= window_) {
    window_start_ = now;
    window_bytes_ = 0;
  }
  window_bytes_ += n;
}

bool RateGate::behind_floor(Clock::time_point now) {
  if (floor_ == 0) return false;
  if (window_start_ == Clock::time_point{} || now - window_start_ >= window_) {
    // A new window: it starts even, and falls behind while the transfer waits.
    window_start_ = now;
    window_bytes_ = 0;
    return false;
  }
  const double elapsed_s = std::chrono::duration<double>(now - window_start_).count();
  return static_cast<double>(window_bytes_) < static_cast<double>(floor_) * elapsed_s;
}

RateGate::Admit RateGate::admit(Transfer& self, std::size_t n, const std::atomic<bool>& cancel) {
  if (limiter_ == nullptr) return Admit::kGo;
  if (pauses_ != nullptr) {
    const nanoseconds wait = limiter_->acquire(n);
    if (wait.count() == 0) {
      paused_ = false;
      return Admit::kGo;
    }
    // Nothing taken: curl keeps these bytes and offers them again once the strategy resumes the transfer.
    paused_ = true;
    pauses_->rate_paused(self, Clock::now() + wait);
    return Admit::kPause;
  }
  for (;;) {
    const nanoseconds wait = limiter_->acquire(n);
    if (wait.count() == 0) break;
    if (behind_floor(Clock::now())) {
      limiter_->consume(n);
      break;
    }
    std::this_thread::sleep_for(std::min<nanoseconds>(wait, kSleepSlice));
    if (cancel.load(std::memory_order_relaxed)) return Admit::kCancelled;
  }
  admitted(n);
  return Admit::kGo;
}

}  // namespace fetchd::transfer
