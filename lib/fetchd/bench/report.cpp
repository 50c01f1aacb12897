// SPDX-License-Identifier: Apache-2.0
#include "fetchd/bench/report.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "fetchd/bench/options.hpp"

namespace fetchd::bench {

namespace {

constexpr double kMiB = 1024.0 * 1024.0;
constexpr std::string_view kStrategyHeader = "strategy";
constexpr std::string_view kNotMeasured = "-";

std::string number_or_dash(std::optional<double> value, int precision) {
  if (!value) return std::string(kNotMeasured);
  return fmt::format("{:.{}f}", *value, precision);
}

nlohmann::json json_or_null(std::optional<double> value) {
  return value ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

}  // namespace

std::optional<double> Row::files_per_s() const {
  if (!ok() || !wall_s || *wall_s <= 0) return std::nullopt;
  return static_cast<double>(files) / *wall_s;
}

std::optional<double> Row::mib_per_s() const {
  if (!ok() || !wall_s || *wall_s <= 0) return std::nullopt;
  return static_cast<double>(bytes) / kMiB / *wall_s;
}

std::size_t strategy_column_width() {
  std::size_t width = kStrategyHeader.size();
  for (auto name : kKnownStrategies) width = std::max(width, name.size());
  return width;
}

std::string format_table_header(std::size_t strategy_width) {
  return fmt::format("{:<{}} {:>11} {:>8} {:>9} {:>8} {:>10} {:>8} {:>7} {:>12} {:>8}", kStrategyHeader,
                     strategy_width, "concurrency", "files", "MiB", "wall s", "files/s", "MiB/s", "CPU s",
                     "peak RSS MiB", "failures");
}

std::string format_table_row(const Row& row, std::size_t strategy_width) {
  return fmt::format("{:<{}} {:>11} {:>8} {:>9.2f} {:>8} {:>10} {:>8} {:>7.2f} {:>12.1f} {:>8}", row.strategy,
                     strategy_width, row.concurrency, row.files, static_cast<double>(row.bytes) / kMiB,
                     number_or_dash(row.wall_s, 2), number_or_dash(row.files_per_s(), 0),
                     number_or_dash(row.mib_per_s(), 1), row.cpu_s(), row.peak_rss_mib, row.failures);
}

nlohmann::json row_to_json(const Row& row) {
  nlohmann::json j = {
      {"strategy", row.strategy},
      {"concurrency", row.concurrency},
      {"files", row.files},
      {"bytes", row.bytes},
      {"wall_s", json_or_null(row.wall_s)},
      {"files_per_s", json_or_null(row.files_per_s())},
      {"mib_per_s", json_or_null(row.mib_per_s())},
      {"cpu_s", row.cpu_s()},
      {"peak_rss_mib", row.peak_rss_mib},
      {"failures", row.failures},
      {"size", row.size},
      {"process_wall_s", row.process_wall_s},
      {"cpu_user_s", row.cpu_user_s},
      {"cpu_sys_s", row.cpu_sys_s},
      {"verify_failures", row.verify_failures},
      {"child_failed", row.child_failed},
      {"child_status", row.child_status},
      {"inline_checks", row.inline_checks},
      {"interrupted", row.interrupted},
  };
  if (!row.error.empty()) j["error"] = row.error;
  return j;
}

nlohmann::json rows_to_json(std::span<const Row> rows) {
  auto array = nlohmann::json::array();
  for (const auto& row : rows) array.push_back(row_to_json(row));
  return array;
}

}  // namespace fetchd::bench
