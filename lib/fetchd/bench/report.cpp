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
constexpr double kPercent = 100.0;

constexpr std::string_view kCsvColumns[] = {
    "profile",   "strategy", "via",         "concurrency",  "workers",
    "files",     "bytes",    "wall_s",      "submit_ack_s", "files_per_s",
    "mib_per_s", "cpu_s",    "cpu_percent", "peak_rss_mib", "tree_peak_rss_mib",
    "failures",  "refused"};

std::string number_or_dash(std::optional<double> value, int precision) {
  if (!value) return std::string(kNotMeasured);
  return fmt::format("{:.{}f}", *value, precision);
}

template <typename T>
nlohmann::json json_or_null(const std::optional<T>& value) {
  return value ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

bool is_process_pool(std::string_view strategy) {
  const auto* variant = find_strategy(strategy);
  return variant != nullptr && variant->workers != WorkersRule::kNone;
}

std::string csv_field(const nlohmann::json& value) {
  if (value.is_null()) return {};
  std::string text = value.is_string() ? value.get<std::string>() : value.dump();
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  quoted += '"';
  return quoted;
}

}  // namespace

std::optional<double> Row::files_per_s() const {
  if (!measured() || !ok() || !wall_s || *wall_s <= 0) return std::nullopt;
  return static_cast<double>(files) / *wall_s;
}

std::optional<double> Row::mib_per_s() const {
  if (!measured() || !ok() || !wall_s || *wall_s <= 0) return std::nullopt;
  return static_cast<double>(bytes) / kMiB / *wall_s;
}

std::optional<double> Row::cpu_percent() const {
  if (!measured() || process_wall_s <= 0) return std::nullopt;
  return cpu_s() / process_wall_s * kPercent;
}

std::optional<double> Row::peak_rss_mib() const {
  if (!measured()) return std::nullopt;
  if (is_process_pool(strategy) && tree_peak_rss_mib) return std::max(*tree_peak_rss_mib, maxrss_mib);
  return maxrss_mib;
}

std::size_t strategy_column_width() {
  std::size_t width = kStrategyHeader.size();
  for (const auto& v : kBenchStrategies) width = std::max(width, v.name.size());
  return width;
}

std::string format_table_header(std::size_t strategy_width) {
  return fmt::format("{:<{}} {:<5} {:>11} {:>8} {:>9} {:>8} {:>6} {:>10} {:>8} {:>7} {:>6} {:>9} {:>9} {:>8}",
                     kStrategyHeader, strategy_width, "via", "concurrency", "files", "MiB", "wall s", "ack s",
                     "files/s", "MiB/s", "CPU s", "CPU %", "peak MiB", "tree MiB", "failures");
}

std::string format_table_row(const Row& row, std::size_t strategy_width) {
  if (row.refused) {
    return fmt::format("{:<{}} {:<5} {:>11} {:>8}   refused: {}", row.strategy, strategy_width, row.via,
                       row.concurrency, row.files, *row.refused);
  }
  return fmt::format(
      "{:<{}} {:<5} {:>11} {:>8} {:>9.2f} {:>8} {:>6} {:>10} {:>8} {:>7.2f} {:>6} {:>9} {:>9} {:>8}",
      row.strategy, strategy_width, row.via, row.concurrency, row.files,
      static_cast<double>(row.bytes) / kMiB, number_or_dash(row.wall_s, 2),
      number_or_dash(row.submit_ack_s, 3), number_or_dash(row.files_per_s(), 0),
      number_or_dash(row.mib_per_s(), 1), row.cpu_s(), number_or_dash(row.cpu_percent(), 0),
      number_or_dash(row.peak_rss_mib(), 1), number_or_dash(row.tree_peak_rss_mib, 1), row.failures);
}

std::string table_footnote(std::string_view via) {
  std::string text = fmt::format(
      "CPU s: user+sys of `fetchd {0}` and every process it reaped (wait4); CPU %: of one core, over\n"
      "its life. peak MiB: ru_maxrss of `fetchd {0}`, for process pools the peak sum of RSS over its\n"
      "process tree; tree MiB: that sampled tree peak, for every row.",
      via);
  if (via == "serve") {
    text +=
        "\nwall s: first submit byte to the last job's finish time in the daemon's store; ack s: to the\n"
        "last submit's ok. CPU s is the daemon's whole life: start-up, store, stats and list, shutdown.";
  }
  return text;
}

nlohmann::json row_to_json(const Row& row) {
  nlohmann::json j = {
      {"profile", row.profile},
      {"strategy", row.strategy},
      {"via", row.via},
      {"concurrency", row.concurrency},
      {"workers", json_or_null(row.workers)},
      {"files", row.files},
      {"bytes", row.bytes},
      {"wall_s", json_or_null(row.wall_s)},
      {"submit_ack_s", json_or_null(row.submit_ack_s)},
      {"files_per_s", json_or_null(row.files_per_s())},
      {"mib_per_s", json_or_null(row.mib_per_s())},
      {"cpu_s", row.measured() ? nlohmann::json(row.cpu_s()) : nlohmann::json(nullptr)},
      {"cpu_percent", json_or_null(row.cpu_percent())},
      {"peak_rss_mib", json_or_null(row.peak_rss_mib())},
      {"tree_peak_rss_mib", json_or_null(row.tree_peak_rss_mib)},
      {"failures", row.failures},
      {"refused", json_or_null(row.refused)},
      {"size", row.size},
      {"process_wall_s", row.process_wall_s},
      {"cpu_user_s", row.cpu_user_s},
      {"cpu_sys_s", row.cpu_sys_s},
      {"maxrss_mib", row.maxrss_mib},
      {"tree_samples", row.tree_samples},
      {"tree_peak_processes", row.tree_peak_processes},
      {"tree_peak_threads", row.tree_peak_threads},
      {"tree_cpu_s", row.tree_cpu_s},
      {"sampler_cpu_s", row.sampler_cpu_s},
      {"estimated_mib", row.estimated_mib},
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

std::span<const std::string_view> csv_columns() {
  return kCsvColumns;
}

std::string rows_to_csv(std::span<const Row> rows) {
  std::string out;
  auto line = [&out](auto&& field_of) {
    bool first = true;
    for (auto column : kCsvColumns) {
      if (!first) out += ',';
      first = false;
      out += field_of(column);
    }
    out += "\r\n";
  };
  line([](std::string_view column) { return std::string(column); });
  for (const auto& row : rows) {
    const auto j = row_to_json(row);
    line([&j](std::string_view column) { return csv_field(j.at(std::string(column))); });
  }
  return out;
}

}  // namespace fetchd::bench
