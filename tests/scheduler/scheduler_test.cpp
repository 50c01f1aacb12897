// SPDX-License-Identifier: Apache-2.0
// The scheduler's per-origin behaviour on the event-loop strategy against the embedded origin: limits.per_host
// is never exceeded and leaves other origins alone; a 429/503 with Retry-After pauses the whole origin; retry
// policies decide what is retried.

#include "fetchd/scheduler/scheduler.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <random>

#include "fetchd/config/config.hpp"
#include "fetchd/origin/origin.hpp"
#include "fetchd/scheduler/run.hpp"
#include "fetchd/uv/handle.hpp"
#include "fetchd/uv/loop.hpp"

namespace fetchd::scheduler {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / fmt::format("fetchd-sched-{}", std::random_device{}());
    fs::create_directories(dir_);
    config_.strategy.kind = config::StrategyKind::kEventLoop;
    config_.strategy.concurrency = 16;
    config_.output.dir = dir_;
    config_.output.fsync = false;
    config_.defaults.retry.retries = 0;
    config_.defaults.retry.initial = std::chrono::milliseconds(1);
    config_.defaults.retry.max = std::chrono::milliseconds(5);
  }
  void TearDown() override { fs::remove_all(dir_); }

  core::TransferRequest request(const origin::OriginThread& origin, const std::string& path,
                                const std::string& dest) {
    config::Job job;
    job.url = origin.url(path);
    job.dest = dest;
    return make_request(config_, job);
  }

  // Runs the jobs to the end on a fresh loop; `on_started`/`on_finished` see every transition.
  // prior_attempts: given to every add(), as if an earlier daemon run had made them.
  void run(Scheduler::Options options, const std::vector<core::TransferRequest>& requests, int prior_attempts = 0) {
    uv::Loop loop;
    uv::Timer done_timer(loop.get());
    bool draining = false;
    std::unique_ptr<Scheduler> sched;
    options.on_idle = [&] {
      if (!draining) done_timer.start(0, 0, [&] {
          draining = true;
          sched->drain([&] { done_timer.close(); });
        });
    };
    sched = std::make_unique<Scheduler>(
        loop.get(),
        [&](strategy::Strategy::ResultCallback cb) {
          return strategy::make_strategy(config_, loop.get(), std::move(cb));
        },
        std::move(options));
    scheduler_ = sched.get();
    for (const auto& r : requests) sched->add(r, prior_attempts);
    loop.run();
    scheduler_ = nullptr;
    sched.reset();
    EXPECT_EQ(loop.close(), 0);
  }

  fs::path dir_;
  config::Config config_;
  Scheduler* scheduler_ = nullptr;
};

TEST_F(SchedulerTest, PerHostLimitHoldsAndOtherOriginsAreNotHeldUp) {
  origin::OriginThread busy;
  origin::OriginThread other;
  std::vector<core::TransferRequest> requests;
  for (int i = 0; i < 8; ++i) requests.push_back(request(busy, "/bytes/1000?latency=100ms", fmt::format("b{}", i)));
  for (int i = 0; i < 4; ++i) requests.push_back(request(other, "/bytes/1000?latency=100ms", fmt::format("o{}", i)));
  std::map<std::string, int> running;
  std::map<std::string, int> peak;
  int done = 0;
  Scheduler::Options options;
  options.per_host = 2;
  const std::string busy_url = busy.url("/");
  auto origin_of = [&](const JobRecord& j) { return j.request.url.starts_with(busy_url) ? "busy" : "other"; };
  options.on_started = [&](const JobRecord& j) {
    peak[origin_of(j)] = std::max(peak[origin_of(j)], ++running[origin_of(j)]);
  };
  options.on_finished = [&](const JobRecord& j) {
    --running[origin_of(j)];
    if (j.state == JobState::kDone) ++done;
  };
  run(std::move(options), requests);
  EXPECT_EQ(done, 12);
  EXPECT_EQ(peak["busy"], 2);   // never more, and the limit was used
  EXPECT_EQ(peak["other"], 2);  // the other origin ran alongside, with its own two slots
  EXPECT_LE(busy.stats().max_requests_in_flight, 2u);
}

