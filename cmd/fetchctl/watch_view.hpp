// SPDX-License-Identifier: Apache-2.0
#pragma once
// The state behind `fetchctl watch` on a terminal: the running transfers (from job events) with a smoothed
// rate each, and the latest totals (from stats events), rendered as lines. Pure: time comes in as an argument
// and the output is a list of strings, so the terminal handling stays in watch.cpp. One thread.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace fetchd::ctl {

class WatchView {
 public:
  using Clock = std::chrono::steady_clock;

  // Applies one event object ({"event": ..., "job"|"stats": ...}). A job whose state is "running" gets (or
  // keeps) a bar; any other state removes it.
  void apply(const nlohmann::json& event, Clock::time_point now);

  // At most `height` lines of at most `width` columns: one bar per running job (lowest id first; "… and N
  // more" when they do not all fit) and the totals line last.
  std::vector<std::string> render(std::size_t width, std::size_t height, bool unicode) const;

  std::size_t running() const { return bars_.size(); }
  // The smoothed rate of a job, for tests; nullopt until two progress samples were seen.
  std::optional<double> rate(std::int64_t id) const;

 private:
  struct Bar {
    std::string dest;
    std::uint64_t bytes = 0;
    std::optional<std::uint64_t> size;
    std::optional<double> rate;  // bytes/s, exponentially smoothed
    // The last point a rate sample was taken from: events closer together than kMinSampleGap are merged into
    // the next sample, since a rate over a few milliseconds says nothing (started + progress arrive
    // together).
    std::uint64_t base_bytes = 0;
    Clock::time_point base_time;
  };
  std::map<std::int64_t, Bar> bars_;
  nlohmann::json stats_;  // null until the first stats event
};

}  // namespace fetchd::ctl
