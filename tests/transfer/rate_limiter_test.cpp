// SPDX-License-Identifier: Apache-2.0
#include "fetchd/transfer/rate_limiter.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "fetchd/transfer/transfer.hpp"

namespace fetchd::transfer {
namespace {

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

// A clock that moves only when told; any thread may read it.
class FakeClock {
 public:
  RateLimiter::Now now() {
    return [this] { return RateLimiter::Clock::time_point(nanoseconds(ns_.load())); };
  }
  void advance(nanoseconds d) { ns_ += d.count(); }

 private:
  std::atomic<std::int64_t> ns_{1'000'000'000};
};

constexpr std::uint64_t kKiB = 1024;

TEST(RateLimiterTest, BurstIsATenthOfTheRateAtLeast64KiB) {
  EXPECT_EQ(RateLimiter::burst_for(0), 0u);
  EXPECT_EQ(RateLimiter::burst_for(1), 64 * kKiB);
  EXPECT_EQ(RateLimiter::burst_for(640 * kKiB), 64 * kKiB);
  EXPECT_EQ(RateLimiter::burst_for(10 * 1024 * kKiB), 1024 * kKiB);
  EXPECT_EQ(RateLimiter::burst_for(1'000'000'000), 100'000'000u);
}

TEST(RateLimiterTest, StartsFullAndTakesWholeChunksIntoDebt) {
  FakeClock clock;
  RateLimiter limiter(1000, clock.now());
  EXPECT_EQ(limiter.burst(), 64 * kKiB);
  EXPECT_EQ(limiter.tokens(), 65536);
  EXPECT_EQ(limiter.acquire(65536), 0ns);
  EXPECT_EQ(limiter.tokens(), 0);
  // Exactly 0 is not debt: the next chunk is taken whole, and the bucket goes negative.
  EXPECT_EQ(limiter.acquire(16384), 0ns);
  EXPECT_EQ(limiter.tokens(), -16384);
  // In debt: nothing is taken, and the wait is the time to repay it at 1000 B/s.
  EXPECT_EQ(limiter.acquire(1), nanoseconds(16'384'000'000));
  EXPECT_EQ(limiter.tokens(), -16384);
  EXPECT_EQ(limiter.wait(), nanoseconds(16'384'000'000));
}

TEST(RateLimiterTest, RefillsExactlyAtTheRate) {
  FakeClock clock;
  RateLimiter limiter(1000, clock.now());
  ASSERT_EQ(limiter.acquire(65536 + 1), 0ns);  // -1 byte
  EXPECT_EQ(limiter.wait(), 1ms);
  clock.advance(500us);             // half a byte back: -0.5
  EXPECT_EQ(limiter.tokens(), -1);  // rounded towards minus infinity
  EXPECT_EQ(limiter.wait(), 500us);
  EXPECT_EQ(limiter.acquire(10), 500us);
  clock.advance(499us);
  EXPECT_EQ(limiter.wait(), 1us);
  clock.advance(1us);
  EXPECT_EQ(limiter.wait(), 0ns);
  EXPECT_EQ(limiter.acquire(10), 0ns);
  EXPECT_EQ(limiter.tokens(), -10);
  clock.advance(10ms);
  EXPECT_EQ(limiter.tokens(), 0);
  clock.advance(3s);
  EXPECT_EQ(limiter.tokens(), 3000);
}

TEST(RateLimiterTest, RefillStopsAtTheBurst) {
  FakeClock clock;
  RateLimiter limiter(1'000'000, clock.now());
  ASSERT_EQ(limiter.burst(), 100'000u);
  ASSERT_EQ(limiter.acquire(100'000 + 50'000), 0ns);
  EXPECT_EQ(limiter.tokens(), -50'000);
  clock.advance(std::chrono::hours(24 * 365));  // a long idle period neither overflows nor banks more
  EXPECT_EQ(limiter.tokens(), 100'000);
  clock.advance(1s);
  EXPECT_EQ(limiter.tokens(), 100'000);
}

TEST(RateLimiterTest, ConsumeTakesEvenInDebt) {
  FakeClock clock;
  RateLimiter limiter(1000, clock.now());
  limiter.consume(65536 + 2000);
  EXPECT_EQ(limiter.tokens(), -2000);
  limiter.consume(1000);
  EXPECT_EQ(limiter.tokens(), -3000);
  EXPECT_EQ(limiter.wait(), 3s);
}

TEST(RateLimiterTest, SetRateKeepsTheDebtAndRescalesTheWait) {
  FakeClock clock;
  RateLimiter limiter(1000, clock.now());
  limiter.consume(65536 + 1000);
  EXPECT_EQ(limiter.wait(), 1s);
  clock.advance(250ms);  // accrues 250 bytes at the old rate
  limiter.set_rate(3000);
  EXPECT_EQ(limiter.rate(), 3000u);
  EXPECT_EQ(limiter.tokens(), -750);
  EXPECT_EQ(limiter.wait(), 250ms);
  clock.advance(250ms);
  EXPECT_EQ(limiter.wait(), 0ns);
  EXPECT_EQ(limiter.tokens(), 0);
}

TEST(RateLimiterTest, SetRateCapsTokensAtTheNewBurst) {
  FakeClock clock;
  RateLimiter limiter(10'000'000, clock.now());
  EXPECT_EQ(limiter.tokens(), 1'000'000);
  limiter.set_rate(1000);
  EXPECT_EQ(limiter.tokens(), 65536);
  limiter.set_rate(10'000'000);  // a higher rate does not fill the bucket by itself
  EXPECT_EQ(limiter.tokens(), 65536);
  clock.advance(1s);
  EXPECT_EQ(limiter.tokens(), 1'000'000);
}

TEST(RateLimiterTest, ZeroRateMeansNoLimit) {
  FakeClock clock;
  RateLimiter limiter(0, clock.now());
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(limiter.acquire(1 << 20), 0ns);
  EXPECT_EQ(limiter.wait(), 0ns);
  // Switching a limit on starts with a full bucket, whatever was taken while there was none.
  limiter.set_rate(1000);
  EXPECT_EQ(limiter.tokens(), 65536);
  limiter.set_rate(0);
  EXPECT_EQ(limiter.acquire(1 << 30), 0ns);
}

// What a steady stream of 16 KiB chunks gets over 10 s, each taken as soon as the limiter allows: the burst
// plus the rate times the time, plus at most one chunk of debt.
TEST(RateLimiterTest, LongRunRateIsExact) {
  FakeClock clock;
  constexpr std::uint64_t kRate = 8 * 1024 * kKiB;
  constexpr std::uint64_t kChunk = 16 * kKiB;
  RateLimiter limiter(kRate, clock.now());
  std::uint64_t taken = 0;
  nanoseconds elapsed{0};
  while (elapsed < 10s) {
    const nanoseconds wait = limiter.acquire(kChunk);
    if (wait == 0ns) {
      taken += kChunk;
    } else {
      clock.advance(wait);
      elapsed += wait;
    }
  }
  const std::uint64_t allowed = limiter.burst() + static_cast<std::uint64_t>(kRate * 10);
  EXPECT_GE(taken, allowed);
  EXPECT_LE(taken, allowed + kChunk);
}

// Threads hammering a frozen clock: together they get the full bucket and at most one chunk each beyond it
// (the debt a chunk taken at a balance just above zero makes), never more.
TEST(RateLimiterTest, ThreadsShareOneBucket) {
  FakeClock clock;
  constexpr std::uint64_t kChunk = 1000;
  constexpr int kThreads = 8;
  RateLimiter limiter(1'000'000, clock.now());
  std::atomic<std::uint64_t> taken{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        if (limiter.acquire(kChunk) == 0ns) taken += kChunk;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_GE(taken.load(), limiter.burst());
  EXPECT_LE(taken.load(), limiter.burst() + kChunk);
  EXPECT_LT(limiter.tokens(), 0);
}

class RecordingListener : public RatePauseListener {
 public:
  void rate_paused(Transfer& transfer, RateLimiter::Clock::time_point wake) override {
    ++calls;
    last = &transfer;
    last_wake = wake;
  }
  int calls = 0;
  Transfer* last = nullptr;
  RateLimiter::Clock::time_point last_wake{};
};

TEST(RateGateTest, PauseModeTakesNothingWhilePaused) {
  FakeClock clock;
  RateLimiter limiter(1000, clock.now());
  RecordingListener listener;
  Transfer transfer(core::TransferRequest{});
  RateGate gate;
  gate.attach(&limiter, &listener, 1024, 30s);
  std::atomic<bool> cancel{false};
  EXPECT_EQ(gate.admit(transfer, 65536 + 1000, cancel), RateGate::Admit::kGo);
  EXPECT_FALSE(gate.paused());
  const auto before = RateLimiter::Clock::now();
  EXPECT_EQ(gate.admit(transfer, 16384, cancel), RateGate::Admit::kPause);
  EXPECT_TRUE(gate.paused());
  EXPECT_EQ(listener.calls, 1);
  EXPECT_EQ(listener.last, &transfer);
  EXPECT_GE(listener.last_wake, before + 1s);  // the debt of 1000 bytes at 1000 B/s
  EXPECT_EQ(limiter.tokens(), -1000);          // the paused chunk took nothing
  clock.advance(1s);
  EXPECT_EQ(gate.admit(transfer, 16384, cancel), RateGate::Admit::kGo);  // the same bytes, offered again
  EXPECT_FALSE(gate.paused());
  EXPECT_EQ(limiter.tokens(), -16384);
  EXPECT_EQ(listener.calls, 1);
}

TEST(RateGateTest, SleepModeStopsOnCancel) {
  FakeClock clock;  // frozen: the debt is never repaid
  RateLimiter limiter(1000, clock.now());
  limiter.consume(1 << 20);
  Transfer transfer(core::TransferRequest{});
  RateGate gate;
  gate.attach(&limiter, nullptr, 0, 30s);  // no low-speed floor
  std::atomic<bool> cancel{true};
  EXPECT_EQ(gate.admit(transfer, 100, cancel), RateGate::Admit::kCancelled);
  EXPECT_EQ(limiter.tokens(), 65536 - (1 << 20));  // nothing taken
}

TEST(RateGateTest, SleepModeKeepsTheLowSpeedFloor) {
  FakeClock clock;  // frozen: only the floor can let the bytes through
  RateLimiter limiter(1000, clock.now());
  limiter.consume(1 << 20);
  const std::int64_t debt = limiter.tokens();
  Transfer transfer(core::TransferRequest{});
  RateGate gate;
  gate.attach(&limiter, nullptr, 1024, 30s);
  std::atomic<bool> cancel{false};
  // Waits one slice, falls behind 2 × 1024 B/s within its window, and borrows.
  EXPECT_EQ(gate.admit(transfer, 100, cancel), RateGate::Admit::kGo);
  EXPECT_EQ(limiter.tokens(), debt - 100);
}

}  // namespace
}  // namespace fetchd::transfer
