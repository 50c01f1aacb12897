// SPDX-License-Identifier: Apache-2.0
#include "fetchd/transfer/publish_fence.hpp"

#include <atomic>
#include <cstdint>
#include <limits>

namespace fetchd::transfer {
namespace {
std::atomic<std::int64_t> deadline_ns{std::numeric_limits<std::int64_t>::max()};
}  // namespace

void set_publish_deadline(std::chrono::steady_clock::time_point deadline) {
  const auto ns =
      deadline == std::chrono::steady_clock::time_point::max()
          ? std::numeric_limits<std::int64_t>::max()
          : std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch()).count();
  deadline_ns.store(ns, std::memory_order_relaxed);
}

bool publish_allowed() {
  const auto limit = deadline_ns.load(std::memory_order_relaxed);
  if (limit == std::numeric_limits<std::int64_t>::max()) return true;
  const auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                       std::chrono::steady_clock::now().time_since_epoch())
                       .count();
  return now < limit;
}

}  // namespace fetchd::transfer
