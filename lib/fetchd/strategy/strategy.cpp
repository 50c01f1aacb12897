// SPDX-License-Identifier: Apache-2.0
#include "fetchd/strategy/strategy.hpp"

#include <stdexcept>
#include <string>

#include "fetchd/strategy/curl_multi_strategy.hpp"
#include "fetchd/strategy/event_loop_strategy.hpp"
#include "fetchd/strategy/process_pool_strategy.hpp"
#include "fetchd/strategy/thread_pool_strategy.hpp"

namespace fetchd::strategy {

namespace {
// Without fsync the file steps are creates and renames in shared directories, which serialise on the directory
// lock: one thread does them fastest. fsyncs overlap their waits: a few threads win (docs/benchmarks.md).
int file_threads_for(const config::OutputConfig& output) { return output.fsync ? 4 : 1; }
}  // namespace

std::unique_ptr<Strategy> make_strategy(const config::Config& config, uv_loop_t* loop,
                                        Strategy::ResultCallback on_result) {
  switch (config.strategy.kind) {
    case config::StrategyKind::kEventLoop:
      return std::make_unique<EventLoopStrategy>(config.strategy, file_threads_for(config.output), loop,
                                                 std::move(on_result));
    case config::StrategyKind::kCurlMulti:
      return std::make_unique<CurlMultiStrategy>(config.strategy, file_threads_for(config.output), loop,
                                                 std::move(on_result));
    case config::StrategyKind::kThreadPool:
      // No file workers: the file steps run inline on the transfer's own thread, which is the point of it.
      return std::make_unique<ThreadPoolStrategy>(config.strategy, loop, std::move(on_result));
    case config::StrategyKind::kProcessPool:
      // Each worker sizes its own file threads from output.fsync, as event-loop does here.
      return std::make_unique<ProcessPoolStrategy>(config.strategy, config.output.fsync, loop,
                                                   std::move(on_result));
    default:
      throw std::runtime_error("strategy '" + std::string(config::to_string(config.strategy.kind)) +
                               "' is not available in this build yet");
  }
}

}  // namespace fetchd::strategy
