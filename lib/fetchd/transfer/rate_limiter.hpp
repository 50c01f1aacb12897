// SPDX-License-Identifier: Apache-2.0
#pragma once
// limits.rate: one receive budget in bytes/s shared by every transfer of a strategy (of a worker process, for
// process-pool, whose parent splits the budget). RateLimiter is the token bucket; RateGate is a transfer's
// side of it, asked by the body callback before it writes (transfer.hpp). Two ways to wait:
// - pause (curl multi handles: event-loop, curl-multi, process-pool's event-loop workers): the callback
//   returns CURL_WRITEFUNC_PAUSE without taking tokens and tells the strategy's RatePauseListener; the
//   strategy resumes it with curl_easy_pause(CURLPAUSE_CONT) from its own loop, never from inside a curl
//   callback, and curl delivers the same bytes again;
// - sleep (curl_easy_perform: thread-pool, process-pool's blocking workers): the callback sleeps on its
//   thread in slices of at most kSleepSlice, checking the cancel flag (a blocked thread is that model's
//   cost).
// Thread: RateLimiter is thread-safe (thread-pool workers share one). A RateGate belongs to its transfer:
// only the thread driving that transfer touches it.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>

namespace fetchd::transfer {

class Transfer;

// A token bucket with debt: acquire(n) takes all n tokens whenever the bucket is not in debt, even if that
// drives it negative, and otherwise takes nothing and says how long until the debt is repaid. So a chunk is
// never split (curl hands the callback up to 16 KiB at once), and the long-run rate is exact: what was
// borrowed is repaid before anyone takes more. The bucket refills at the rate up to its burst: kBurstTime
// worth of the rate, at least kMinBurst (bytes/s × 100 ms, at least 64 KiB), which absorbs timer lateness
// without letting an idle period turn into a long burst. It starts full. A rate of 0 means no limit:
// acquire() always returns 0.
class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  using Now = std::function<Clock::time_point()>;  // injectable for tests; empty = Clock::now

  static constexpr std::chrono::milliseconds kBurstTime{100};
  static constexpr std::uint64_t kMinBurst = 64 * 1024;
  static std::uint64_t burst_for(std::uint64_t bytes_per_s);

  explicit RateLimiter(std::uint64_t bytes_per_s, Now now = {});
  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;

  // Not in debt: takes n tokens and returns 0. In debt: takes nothing and returns the time until it is not.
  std::chrono::nanoseconds acquire(std::uint64_t n);
  // Takes n tokens whatever the balance (RateGate's low-speed floor borrows this way; the others repay it).
  void consume(std::uint64_t n);
  // The time until the bucket is out of debt (0 if it is not), taking nothing.
  std::chrono::nanoseconds wait();
  // Changes the rate from now on (tokens accrued so far at the old rate stay, capped at the new burst). From
  // 0 (no limit) the bucket starts full.
  void set_rate(std::uint64_t bytes_per_s);

  std::uint64_t rate() const { return rate_.load(std::memory_order_relaxed); }
  std::uint64_t burst() const { return burst_for(rate()); }
  // The balance in whole bytes, rounded towards minus infinity (negative: in debt). For tests and logs.
  std::int64_t tokens();

 private:
  // Tokens are kept in byte-nanoseconds per second (bytes × 1e9), so a refill of elapsed_ns × rate is exact.
  __extension__ typedef __int128 Scaled;
  static constexpr Scaled kScale = 1'000'000'000;

  Clock::time_point now() const { return now_ ? now_() : Clock::now(); }
  void refill(Clock::time_point now);          // under mutex_
  std::chrono::nanoseconds debt_time() const;  // under mutex_

  Now now_;
  std::atomic<std::uint64_t> rate_;  // written under mutex_; read without it for the no-limit fast path
  std::mutex mutex_;
  Scaled tokens_ = 0;       // guarded by mutex_
  Scaled cap_ = 0;          // guarded by mutex_: burst × kScale
  Clock::time_point last_;  // guarded by mutex_: when tokens_ was last brought up to date
};

// What a strategy driving transfers on a curl multi handle implements to resume the ones the limiter paused.
class RatePauseListener {
 public:
  // Called from inside the transfer's write callback (so: never call curl from here), on the thread driving
  // the multi handle: the transfer returned CURL_WRITEFUNC_PAUSE, curl holds the bytes, and the limiter is
  // out of debt at `wake`. Resume it with curl_easy_pause(easy, CURLPAUSE_CONT) from the loop, oldest first.
  virtual void rate_paused(Transfer& transfer, RateLimiter::Clock::time_point wake) = 0;

 protected:
  ~RatePauseListener() = default;
};

// A transfer's side of the limiter. Without a listener it sleeps; then, so that throttling alone never trips
// curl's low-speed abort (which counts a sleeping callback as a slow transfer, unlike a paused one: curl 7.88
// skips the check while KEEP_RECV_PAUSE is set and resets it on unpause), it keeps a floor of twice the
// transfer's low_speed_limit: within windows of half low_speed_time (at least 1 s), a transfer behind that
// pace takes its bytes without waiting, borrowing from the bucket (docs/strategies.md, "Rate limit").
class RateGate {
 public:
  using Clock = RateLimiter::Clock;
  static constexpr std::chrono::milliseconds kSleepSlice{100};

  enum class Admit { kGo, kPause, kCancelled };

  // limiter nullptr: none. pauses nullptr: sleep mode. low_speed_limit 0: no floor.
  void attach(RateLimiter* limiter, RatePauseListener* pauses, std::uint64_t low_speed_limit,
              std::chrono::milliseconds low_speed_time);
  bool attached() const { return limiter_ != nullptr; }
  // The last call returned kPause (and nothing was admitted since).
  bool paused() const { return paused_; }

  // Before the body callback writes n bytes. kGo: write them. kPause: return CURL_WRITEFUNC_PAUSE (the
  // listener was told). kCancelled: `cancel` was set while sleeping.
  Admit admit(Transfer& self, std::size_t n, const std::atomic<bool>& cancel);

 private:
  bool behind_floor(Clock::time_point now);
  void admitted(std::size_t n);

  RateLimiter* limiter_ = nullptr;
  RatePauseListener* pauses_ = nullptr;
  std::uint64_t floor_ = 0;  // bytes/s, sleep mode only
  std::chrono::nanoseconds window_{};
  Clock::time_point window_start_{};
  std::uint64_t window_bytes_ = 0;
  bool paused_ = false;
};

}  // namespace fetchd::transfer