TEST_F(SchedulerTest, RetryAfterPausesTheWholeOrigin) {
  origin::OriginThread origin;
  config_.strategy.concurrency = 4;
  config_.defaults.retry.retries = 1;
  // The first job is told to come back in 1 s; the second one, queued behind it on the same origin, must wait as
  // well even though it never got a 503 itself.
  std::vector<core::TransferRequest> requests{request(origin, "/status/503?retry_after=1", "a"),
                                              request(origin, "/bytes/100?latency=0ms", "b")};
  config_.strategy.concurrency = 1;  // b starts only after a's result
  Clock::time_point told_to_wait{};
  Clock::time_point b_started{};
  Scheduler::Options options;
  options.on_retry = [&](const JobRecord&) { told_to_wait = Clock::now(); };
  options.on_started = [&](const JobRecord& j) {
    if (j.request.dest.ends_with("/b")) b_started = Clock::now();
  };
  run(std::move(options), requests);
  ASSERT_NE(told_to_wait, Clock::time_point{});
  ASSERT_NE(b_started, Clock::time_point{});
  EXPECT_GE(b_started - told_to_wait, std::chrono::milliseconds(950));
}

TEST_F(SchedulerTest, RetryOnDecidesWhatIsRetried) {
  origin::OriginThread origin;
  config_.defaults.retry.retries = 2;
  config_.defaults.retry.retry_on.statuses = {503};  // 500 is no longer retried
  std::map<std::string, int> attempts;
  Scheduler::Options options;
  options.on_finished = [&](const JobRecord& j) { attempts[fs::path(j.request.dest).filename()] = j.request.attempt; };
  run(std::move(options), {request(origin, "/status/500", "five-hundred"), request(origin, "/status/503", "five-oh-three"),
                           request(origin, "/status/404", "not-found")});
  EXPECT_EQ(attempts["five-hundred"], 1);
  EXPECT_EQ(attempts["five-oh-three"], 3);
  EXPECT_EQ(attempts["not-found"], 1);
}

// Attempts made before a restart count against the retries: 2 of 3 attempts used leaves one.
TEST_F(SchedulerTest, PriorAttemptsCountAgainstTheRetries) {
  origin::OriginThread origin;
  config_.defaults.retry.retries = 2;
  int attempts = 0;
  int retries = 0;
  JobState final_state = JobState::kQueued;
  Scheduler::Options options;
  options.on_retry = [&](const JobRecord&) { ++retries; };
  options.on_finished = [&](const JobRecord& j) {
    attempts = j.request.attempt;
    final_state = j.state;
  };
  run(std::move(options), {request(origin, "/status/503", "later")}, /*prior_attempts=*/2);
  EXPECT_EQ(final_state, JobState::kFailed);
  EXPECT_EQ(attempts, 3);  // counted with the earlier ones
  EXPECT_EQ(retries, 0);
  EXPECT_EQ(origin.stats().requests_total, 1u);
}

// A cancelled job is not a failed one: the throughput line's `failed` counts failures only.
TEST_F(SchedulerTest, CancelledJobsCountAsCancelledNotFailed) {
  origin::OriginThread origin;
  config_.strategy.concurrency = 2;
  uv::Loop loop;
  uv::Timer timer(loop.get());
  int started = 0;
  int cancelled = 0;
  Scheduler::Options options;
  options.on_started = [&](const JobRecord&) { ++started; };
  options.on_finished = [&](const JobRecord& j) {
    if (j.state == JobState::kCancelled) ++cancelled;
  };
  auto sched = std::make_unique<Scheduler>(
      loop.get(),
      [&](strategy::Strategy::ResultCallback cb) {
        return strategy::make_strategy(config_, loop.get(), std::move(cb));
      },
      std::move(options));
  for (int i = 0; i < 5; ++i) sched->add(request(origin, "/bytes/1000?latency=30s", fmt::format("c{}", i)));
  ASSERT_EQ(sched->running(), 2u);
  stats::Counters counters;
  timer.start(0, 0, [&] {
    sched->cancel_all();  // two running (they report kCancelled) and three queued
    sched->drain([&] {
      counters = sched->counters();
      timer.close();
    });
  });
  loop.run();
  EXPECT_EQ(started, 2);
  EXPECT_EQ(cancelled, 5);
  EXPECT_EQ(counters.cancelled, 5u);
  EXPECT_EQ(counters.failed, 0u);
  EXPECT_EQ(counters.done, 0u);
  sched.reset();
  EXPECT_EQ(loop.close(), 0);
}

