// SPDX-License-Identifier: Apache-2.0
#include "fetchd/origin/request_counter.hpp"

#include "fetchd/origin/http.hpp"

namespace fetchd::origin {

std::uint64_t RequestCounts::target(std::string_view target) const {
  auto it = by_target.find(target);
  return it == by_target.end() ? 0 : it->second;
}

std::uint64_t RequestCounts::path(std::string_view path) const {
  std::uint64_t n = 0;
  for (auto it = by_target.lower_bound(path); it != by_target.end() && it->first.starts_with(path); ++it) {
    if (split_target(it->first).path == path) n += it->second;
  }
  return n;
}

std::uint64_t RequestCounts::prefix(std::string_view prefix) const {
  std::uint64_t n = 0;
  for (auto it = by_target.lower_bound(prefix); it != by_target.end() && it->first.starts_with(prefix); ++it)
    n += it->second;
  return n;
}

RequestCounter::RequestCounter() : state_(std::make_shared<State>()) {}

std::function<void(std::string_view)> RequestCounter::hook() const {
  return [state = state_](std::string_view target) {
    {
      std::lock_guard lock(state->mutex);
      ++state->counts.total;
      auto it = state->counts.by_target.find(target);
      if (it == state->counts.by_target.end()) {
        state->counts.by_target.emplace(std::string(target), 1);
      } else {
        ++it->second;
      }
    }
    state->cv.notify_all();
  };
}

RequestCounts RequestCounter::snapshot() const {
  std::lock_guard lock(state_->mutex);
  return state_->counts;
}

void RequestCounter::reset() {
  std::lock_guard lock(state_->mutex);
  state_->counts = {};
}

bool RequestCounter::wait_for(const std::function<bool(const RequestCounts&)>& condition,
                              std::chrono::milliseconds limit) const {
  std::unique_lock lock(state_->mutex);
  return state_->cv.wait_for(lock, limit, [&] { return condition(state_->counts); });
}

}  // namespace fetchd::origin
