// SPDX-License-Identifier: Apache-2.0
#include "fetchd/bench/process_tree.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <ctime>
#include <memory>
#include <string>
#include <unordered_map>

namespace fetchd::bench {

namespace {

constexpr double kMiB = 1024.0 * 1024.0;
// /proc/<pid>/stat is one line of about 300 bytes; a command name is at most 64 bytes.
constexpr std::size_t kStatBytes = 1024;

// Fields after the command name, counted from 3 (proc(5)).
constexpr int kFieldState = 3;
constexpr int kFieldPpid = 4;
constexpr int kFieldUtime = 14;
constexpr int kFieldStime = 15;
constexpr int kFieldCutime = 16;
constexpr int kFieldCstime = 17;
constexpr int kFieldThreads = 20;
constexpr int kFieldRss = 24;

struct DirCloser {
  void operator()(DIR* d) const { ::closedir(d); }
};

template <typename T>
bool parse_number(std::string_view text, T* out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

double thread_cpu_s() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// Reads a small /proc file with one read(): the kernel produces it whole. Empty when it is gone.
std::string_view read_small(int dir_fd, const char* name, std::array<char, kStatBytes>& buffer) {
  int fd = ::openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  ssize_t n = 0;
  do {
    n = ::read(fd, buffer.data(), buffer.size());
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  return n > 0 ? std::string_view(buffer.data(), static_cast<std::size_t>(n)) : std::string_view();
}

}  // namespace

std::optional<std::uint64_t> read_rss_pages(const std::filesystem::path& proc_dir, pid_t pid) {
  std::array<char, kStatBytes> buffer{};
  const auto path = proc_dir / std::to_string(pid) / "statm";
  auto text = read_small(AT_FDCWD, path.c_str(), buffer);
  // "size resident shared text lib data dt", in pages.
  auto first = text.find(' ');
  if (first == std::string_view::npos) return std::nullopt;
  auto rest = text.substr(first + 1);
  std::uint64_t pages = 0;
  if (!parse_number(rest.substr(0, rest.find(' ')), &pages)) return std::nullopt;
  return pages;
}

std::optional<ProcStat> parse_proc_stat(std::string_view text) {
  ProcStat st;
  auto open = text.find(" (");
  auto close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) return std::nullopt;
  if (!parse_number(text.substr(0, open), &st.pid)) return std::nullopt;
  std::string_view rest = text.substr(close + 1);
  int field = kFieldState;
  bool seen_rss = false;
  while (!rest.empty() && field <= kFieldRss) {
    auto start = rest.find_first_not_of(" \n");
    if (start == std::string_view::npos) break;
    rest.remove_prefix(start);
    auto end = rest.find_first_of(" \n");
    std::string_view item = rest.substr(0, end);
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
    bool ok = true;
    switch (field) {
      case kFieldState:
        ok = item.size() == 1;
        st.state = item.empty() ? '?' : item.front();
        break;
      case kFieldPpid:
        ok = parse_number(item, &st.ppid);
        break;
      case kFieldUtime:
        ok = parse_number(item, &st.utime_ticks);
        break;
      case kFieldStime:
        ok = parse_number(item, &st.stime_ticks);
        break;
      case kFieldCutime:
        ok = parse_number(item, &st.cutime_ticks);
        break;
      case kFieldCstime:
        ok = parse_number(item, &st.cstime_ticks);
        break;
      case kFieldThreads:
        ok = parse_number(item, &st.threads);
        break;
      case kFieldRss:
        ok = parse_number(item, &st.rss_pages);
        seen_rss = ok;
        break;
      default:
        break;
    }
    if (!ok) return std::nullopt;
    ++field;
  }
  if (!seen_rss) return std::nullopt;
  return st;
}

std::vector<ProcStat> scan_processes(const std::filesystem::path& proc_dir) {
  std::vector<ProcStat> out;
  std::unique_ptr<DIR, DirCloser> dir(::opendir(proc_dir.c_str()));
  if (!dir) return out;
  const int dir_fd = ::dirfd(dir.get());
  std::array<char, kStatBytes> buffer{};
  std::array<char, 32> name{};
  while (const dirent* entry = ::readdir(dir.get())) {
    std::string_view pid(entry->d_name);
    if (pid.empty() || pid.front() < '1' || pid.front() > '9' || pid.size() + 6 > name.size()) continue;
    // "<pid>/stat" without allocating: this runs every few tens of milliseconds during a row.
    auto* end = std::copy(pid.begin(), pid.end(), name.begin());
    constexpr std::string_view kStat = "/stat";
    end = std::copy(kStat.begin(), kStat.end(), end);
    *end = '\0';
    auto text = read_small(dir_fd, name.data(), buffer);
    if (text.empty()) continue;  // exited meanwhile
    if (auto st = parse_proc_stat(text)) out.push_back(*st);
  }
  return out;
}

TreeSample sum_tree(pid_t root, std::span<const ProcStat> processes, std::uint64_t page_bytes) {
  TreeSample tree;
  std::unordered_multimap<pid_t, const ProcStat*> children;
  const ProcStat* root_stat = nullptr;
  for (const auto& p : processes) {
    if (p.pid == root) root_stat = &p;
    children.emplace(p.ppid, &p);
  }
  if (root_stat == nullptr) return tree;
  // Breadth first. ppid links form a tree, but a scan is no snapshot: the bound keeps a cycle made of reused
  // pids from looping forever.
  std::vector<const ProcStat*> queue{root_stat};
  for (std::size_t i = 0; i < queue.size() && i < processes.size(); ++i) {
    const ProcStat* p = queue[i];
    tree.pids.push_back(p->pid);
    tree.rss_bytes += p->rss_pages * page_bytes;
    tree.threads += p->threads;
    tree.cpu_ticks += p->utime_ticks + p->stime_ticks + p->cutime_ticks + p->cstime_ticks;
    auto [first, last] = children.equal_range(p->pid);
    for (auto it = first; it != last; ++it) {
      if (it->second->pid != root) queue.push_back(it->second);
    }
  }
  return tree;
}

TreeSampler::TreeSampler(pid_t root, std::filesystem::path proc_dir)
    : root_(root),
      proc_dir_(std::move(proc_dir)),
      page_bytes_(static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE))),
      ticks_per_s_(static_cast<std::uint64_t>(::sysconf(_SC_CLK_TCK))) {}

