// SPDX-License-Identifier: Apache-2.0
#pragma once
// The one interface behind which the four concurrency models run transfers. A strategy performs transfers and
// reports every TransferResult back on the control loop; it knows nothing of queues, stores or sockets.
// Thread: every method is called on the control loop thread, and every callback is delivered there.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "fetchd/config/config.hpp"
#include "fetchd/core/transfer_types.hpp"

namespace fetchd::strategy {

struct StrategySnapshot {
  std::size_t active = 0;         // transfers submitted and not yet reported
  std::uint64_t bytes = 0;        // body bytes received so far, in-flight transfers included
};

struct JobProgress {
  core::JobId id = 0;
  std::uint64_t bytes = 0;  // body bytes received so far in the current attempt
};

class Strategy {
 public:
  using ResultCallback = std::function<void(core::TransferResult)>;
  virtual ~Strategy() = default;

  virtual std::string_view name() const = 0;
  // How many transfers may be in flight at once; the scheduler never submits more.
  virtual int capacity() const = 0;
  // Starts a transfer. Exactly one result is delivered for it, through the callback, on the control loop, never
  // from inside submit() itself.
  virtual void submit(core::TransferRequest request) = 0;
  // Asks the transfer to stop; its result (category kCancelled, unless it finished first) still arrives.
  virtual void cancel(core::JobId id) = 0;
  // No submit() after this. Calls done once every in-flight transfer has reported and the strategy's resources
  // (threads, processes, handles) are released, so the loop can close afterwards.
  virtual void drain(std::function<void()> done) = 0;
  virtual StrategySnapshot snapshot() const = 0;
  // Appends the bytes so far of each in-flight transfer. Strategies that only know totals (process-pool: the
  // workers report per worker) append nothing.
  virtual void progress(std::vector<JobProgress>& out) const { (void)out; }
};

// The strategy config.strategy names; output settings (fsync) size its file workers.
std::unique_ptr<Strategy> make_strategy(const config::Config& config, uv_loop_t* loop,
                                        Strategy::ResultCallback on_result);

}  // namespace fetchd::strategy
