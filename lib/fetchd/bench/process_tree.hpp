// SPDX-License-Identifier: Apache-2.0
#pragma once
// Memory and CPU of a whole process tree, as /proc shows it: a row's `fetchd run` child and every process
// below it (a process pool's `fetchd worker`s). wait4() gives only the largest single RSS of a tree, never
// the sum, so bench samples the tree itself while the row runs.
//
// How: one pass over /proc/<pid>/stat of every process (ppid, RSS, CPU times in one read), then a walk down
// from the root. Not /proc/<pid>/task/<tid>/children: it needs CONFIG_PROC_CHILDREN (not built into every
// kernel: the one bench was written on lacks it) and one read per *thread*, which a thread pool of 2,000
// makes costly; a scan costs one read per process on the machine, whatever the threads. Thread: one owner.

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace fetchd::bench {

// The fields of /proc/<pid>/stat that bench uses (proc(5)).
struct ProcStat {
  pid_t pid = 0;
  pid_t ppid = 0;
  char state = '?';
  std::uint64_t utime_ticks = 0;   // user CPU of the process itself
  std::uint64_t stime_ticks = 0;   // system CPU of the process itself
  std::uint64_t cutime_ticks = 0;  // user CPU of the children it has reaped
  std::uint64_t cstime_ticks = 0;
  std::uint64_t threads = 0;
  std::uint64_t rss_pages = 0;
};

// Parses the text of /proc/<pid>/stat. The command name (field 2) may hold spaces and ')': fields are counted
// from its last ')'. std::nullopt when the text is not such a line.
std::optional<ProcStat> parse_proc_stat(std::string_view text);

// Every process under `proc_dir` ("/proc"); processes that exit during the scan are skipped.
std::vector<ProcStat> scan_processes(const std::filesystem::path& proc_dir = "/proc");

struct TreeSample {
  std::vector<pid_t> pids;  // the root first, then its descendants
  std::uint64_t rss_bytes = 0;
  std::uint64_t threads = 0;
  // CPU of the tree so far: each live process's own time plus what it has reaped (a lower bound of what
  // wait4() will report for the root, which also counts processes that exited before this sample).
  std::uint64_t cpu_ticks = 0;

  std::size_t processes() const { return pids.size(); }
};

// The tree of `root` among `processes`. Empty when the root is not there (not started, or already reaped).
TreeSample sum_tree(pid_t root, std::span<const ProcStat> processes, std::uint64_t page_bytes);

// Resident pages of one process from "<proc_dir>/<pid>/statm" (cheaper than stat: no walk over its threads).
std::optional<std::uint64_t> read_rss_pages(const std::filesystem::path& proc_dir, pid_t pid);

// Samples one tree repeatedly and keeps its peaks. The root must stay unreaped (a zombie at most) while
// samples are taken, or its pid could be someone else's.
//
// A full sample scans all of /proc (the first kFullScanEvery samples, while a pool starts its workers, then
// every kFullScanEvery-th); in between, only the processes the last full sample found are read again (statm):
// a scan costs ~7 us per process on the machine (more for a process with many threads, whose stat sums them
// all), which every 25 ms on a busy machine would take a visible share of the CPUs the row is measured on. A
// process started since the last full sample is counted from the next one.
class TreeSampler {
 public:
  static constexpr std::size_t kFullScanEvery = 4;  // samples

  explicit TreeSampler(pid_t root, std::filesystem::path proc_dir = "/proc");

  // Samples now; updates the peaks. Returns this sample.
  const TreeSample& sample();

  std::size_t samples() const { return samples_; }
  double peak_rss_mib() const;
  std::size_t peak_processes() const { return peak_processes_; }
  std::uint64_t peak_threads() const { return peak_threads_; }
  double last_cpu_s() const;                        // of the latest full sample that found the root
  const TreeSample& last() const { return last_; }  // the latest sample, even if empty
  double own_cpu_s() const { return own_cpu_s_; }   // CPU this sampler spent reading /proc

 private:
  void full_scan();
  void reread_known();

  pid_t root_;
  std::filesystem::path proc_dir_;
  std::uint64_t page_bytes_;
  std::uint64_t ticks_per_s_;
  TreeSample last_;
  std::size_t samples_ = 0;
  std::uint64_t peak_rss_bytes_ = 0;
  std::size_t peak_processes_ = 0;
  std::uint64_t peak_threads_ = 0;
  std::uint64_t last_cpu_ticks_ = 0;
  double own_cpu_s_ = 0;
};

// SIGKILL to every pid of a sample (a row that outgrew its memory budget). The root first, so that it cannot
// react to its workers' deaths (by starting new ones); a killed worker keeps its pid until it is reaped.
void kill_tree(const TreeSample& tree);

}  // namespace fetchd::bench