void TreeSampler::full_scan() {
  auto processes = scan_processes(proc_dir_);
  last_ = sum_tree(root_, processes, page_bytes_);
  if (last_.processes() > 0) last_cpu_ticks_ = last_.cpu_ticks;
}

void TreeSampler::reread_known() {
  std::vector<pid_t> alive;
  alive.reserve(last_.pids.size());
  std::uint64_t rss_bytes = 0;
  for (pid_t pid : last_.pids) {
    auto pages = read_rss_pages(proc_dir_, pid);
    if (!pages) {
      if (pid == root_) break;  // the root is gone: so is the tree
      continue;
    }
    alive.push_back(pid);
    rss_bytes += *pages * page_bytes_;
  }
  if (alive.empty() || alive.front() != root_) {
    last_ = {};
    return;
  }
  last_.pids = std::move(alive);
  last_.rss_bytes = rss_bytes;  // threads and CPU stay those of the last full scan
}

const TreeSample& TreeSampler::sample() {
  const double started = thread_cpu_s();
  // Full scans throughout the first samples too: that is when a pool starts its workers.
  if (samples_ < kFullScanEvery || samples_ % kFullScanEvery == 0 || last_.pids.empty()) {
    full_scan();
  } else {
    reread_known();
  }
  ++samples_;
  peak_rss_bytes_ = std::max(peak_rss_bytes_, last_.rss_bytes);
  peak_processes_ = std::max(peak_processes_, last_.processes());
  peak_threads_ = std::max(peak_threads_, last_.threads);
  own_cpu_s_ += thread_cpu_s() - started;
  return last_;
}

double TreeSampler::peak_rss_mib() const {
  return static_cast<double>(peak_rss_bytes_) / kMiB;
}

double TreeSampler::last_cpu_s() const {
  return ticks_per_s_ > 0 ? static_cast<double>(last_cpu_ticks_) / static_cast<double>(ticks_per_s_) : 0.0;
}

void kill_tree(const TreeSample& tree) {
  for (pid_t pid : tree.pids) ::kill(pid, SIGKILL);
}

}  // namespace fetchd::bench
