// SPDX-License-Identifier: Apache-2.0
#include "fetchd/store/job_store.hpp"

#include <array>
#include <utility>

namespace fetchd::store {
namespace {
constexpr std::array<std::pair<State, std::string_view>, 5> kNames{{{State::kQueued, "queued"},
                                                                    {State::kRunning, "running"},
                                                                    {State::kDone, "done"},
                                                                    {State::kFailed, "failed"},
                                                                    {State::kCancelled, "cancelled"}}};
}  // namespace

std::string_view to_string(State s) {
  for (const auto& [state, name] : kNames) {
    if (state == s) return name;
  }
  return "?";
}

std::optional<State> state_from_string(std::string_view s) {
  for (const auto& [state, name] : kNames) {
    if (name == s) return state;
  }
  return std::nullopt;
}

std::vector<Job> JobStore::claim(std::size_t /*limit*/) {
  throw std::logic_error("claim() on a store that is not shared");
}
std::vector<core::JobId> JobStore::renew(const std::vector<Held>& /*held*/) {
  throw std::logic_error("renew() on a store that is not shared");
}
std::uint64_t JobStore::release_expired() {
  throw std::logic_error("release_expired() on a store that is not shared");
}

}  // namespace fetchd::store
