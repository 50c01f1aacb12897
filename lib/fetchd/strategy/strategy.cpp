// SPDX-License-Identifier: Apache-2.0
#include "fetchd/strategy/strategy.hpp"

#include <spdlog/spdlog.h>

#include <memory>
#include <stdexcept>
#include <thread>
#include <string>

#include "fetchd/core/units.hpp"
#include "fetchd/strategy/curl_multi_strategy.hpp"
#include "fetchd/strategy/event_loop_strategy.hpp"
#include "fetchd/strategy/loop_threads_strategy.hpp"
#include "fetchd/strategy/process_pool_strategy.hpp"
#include "fetchd/strategy/thread_pool_strategy.hpp"
#include "fetchd/transfer/rate_limiter.hpp"

namespace fetchd::strategy {

namespace {
// Without fsync the file steps are an open and a rename: cheaper inline on the loop than a round trip to a
// thread (docs/benchmarks.md). fsyncs wait on the disk and overlap their waits: a few threads win.
int file_threads_for(const config::OutputConfig& output) { return output.fsync ? 4 : 0; }

// limits.rate for the strategies of this process; nullptr when there is none.
std::shared_ptr<transfer::RateLimiter> limiter_for(const config::Config& config) {
  if (config.limits.rate == 0) return nullptr;
  return std::make_shared<transfer::RateLimiter>(config.limits.rate);
}

// Blocking transfers sleep for the limiter, which curl's low-speed check would count as slowness; so each
// keeps a floor of twice low_speed.limit (rate_limiter.hpp), which may take the total past a limit that is
// too small for that many transfers. Say so once, at start-up.
void warn_blocking_floor(const config::Config& config) {
  const std::uint64_t floor = 2 * config.defaults.low_speed_limit;
  const auto transfers = static_cast<std::uint64_t>(config.strategy.concurrency);
  if (config.limits.rate == 0 || floor == 0 || config.limits.rate >= floor * transfers) return;
  spdlog::warn(
      "limits.rate {}/s is below concurrency ({}) x 2 x low_speed.limit ({}/s): {} transfers keep at "
      "least {}/s each so that throttling does not trip the low-speed abort; the total may reach {}/s",
      core::format_size(config.limits.rate), transfers, core::format_size(config.defaults.low_speed_limit),
      config::to_string(config.strategy.kind), core::format_size(floor),
      core::format_size(floor * transfers));
}
}  // namespace

std::unique_ptr<Strategy> make_strategy(const config::Config& config, uv_loop_t* loop,
                                        Strategy::ResultCallback on_result) {
  switch (config.strategy.kind) {
    case config::StrategyKind::kEventLoop: {
      // One loop per CPU for threads: 0; one loop (the control loop itself, no hand-offs) for threads: 1.
      int threads = config.strategy.threads > 0 ? config.strategy.threads
                                                : static_cast<int>(std::max(1U, std::thread::hardware_concurrency()));
      threads = std::min(threads, config.strategy.concurrency);
      if (threads > 1) {
        return std::make_unique<LoopThreadsStrategy>(config.strategy, threads, file_threads_for(config.output), loop,
                                                     std::move(on_result), limiter_for(config));
      }
      return std::make_unique<EventLoopStrategy>(config.strategy, file_threads_for(config.output), loop,
                                                 std::move(on_result), limiter_for(config));
    }
    case config::StrategyKind::kCurlMulti:
      return std::make_unique<CurlMultiStrategy>(config.strategy, file_threads_for(config.output), loop,
                                                 std::move(on_result), limiter_for(config));
    case config::StrategyKind::kThreadPool:
      // No file workers: the file steps run inline on the transfer's own thread, which is the point of it.
      warn_blocking_floor(config);
      return std::make_unique<ThreadPoolStrategy>(config.strategy, loop, std::move(on_result),
                                                  limiter_for(config));
    case config::StrategyKind::kProcessPool:
      // Each worker sizes its own file threads from output.fsync, as event-loop does here, and runs its own
      // limiter with the share of limits.rate the pool gives it.
      if (config.strategy.inner == config::InnerKind::kBlocking) warn_blocking_floor(config);
      return std::make_unique<ProcessPoolStrategy>(config.strategy, config.output.fsync, loop,
                                                   std::move(on_result), config.limits.rate);
    default:
      throw std::runtime_error("strategy '" + std::string(config::to_string(config.strategy.kind)) +
                               "' is not available in this build yet");
  }
}

}  // namespace fetchd::strategy
