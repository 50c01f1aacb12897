// SPDX-License-Identifier: Apache-2.0
#pragma once
// One measured row (a strategy at one concurrency) and how it is shown: a fixed-width table line printed as
// soon as the row is done, and a JSON object. A row with failures never shows a rate: a fast wrong answer is
// no result.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>

namespace fetchd::bench {

struct Row {
  std::string strategy;
  int concurrency = 0;
  std::uint64_t files = 0;       // in the workload
  std::uint64_t size = 0;        // of each file
  std::uint64_t bytes = 0;       // verified on disk
  std::optional<double> wall_s;  // the child's transfer phase (its summary's wall_s); none without a summary
  double process_wall_s = 0;     // the child's whole lifetime: start-up, config loading, exit
  double cpu_user_s = 0;         // of the child, from wait4()
  double cpu_sys_s = 0;
  double peak_rss_mib = 0;
  std::uint64_t failures = 0;         // > 0 when anything went wrong; see bench.cpp for how it is counted
  std::uint64_t verify_failures = 0;  // files bench found missing or wrong
  std::uint64_t child_failed = 0;     // jobs the child itself reported failed
  std::string child_status;           // "exit 0", "signal 9"
  bool inline_checks = true;          // fetchd itself verified each file's sha256 and size (see JobList)
  bool interrupted = false;
  std::string error;  // why the row failed, when it did not get as far as counting files

  double cpu_s() const { return cpu_user_s + cpu_sys_s; }
  bool ok() const { return failures == 0; }
  std::optional<double> files_per_s() const;  // none unless ok() and wall_s > 0
  std::optional<double> mib_per_s() const;
};

// Width of the strategy column: the longest available strategy name, at least the header's.
std::size_t strategy_column_width();

std::string format_table_header(std::size_t strategy_width = strategy_column_width());
std::string format_table_row(const Row& row, std::size_t strategy_width = strategy_column_width());

// Keys: strategy, concurrency, files, bytes, wall_s, files_per_s, mib_per_s, cpu_s, peak_rss_mib, failures,
// and size, process_wall_s, cpu_user_s, cpu_sys_s, verify_failures, child_failed, child_status,
// inline_checks, interrupted, error. Rates and wall_s are null when not measured.
nlohmann::json row_to_json(const Row& row);
nlohmann::json rows_to_json(std::span<const Row> rows);

}  // namespace fetchd::bench