// The end of a shutdown's grace: a drained scheduler cancels what runs and leaves the queue alone.
TEST_F(SchedulerTest, CancelRunningStopsOnlyTheRunningTransfers) {
  origin::OriginThread origin;
  config_.strategy.concurrency = 2;
  uv::Loop loop;
  uv::Timer timer(loop.get());
  std::vector<core::JobId> finished;
  bool all_interrupted = true;
  int started = 0;
  Scheduler::Options options;
  options.on_started = [&](const JobRecord&) { ++started; };
  options.on_finished = [&](const JobRecord& j) {
    finished.push_back(j.request.id);
    all_interrupted = all_interrupted && j.state == JobState::kCancelled && j.interrupted;
  };
  auto sched = std::make_unique<Scheduler>(
      loop.get(),
      [&](strategy::Strategy::ResultCallback cb) {
        return strategy::make_strategy(config_, loop.get(), std::move(cb));
      },
      std::move(options));
  for (int i = 0; i < 5; ++i) sched->add(request(origin, "/bytes/1000?latency=30s", fmt::format("r{}", i)));
  ASSERT_EQ(sched->running(), 2u);
  stats::Counters after;
  std::size_t runnable_after = 0;
  // As the daemon does: drain (nothing new starts), then cancel the running transfers.
  timer.start(0, 0, [&] {
    sched->drain([&] {
      after = sched->counters();
      runnable_after = sched->runnable();
      timer.close();
    });
    sched->cancel_running();
  });
  loop.run();
  EXPECT_EQ(started, 2);
  EXPECT_EQ(finished, (std::vector<core::JobId>{1, 2}));
  EXPECT_TRUE(all_interrupted);
  EXPECT_EQ(runnable_after, 3u) << "the queued jobs are left alone";
  EXPECT_EQ(after.queued, 3u);
  EXPECT_EQ(after.cancelled, 2u);
  EXPECT_EQ(after.failed, 0u);
  sched.reset();
  EXPECT_EQ(loop.close(), 0);
}

TEST(RetryDelay, BackoffGrowsIsCappedAndHonoursRetryAfter) {
  core::RetryPolicy p;
  p.initial = std::chrono::milliseconds(100);
  p.max = std::chrono::milliseconds(1000);
  p.multiplier = 3;
  p.jitter = core::Jitter::kNone;
  p.retry_after_max = std::chrono::seconds(10);
  std::mt19937_64 rng(1);
  EXPECT_EQ(retry_delay(p, 1, std::nullopt, rng), std::chrono::milliseconds(100));
  EXPECT_EQ(retry_delay(p, 2, std::nullopt, rng), std::chrono::milliseconds(300));
  EXPECT_EQ(retry_delay(p, 3, std::nullopt, rng), std::chrono::milliseconds(900));
  EXPECT_EQ(retry_delay(p, 4, std::nullopt, rng), std::chrono::milliseconds(1000));
  EXPECT_EQ(retry_delay(p, 1, std::chrono::seconds(5), rng), std::chrono::seconds(5));
  EXPECT_EQ(retry_delay(p, 1, std::chrono::seconds(86400 * 365), rng), std::chrono::seconds(10));  // clamped
  p.jitter = core::Jitter::kFull;
  for (int i = 0; i < 100; ++i) EXPECT_LE(retry_delay(p, 2, std::nullopt, rng), std::chrono::milliseconds(300));
}

}  // namespace
}  // namespace fetchd::scheduler
