// SPDX-License-Identifier: Apache-2.0
#include "watch_view.hpp"

#include <fmt/format.h>

#include "format.hpp"

namespace fetchd::ctl {

namespace {
// Weight of the newest sample in the smoothed rate: progress arrives about once a second, so the display
// follows a change within a few seconds without jumping on every sample.
constexpr double kRateWeight = 0.5;
constexpr std::chrono::milliseconds kMinSampleGap{250};
}  // namespace

void WatchView::apply(const nlohmann::json& event, Clock::time_point now) {
  auto name = json_string(event, "event");
  if (!name) return;
  if (*name == "stats") {
    if (auto it = event.find("stats"); it != event.end() && it->is_object()) stats_ = *it;
    return;
  }
  auto job_it = event.find("job");
  if (job_it == event.end() || !job_it->is_object()) return;
  const auto& job = *job_it;
  auto id = json_int(job, "id");
  if (!id) return;
  if (json_string(job, "state").value_or("") != "running") {
    bars_.erase(*id);
    return;
  }
  Bar& bar = bars_[*id];
  auto bytes = json_int(job, "bytes");
  auto size = json_int(job, "size");
  std::uint64_t new_bytes = bytes && *bytes > 0 ? static_cast<std::uint64_t>(*bytes) : 0;
  bool first = bar.base_time == Clock::time_point{};
  if (first || new_bytes < bar.base_bytes) {
    // New, or restarted from a lower offset (a retry, or a 200 where a resume was asked): the rate starts
    // over.
    bar.rate.reset();
    bar.base_bytes = new_bytes;
    bar.base_time = now;
  } else if (now - bar.base_time >= kMinSampleGap) {
    double seconds = std::chrono::duration<double>(now - bar.base_time).count();
    double sample = static_cast<double>(new_bytes - bar.base_bytes) / seconds;
    bar.rate = bar.rate ? kRateWeight * sample + (1 - kRateWeight) * *bar.rate : sample;
    bar.base_bytes = new_bytes;
    bar.base_time = now;
  }
  bar.bytes = new_bytes;
  bar.size =
      size && *size >= 0 ? std::optional<std::uint64_t>(static_cast<std::uint64_t>(*size)) : std::nullopt;
  if (auto dest = json_string(job, "dest")) bar.dest = *dest;
}

std::vector<std::string> WatchView::render(std::size_t width, std::size_t height, bool unicode) const {
  std::vector<std::string> lines;
  if (height == 0) return lines;
  std::size_t room = height - 1;  // the totals line is always shown
  std::size_t shown = bars_.size() <= room ? bars_.size() : (room > 0 ? room - 1 : 0);
  std::size_t i = 0;
  for (const auto& [id, bar] : bars_) {
    if (i++ == shown) break;
    lines.push_back(format_progress_line(bar.dest, bar.bytes, bar.size, bar.rate, width, unicode));
  }
  if (shown < bars_.size() && room > 0) {
    lines.push_back(truncate_right(
        fmt::format("{} and {} more running", unicode ? "…" : "...", bars_.size() - shown), width, unicode));
  }
  std::string totals = stats_.is_null() ? "waiting for the first stats event" : format_totals(stats_);
  lines.push_back(truncate_right(totals, width, unicode));
  return lines;
}

std::optional<double> WatchView::rate(std::int64_t id) const {
  auto it = bars_.find(id);
  return it == bars_.end() ? std::nullopt : it->second.rate;
}

}  // namespace fetchd::ctl
