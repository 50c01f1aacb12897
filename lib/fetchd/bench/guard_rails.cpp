// SPDX-License-Identifier: Apache-2.0
#include "fetchd/bench/guard_rails.hpp"

#include <fmt/format.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <limits>
#include <sstream>

#include "fetchd/bench/temp_dir.hpp"
#include "fetchd/core/units.hpp"

namespace fetchd::bench {

namespace {

constexpr std::uint64_t kUnlimited = std::numeric_limits<std::uint64_t>::max();
constexpr double kKiBPerMiB = 1024.0;
constexpr double kBytesPerMiB = 1024.0 * 1024.0;

// --- Caps
// --------------------------------------------------------------------------------------------------- A
// thread-pool row runs one thread per transfer. Past 2,000 threads a row measures the kernel's scheduler
// rather than the design (on the 2-core machines bench runs on, that is 1,000 runnable threads per core), and
// each thread reserves an 8 MiB stack (RLIMIT_STACK), 16 GiB of address space at the cap.
constexpr int kMaxThreads = 2000;
// A worker is a whole `fetchd worker` process: ~14 MiB of RSS each (the base below), so 64 of them already
// sum to about 1 GiB, and past that fork/exec and context switches between processes dominate what is
// measured.
constexpr int kMaxProcesses = 64;
// Half of MemAvailable for everything a row adds: the rest stays with the origin, the page cache and whoever
// else uses the machine (bench machines are shared).
constexpr double kMemoryBudgetFraction = 0.5;
// Local ports left to the rest of the machine and to connections of earlier rows still in TIME_WAIT.
constexpr std::uint64_t kReservedPorts = 1024;

// --- Memory per part of a row (resident, MiB or KiB)
// --------------------------------------------------------- `fetchd run` with an empty job list peaks
// at 13.5-14 MiB RSS (debugoptimized, Debian 12, x86-64); a `fetchd worker` is the same binary. Rounded up.
constexpr double kProcessBaseMiB = 16;
// Measured for event-loop on 4 KiB files: 56 MiB at 1,000 transfers, 261 MiB at 10,000, i.e. 23 KiB per
// transfer (easy handle, connection, buffers, the job's records). Almost 3x that for strategies that keep
// more per transfer (curl's 16 KiB receive buffer is allocated per easy handle in every one of them).
constexpr double kTransferKiB = 64;
// A blocking thread: the touched part of its stack, its TLS, and a share of glibc's malloc arenas (up to 8
// per CPU, each starting at 132 KiB).
constexpr double kThreadKiB = 256;
// Per connection, outside any RSS of the row: the origin's buffers and the kernel's socket structures on both
// ends of the loopback connection...
constexpr double kConnectionKiB = 64;
// ... plus what the socket buffers can queue of one response: TCP autotuning grows them up to tcp_rmem[2] +
// tcp_wmem[2] (6 + 4 MiB by default), and a response cannot queue more than itself.
constexpr double kSocketBuffersMaxMiB = 10;
// A downloaded file on tmpfs takes whole pages; its inode and dentry about 1 KiB more.
constexpr double kFileOverheadKiB = 1;
constexpr std::uint64_t kPageBytes = 4096;
// Descriptors beyond the transfers': the loop, logs, pipes, the job list (fetchd's raise_fd_limit uses the
// same 2 per transfer + 64).
constexpr std::uint64_t kFdsPerTransfer = 2;
constexpr std::uint64_t kFdsFixed = 64;
constexpr std::uint64_t kFdsPerWorkerInParent = 4;  // a worker's pipes and its process handle
// Threads besides the transfers' (the control loop, fetchd's file threads, libuv's pool of 4).
constexpr std::uint64_t kFixedThreadsPerProcess = 8;

std::optional<std::uint64_t> read_number_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::uint64_t value = 0;
  if (in >> value) return value;
  return std::nullopt;
}

std::optional<std::uint64_t> read_meminfo_kib(std::string_view key) {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with(key) || line.size() <= key.size() || line[key.size()] != ':') continue;
    std::istringstream fields(line.substr(key.size() + 1));
    std::uint64_t kib = 0;
    if (fields >> kib) return kib;
  }
  return std::nullopt;
}

std::uint64_t div_ceil(std::uint64_t a, std::uint64_t b) {
  return b == 0 ? a : (a + b - 1) / b;
}

std::string mib_text(double mib) {
  return mib >= kKiBPerMiB ? fmt::format("{:.1f} GiB", mib / kKiBPerMiB) : fmt::format("{:.0f} MiB", mib);
}

