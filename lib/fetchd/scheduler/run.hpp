// SPDX-License-Identifier: Apache-2.0
#pragma once
// Runs a whole job list to completion on a fresh control loop: the engine behind `fetchd run`, and what the
// integration tests call in-process. Logs the periodic throughput line and the final summary.
// Thread: any one thread; it owns the loop it creates. SIGINT/SIGTERM cancel the run when handle_signals is set.

#include <chrono>
#include <string>
#include <vector>

#include "fetchd/config/config.hpp"
#include "fetchd/core/transfer_types.hpp"
#include "fetchd/scheduler/scheduler.hpp"

namespace fetchd::scheduler {

// The TransferRequest for one configured job: defaults merged, destination absolute.
core::TransferRequest make_request(const config::Config& config, const config::Job& job);

struct FailedJob {
  std::string url;   // redacted
  std::string dest;  // relative to the output directory
  std::string origin;  // where the job was defined
  core::TransferResult result;
  int attempts = 0;
};

struct RunSummary {
  std::string strategy;
  std::uint64_t jobs = 0;
  std::uint64_t done = 0;     // includes skipped
  std::uint64_t skipped = 0;
  std::uint64_t failed = 0;   // includes cancelled (a signal stopped the run before they were done)
  std::uint64_t bytes = 0;
  double wall_s = 0;
  double cpu_s = 0;
  double peak_rss_mib = 0;
  bool interrupted = false;   // a signal cancelled the run
  std::vector<FailedJob> failures;
};

struct RunOptions {
  bool handle_signals = false;  // SIGINT/SIGTERM cancel the run (fetchd run), off in tests
};

RunSummary run_job_list(const config::Config& config, const RunOptions& options = {});

}  // namespace fetchd::scheduler
