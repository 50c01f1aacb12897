// SPDX-License-Identifier: Apache-2.0
#pragma once
// `fetchd bench`: measures strategies end to end, as a user would run them. It starts the embedded origin as
// a child process, and for each (strategy, concurrency) row runs `fetchd run` as a fresh child on a generated
// workload, takes CPU and peak RSS from wait4(), then verifies every file on disk itself.
// Thread: the main thread; run_bench installs SIGINT/SIGTERM handlers for its duration.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "fetchd/bench/report.hpp"
#include "fetchd/bench/temp_dir.hpp"
#include "fetchd/bench/workload.hpp"
#include "fetchd/config/config.hpp"
#include "fetchd/origin/body.hpp"

namespace fetchd::bench {

struct BenchOptions {
  WorkloadSpec workload;
  std::vector<std::string> strategies;  // from parse_strategy_list
  std::vector<int> concurrency;         // from parse_concurrency_list
  std::filesystem::path json_path;      // empty: no JSON file
  std::filesystem::path dir = temp_base_dir();  // where each row's temp dir (job list and downloads) goes
  bool keep = false;                    // keep each row's temp dir (its job list, summary and files)
  std::string self_exe = "/proc/self/exe";
  std::chrono::milliseconds origin_startup_timeout{10'000};
  ExpectedSha256 expected_sha256 = origin::body_sha256_hex;  // tests may inject their own
  JobListLimits job_list_limits{config::kMaxConfigBytes, config::kMaxUrlsFileBytes};
};

// What cannot be decided while parsing: at least one file, at most kMaxFiles, files x size not overflowing,
// non-empty lists, an ExpectedSha256. Returns the message for the first problem.
std::optional<std::string> validate(const BenchOptions& options);

// Refuses a workload that cannot fit in `dir` (whole blocks per file, and the job list). Returns the message.
std::optional<std::string> check_disk_space(const WorkloadSpec& spec, const std::filesystem::path& dir);

struct BenchResult {
  std::vector<Row> rows;
  bool interrupted = false;
  std::string error;  // set when bench itself could not go on (origin, temp dir, JSON file)

  bool ok() const;  // every row ok, none missing, no error
};

// Runs every row, strategy by strategy in the given order, each over every concurrency. Prints the workload
// line, the table header and each row to `out` as soon as it is measured; problems go to spdlog. Writes the
// JSON array (the rows measured, also after an error or an interruption) when json_path is set. Never throws
// for what a child process or the file system does: that is reported in the result.
BenchResult run_bench(const BenchOptions& options, std::ostream& out);

}  // namespace fetchd::bench
