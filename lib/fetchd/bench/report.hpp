// SPDX-License-Identifier: Apache-2.0
#pragma once
// One row (a strategy at one concurrency in one profile) and how it is shown: a fixed-width table line
// printed as soon as the row is done, a JSON object and a CSV line. A row with failures never shows a rate: a
// fast wrong answer is no result. A refused row was never run: it shows why instead of numbers, and is no
// failure.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace fetchd::bench {

struct Row {
  std::string profile;  // "latency", "cpu", "custom"
  std::string strategy;
  std::string via = "run";  // how fetchd ran: "run" (a job list) or "serve" (jobs submitted to the daemon)
  int concurrency = 0;
  std::optional<int> workers;    // worker processes of a process pool
  std::uint64_t files = 0;       // in the workload
  std::uint64_t size = 0;        // of each file
  std::uint64_t bytes = 0;       // verified on disk
  std::optional<double> wall_s;  // the child's transfer phase (its summary's wall_s); none without a summary
  // A serve row's wall_s runs from the first byte of the first submit to the last job's `finished` time in
  // the daemon's store.
  double process_wall_s = 0;  // the child's whole lifetime: start-up, config loading, exit
  // A serve row: from the first byte of the first submit to the last submit's ok reply. None for run rows.
  std::optional<double> submit_ack_s;
  double cpu_user_s = 0;  // of the child and every descendant it reaped, from wait4()
  double cpu_sys_s = 0;
  double maxrss_mib = 0;  // wait4()'s ru_maxrss: the largest single process of the tree, never a sum
  // The peak of the sum of RSS over the child's process tree, sampled from /proc during the row.
  std::optional<double> tree_peak_rss_mib;
  std::size_t tree_samples = 0;
  std::size_t tree_peak_processes = 0;
  std::uint64_t tree_peak_threads = 0;
  double tree_cpu_s = 0;               // the tree's CPU in its last sample (a lower bound of cpu_s)
  double sampler_cpu_s = 0;            // what sampling cost bench (on the same CPUs as the row)
  double estimated_mib = 0;            // the guard rails' estimate for the row
  std::optional<std::string> refused;  // why the row was not run
  std::uint64_t failures = 0;          // > 0 when anything went wrong; see bench.cpp for how it is counted
  std::uint64_t verify_failures = 0;   // files bench found missing or wrong
  std::uint64_t child_failed = 0;      // jobs the child itself reported failed
  std::string child_status;            // "exit 0", "signal 9"
  bool inline_checks = true;           // fetchd itself verified each file's sha256 and size (see JobList)
  bool interrupted = false;
  std::string error;  // why the row failed, when it did not get as far as counting files

  bool measured() const { return !refused.has_value(); }
  double cpu_s() const { return cpu_user_s + cpu_sys_s; }
  bool ok() const { return failures == 0; }
  std::optional<double> files_per_s() const;  // none unless measured, ok() and wall_s > 0
  std::optional<double> mib_per_s() const;
  // CPU time over the child's lifetime, as a share of one core: cpu_s / process_wall_s x 100 (both cover the
  // whole life of the child, start-up included). None unless measured.
  std::optional<double> cpu_percent() const;
  // The row's memory: for a process pool the sampled peak of the tree's summed RSS (its workers are separate
  // processes), for the others ru_maxrss. None unless measured.
  std::optional<double> peak_rss_mib() const;
};

// Width of the strategy column: the longest strategy name bench knows, at least the header's.
std::size_t strategy_column_width();

std::string format_table_header(std::size_t strategy_width = strategy_column_width());
// A refused row keeps the first three columns and then says "refused: <why>".
std::string format_table_row(const Row& row, std::size_t strategy_width = strategy_column_width());
// What the CPU and memory columns mean, printed under each table (two or three lines, no final newline);
// `via` names the child they measure.
std::string table_footnote(std::string_view via = "run");

// Keys: profile, strategy, via, concurrency, workers, files, bytes, wall_s, submit_ack_s, files_per_s,
// mib_per_s, cpu_s,
// cpu_percent, peak_rss_mib, tree_peak_rss_mib, failures, refused; and size, process_wall_s, cpu_user_s,
// cpu_sys_s, maxrss_mib, tree_samples, tree_peak_processes, tree_peak_threads, tree_cpu_s, sampler_cpu_s,
// estimated_mib, verify_failures, child_failed, child_status, inline_checks, interrupted, error (only when
// set). What was not measured is null.
nlohmann::json row_to_json(const Row& row);
nlohmann::json rows_to_json(std::span<const Row> rows);

// The CSV columns, in order: the keys of row_to_json listed first above, from profile to refused.
std::span<const std::string_view> csv_columns();
// RFC 4180: a header line, then one line per row; "\r\n" line ends; fields with a comma, quote or line break
// quoted; nulls empty.
std::string rows_to_csv(std::span<const Row> rows);

}  // namespace fetchd::bench
