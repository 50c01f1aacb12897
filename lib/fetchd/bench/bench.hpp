// SPDX-License-Identifier: Apache-2.0
#pragma once
// `fetchd bench`: measures strategies end to end, as a user would run them. It starts the embedded origin as
// a child process, asks the binary which strategies it has (an empty job list per strategy), and for each
// profile, strategy and concurrency either refuses the row up front (guard_rails.hpp) or runs `fetchd run` as
// a fresh child on the profile's generated workload: CPU and ru_maxrss from wait4(), the peak of the process
// tree's summed RSS sampled from /proc meanwhile, then every file verified on disk by bench itself. With
// `--via serve` a row runs `fetchd serve` instead and submits the workload over its control socket
// (control_client.hpp); its wall time comes from the daemon's store, its CPU from wait4() after SIGTERM.
// Thread: the main thread; run_bench installs SIGINT/SIGTERM handlers for its duration.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "fetchd/bench/guard_rails.hpp"
#include "fetchd/bench/options.hpp"
#include "fetchd/bench/report.hpp"
#include "fetchd/bench/temp_dir.hpp"
#include "fetchd/bench/workload.hpp"
#include "fetchd/config/config.hpp"
#include "fetchd/origin/body.hpp"

namespace fetchd::bench {

struct BenchOptions {
  std::vector<Profile> profiles = {latency_profile(), cpu_profile()};  // one table section each
  std::vector<std::string> strategies;          // names of kBenchStrategies, from parse_strategy_list
  int workers = 0;                              // --workers for process-pool rows; 0: the number of CPUs
  std::filesystem::path json_path;              // empty: no JSON file
  std::filesystem::path csv_path;               // empty: no CSV file
  std::filesystem::path plot_path;              // empty: no SVG chart
  std::filesystem::path dir = temp_base_dir();  // where each row's temp dir (job list and downloads) goes
  bool keep = false;                            // keep each row's temp dir (its job list, summary and files)
  std::string self_exe = "/proc/self/exe";
  std::chrono::milliseconds origin_startup_timeout{10'000};
  std::chrono::milliseconds probe_timeout{10'000};  // for `fetchd run` on an empty job list
  std::chrono::milliseconds sample_interval{25};    // of the process tree's RSS during a row
  Via via = Via::kRun;                              // `fetchd run` or `fetchd serve` per row
  // Serve rows: until the control socket accepts; for a reply (a submit's, while any byte moves); between
  // two `stats` requests; without a finished job or a byte downloaded; from SIGTERM to the daemon's exit.
  std::chrono::milliseconds daemon_startup_timeout{10'000};
  std::chrono::milliseconds control_timeout{30'000};
  std::chrono::milliseconds stats_interval{50};
  std::chrono::milliseconds serve_stall_timeout{60'000};
  std::chrono::milliseconds daemon_stop_timeout{10'000};
  ExpectedSha256 expected_sha256 = origin::body_sha256_hex;  // tests may inject their own
  JobListLimits job_list_limits{config::kMaxConfigBytes, config::kMaxUrlsFileBytes};
  GuardRails guard_rails = GuardRails::defaults();
  std::function<SystemLimits()> system_limits;  // tests inject limits; empty: read before each row
};

// What cannot be decided while parsing: per profile at least one file, at most kMaxFiles, files x size not
// overflowing, concurrency in range; known strategy names; non-empty lists; an ExpectedSha256. Returns the
// message for the first problem.
std::optional<std::string> validate(const BenchOptions& options);

// Refuses a workload that cannot fit in `dir` (whole blocks per file, and the job list). Returns the message.
std::optional<std::string> check_disk_space(const WorkloadSpec& spec, const std::filesystem::path& dir);

struct BenchResult {
  std::vector<Row> rows;
  bool interrupted = false;
  std::string error;  // set when bench itself could not go on (origin, temp dir, JSON file)

  bool ok() const;  // every row ok, none missing, no error
};

// Runs every row: profile by profile, in each strategy by strategy in the given order, each over every
// concurrency. Prints a section per profile (what it measures, the workload, the table header, each row as
// soon as it is done, a footnote) to `out`; problems go to spdlog. Writes the JSON array, the CSV and the SVG
// chart (the rows done, also after an error or an interruption) when their paths are set. Never throws for
// what a child process or the file system does: that is reported in the result. Refused rows are no failures.
BenchResult run_bench(const BenchOptions& options, std::ostream& out);

}  // namespace fetchd::bench
