// SPDX-License-Identifier: Apache-2.0
#pragma once
// Throughput accounting shared by every strategy: counters sampled at intervals into one fixed log line format,
// and the process's own resource usage (CPU seconds, peak RSS) for the final summary.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace fetchd::stats {

struct Counters {
  std::uint64_t active = 0;
  std::uint64_t queued = 0;  // runnable + waiting for a retry
  std::uint64_t done = 0;
  std::uint64_t failed = 0;     // jobs that failed for good; never cancelled ones
  std::uint64_t cancelled = 0;  // by a client, or stopped by a shutdown (not shown in the throughput line)
  std::uint64_t bytes = 0;   // body bytes received, in-flight included
};

// Turns successive samples into rates. Thread: the control loop.
class Throughput {
 public:
  using Clock = std::chrono::steady_clock;
  explicit Throughput(std::string strategy, Clock::time_point start = Clock::now());

  // The periodic line: rates over the interval since the previous sample.
  // "strategy=event-loop active=3 queued=10 done=100 failed=1 files/s=52.1 MiB/s=3.25"
  std::string sample(const Counters& now, Clock::time_point at = Clock::now());
  // Same format, rates over the whole run.
  std::string total(const Counters& now, Clock::time_point at = Clock::now()) const;
  double elapsed_s(Clock::time_point at = Clock::now()) const;

 private:
  static std::string format(std::string_view strategy, const Counters& c, double files_per_s, double mib_per_s);
  std::string strategy_;
  Clock::time_point start_;
  Clock::time_point last_at_;
  Counters last_;
};

struct ResourceUsage {
  double cpu_user_s = 0;
  double cpu_sys_s = 0;
  double peak_rss_mib = 0;  // this process (RUSAGE_SELF)
  double cpu_s() const { return cpu_user_s + cpu_sys_s; }
};

// This process plus its reaped children for CPU; peak RSS of this process.
ResourceUsage resource_usage();

}  // namespace fetchd::stats
