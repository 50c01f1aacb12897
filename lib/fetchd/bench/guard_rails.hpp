// SPDX-License-Identifier: Apache-2.0
#pragma once
// Whether a row may run at all, decided before it starts: a benchmark must never take the machine down. A row
// is refused, with the reason shown in its place, when its threads or processes pass bench's caps, when the
// open-files limit or the local port range cannot hold its connections, or when its estimated memory passes a
// share of what the machine has available. The limits are read from the system, or injected by tests.
// Thread: any; read_system_limits does file I/O, the rest is pure.

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fetchd/bench/options.hpp"
#include "fetchd/bench/workload.hpp"

namespace fetchd::bench {

// What the machine allows, as seen by bench (its children inherit bench's limits).
struct SystemLimits {
  std::uint64_t mem_available_bytes = 0;  // MemAvailable of /proc/meminfo
  std::uint64_t nofile_hard = 0;     // RLIMIT_NOFILE hard limit: `fetchd run` raises its soft limit to it
  std::uint64_t max_tasks = 0;       // min(kernel.threads-max, kernel.pid_max, RLIMIT_NPROC)
  std::uint64_t tasks_in_use = 0;    // threads on the machine now (/proc/loadavg)
  std::uint64_t local_ports = 0;     // size of net.ipv4.ip_local_port_range
  int cpus = 1;                      // CPUs bench may run on (sched_getaffinity)
  bool downloads_in_memory = false;  // the rows' directory is a tmpfs: downloaded files take RAM
};

// Reads the limits now; `dir` is where rows download to. What cannot be read is taken as unlimited (0 for
// ports and memory would refuse everything; a missing /proc file should not).
SystemLimits read_system_limits(const std::filesystem::path& dir);

// Bench's own caps and budget. The defaults and why, in guard_rails.cpp.
struct GuardRails {
  int max_threads;                // per thread-pool row
  int max_processes;              // worker processes per row
  double memory_budget_fraction;  // of MemAvailable, for the whole row's estimate
  std::uint64_t reserved_ports;   // local ports left to the rest of the machine and to TIME_WAIT

  static GuardRails defaults();
};

// One row, as the guard rails see it.
struct RowPlan {
  StrategyVariant strategy;
  int concurrency = 1;
  int workers = 0;  // worker processes (workers_for), 0 without a process pool
  WorkloadSpec workload;
};

// Peaks measured in earlier rows of the same profile and strategy: the cost per unit of concurrency learnt
// from them extrapolates to larger rows (never below the constants' own slope).
class MemoryHistory {
 public:
  void add(const std::string& key, int concurrency, double tree_peak_mib);
  // Largest measured concurrency at or below `concurrency`, with the slope between the two largest such
  // points (none with a single point). std::nullopt when nothing at or below was measured.
  struct Basis {
    int concurrency = 0;
    double peak_mib = 0;
    std::optional<double> slope_mib;  // per unit of concurrency
  };
  std::optional<Basis> basis(const std::string& key, int concurrency) const;

 private:
  std::map<std::string, std::vector<std::pair<int, double>>> points_;  // sorted by concurrency
};

// "latency/thread-pool": the MemoryHistory key of a row.
std::string history_key(const std::string& profile, const StrategyVariant& strategy);

struct Estimate {
  double fetchd_mib = 0;       // the `fetchd run` tree: base, transfers, threads, worker processes
  double learned_mib = 0;      // from MemoryHistory (0 without history); fetchd_mib is already the larger
  double connections_mib = 0;  // the origin's buffers and the kernel's sockets, in no RSS bench can see
  double files_mib = 0;        // the downloaded files when they live in RAM (tmpfs)
  std::uint64_t fds = 0;       // the most descriptors any one process of the row needs
  std::uint64_t tasks = 0;     // threads and processes the row adds to the machine

  double total_mib() const { return fetchd_mib + connections_mib + files_mib; }
};

Estimate estimate_row(const RowPlan& plan, const SystemLimits& limits,
                      std::optional<MemoryHistory::Basis> history = std::nullopt);

struct Decision {
  std::optional<std::string> refused;  // why the row must not run
  Estimate estimate;
  double budget_mib = 0;  // memory_budget_fraction of MemAvailable; the row's tree is stopped above it
};

Decision decide(const RowPlan& plan, const SystemLimits& limits, const GuardRails& rails,
                std::optional<MemoryHistory::Basis> history = std::nullopt);

}  // namespace fetchd::bench