// The constants' model of the `fetchd run` tree.
double modelled_fetchd_mib(const RowPlan& plan) {
  const auto c = static_cast<std::uint64_t>(plan.concurrency);
  const double transfers = static_cast<double>(std::min(c, plan.workload.files));
  double mib = kProcessBaseMiB + transfers * kTransferKiB / kKiBPerMiB;
  if (plan.strategy.kind == "thread-pool") mib += static_cast<double>(c) * kThreadKiB / kKiBPerMiB;
  mib += static_cast<double>(plan.workers) * kProcessBaseMiB;
  return mib;
}

}  // namespace

GuardRails GuardRails::defaults() {
  return {kMaxThreads, kMaxProcesses, kMemoryBudgetFraction, kReservedPorts};
}

SystemLimits read_system_limits(const std::filesystem::path& dir) {
  SystemLimits limits;
  limits.mem_available_bytes = kUnlimited;
  if (auto kib = read_meminfo_kib("MemAvailable")) limits.mem_available_bytes = *kib * 1024;

  limits.nofile_hard = kUnlimited;
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_max != RLIM_INFINITY)
    limits.nofile_hard = lim.rlim_max;

  limits.max_tasks = kUnlimited;
  for (const char* path : {"/proc/sys/kernel/threads-max", "/proc/sys/kernel/pid_max"}) {
    if (auto v = read_number_file(path)) limits.max_tasks = std::min(limits.max_tasks, *v);
  }
  // RLIMIT_NPROC counts the threads of the user's every process; it does not bind root.
  if (::geteuid() != 0 && ::getrlimit(RLIMIT_NPROC, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY) {
    limits.max_tasks = std::min<std::uint64_t>(limits.max_tasks, lim.rlim_cur);
  }
  // /proc/loadavg: "0.50 0.40 0.30 2/345 6789": the 4th field is runnable/existing threads.
  std::ifstream loadavg("/proc/loadavg");
  std::string skip;
  std::string tasks;
  if (loadavg >> skip >> skip >> skip >> tasks) {
    auto slash = tasks.find('/');
    if (slash != std::string::npos) {
      std::uint64_t n = 0;
      auto [end, ec] = std::from_chars(tasks.data() + slash + 1, tasks.data() + tasks.size(), n);
      if (ec == std::errc()) limits.tasks_in_use = n;
    }
  }

  limits.local_ports = kUnlimited;
  std::ifstream ports("/proc/sys/net/ipv4/ip_local_port_range");
  std::uint64_t low = 0;
  std::uint64_t high = 0;
  if (ports >> low >> high && high >= low) limits.local_ports = high - low + 1;

  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) limits.cpus = std::max(1, CPU_COUNT(&set));

  limits.downloads_in_memory = file_system_name(dir) == "tmpfs";
  return limits;
}

void MemoryHistory::add(const std::string& key, int concurrency, double tree_peak_mib) {
  auto& points = points_[key];
  auto it = std::ranges::lower_bound(points, concurrency, {}, &std::pair<int, double>::first);
  if (it != points.end() && it->first == concurrency) {
    it->second = std::max(it->second, tree_peak_mib);
  } else {
    points.insert(it, {concurrency, tree_peak_mib});
  }
}

std::optional<MemoryHistory::Basis> MemoryHistory::basis(const std::string& key, int concurrency) const {
  auto found = points_.find(key);
  if (found == points_.end()) return std::nullopt;
  const auto& points = found->second;
  auto end = std::ranges::upper_bound(points, concurrency, {}, &std::pair<int, double>::first);
  if (end == points.begin()) return std::nullopt;
  const auto& top = *(end - 1);
  Basis basis{top.first, top.second, std::nullopt};
  if (end - points.begin() >= 2) {
    const auto& below = *(end - 2);
    basis.slope_mib =
        std::max(0.0, (top.second - below.second) / static_cast<double>(top.first - below.first));
  }
  return basis;
}

std::string history_key(const std::string& profile, const StrategyVariant& strategy) {
  return profile + "/" + std::string(strategy.name);
}

Estimate estimate_row(const RowPlan& plan, const SystemLimits& limits,
                      std::optional<MemoryHistory::Basis> history) {
  Estimate e;
  const auto c = static_cast<std::uint64_t>(plan.concurrency);
  const auto workers = static_cast<std::uint64_t>(plan.workers);
  const std::uint64_t transfers = std::min(c, plan.workload.files);

  e.fetchd_mib = modelled_fetchd_mib(plan);
  if (history && history->concurrency < plan.concurrency) {
    // What was measured, grown by the larger of the learnt slope and the constants' own.
    RowPlan at_basis = plan;
    at_basis.concurrency = history->concurrency;
    at_basis.workers = plan.workers > 0 ? std::min(plan.workers, history->concurrency) : 0;
    const double modelled_growth = e.fetchd_mib - modelled_fetchd_mib(at_basis);
    const double learnt_growth = history->slope_mib.value_or(0.0) * (plan.concurrency - history->concurrency);
    e.learned_mib = history->peak_mib + std::max(modelled_growth, learnt_growth);
  } else if (history) {
    e.learned_mib = history->peak_mib;  // measured at this very concurrency
  }
  e.fetchd_mib = std::max(e.fetchd_mib, e.learned_mib);

  const double response_mib =
      std::min(kSocketBuffersMaxMiB, static_cast<double>(plan.workload.size) / kBytesPerMiB);
  e.connections_mib = static_cast<double>(transfers) * (kConnectionKiB / kKiBPerMiB + response_mib);
  if (limits.downloads_in_memory) {
    const double file_bytes = static_cast<double>(div_ceil(plan.workload.size, kPageBytes) * kPageBytes);
    e.files_mib = static_cast<double>(plan.workload.files) *
                  (file_bytes / kBytesPerMiB + kFileOverheadKiB / kKiBPerMiB);
  }

  const std::uint64_t origin_fds = c + kFdsFixed;
  if (workers > 0) {
    const std::uint64_t per_worker = kFdsPerTransfer * div_ceil(c, workers) + kFdsFixed;
    const std::uint64_t parent = kFdsPerWorkerInParent * workers + kFdsFixed;
    e.fds = std::max({per_worker, parent, origin_fds});
    e.tasks = (workers + 1) * kFixedThreadsPerProcess;
  } else {
    e.fds = std::max(kFdsPerTransfer * c + kFdsFixed, origin_fds);
    e.tasks = kFixedThreadsPerProcess + (plan.strategy.kind == "thread-pool" ? c : 0);
  }
  return e;
}

Decision decide(const RowPlan& plan, const SystemLimits& limits, const GuardRails& rails,
                std::optional<MemoryHistory::Basis> history) {
  Decision d;
  d.estimate = estimate_row(plan, limits, history);
  const auto& e = d.estimate;
  const double available_mib = static_cast<double>(limits.mem_available_bytes) / kBytesPerMiB;
  d.budget_mib = available_mib * rails.memory_budget_fraction;

  if (plan.strategy.kind == "thread-pool" && plan.concurrency > rails.max_threads) {
    d.refused =
        fmt::format("{} threads, over bench's cap of {} threads", plan.concurrency, rails.max_threads);
  } else if (plan.workers > rails.max_processes) {
    d.refused = fmt::format("{} worker processes, over bench's cap of {} processes", plan.workers,
                            rails.max_processes);
  } else if (limits.max_tasks != kUnlimited &&
             e.tasks > (limits.max_tasks - std::min(limits.max_tasks, limits.tasks_in_use)) / 2) {
    d.refused = fmt::format("needs ~{} threads/processes, over half of the {} the kernel has left", e.tasks,
                            limits.max_tasks - std::min(limits.max_tasks, limits.tasks_in_use));
  } else if (e.fds > limits.nofile_hard) {
    d.refused =
        fmt::format("needs ~{} open files in one process, over the hard RLIMIT_NOFILE of {} (ulimit -Hn)",
                    e.fds, limits.nofile_hard);
  } else if (limits.local_ports != kUnlimited &&
             static_cast<std::uint64_t>(plan.concurrency) + rails.reserved_ports > limits.local_ports) {
    d.refused = fmt::format(
        "{} connections need more local ports than the {} of ip_local_port_range (less {} kept free)",
        plan.concurrency, limits.local_ports, rails.reserved_ports);
  } else if (e.total_mib() > d.budget_mib) {
    std::string parts = fmt::format("fetchd {}", mib_text(e.fetchd_mib));
    if (e.connections_mib > 0) parts += fmt::format(", connections {}", mib_text(e.connections_mib));
    if (e.files_mib > 0) parts += fmt::format(", files in tmpfs {}", mib_text(e.files_mib));
    d.refused = fmt::format("estimated memory {} ({}) over the budget of {:.0f}% of MemAvailable ({})",
                            mib_text(e.total_mib()), parts, rails.memory_budget_fraction * 100,
                            mib_text(d.budget_mib));
  }
  return d;
}

}  // namespace fetchd::bench
