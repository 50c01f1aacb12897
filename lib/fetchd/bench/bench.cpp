// SPDX-License-Identifier: Apache-2.0
#include "fetchd/bench/bench.hpp"

#include <fmt/format.h>
#include <signal.h>  // NOLINT(modernize-deprecated-headers): sigaction is POSIX, not in <csignal>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <nlohmann/json.hpp>
#include <ostream>

#include "fetchd/bench/child_process.hpp"
#include "fetchd/bench/options.hpp"
#include "fetchd/bench/origin_process.hpp"
#include "fetchd/bench/temp_dir.hpp"
#include "fetchd/bench/verify.hpp"
#include "fetchd/config/config.hpp"
#include "fetchd/core/units.hpp"

namespace fetchd::bench {

namespace {

constexpr std::string_view kTempPrefix = "fetchd-bench-";
constexpr std::uint64_t kBlockBytes = 4096;          // a small file still takes a whole block
constexpr std::uint64_t kJobListBytesPerFile = 256;  // one line of the job list, with room to spare
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// Signal state, touched by the handler: lock-free atomics are async-signal-safe.
static_assert(std::atomic<int>::is_always_lock_free && std::atomic<pid_t>::is_always_lock_free);
std::atomic<int> g_interrupts{0};
std::atomic<pid_t> g_forward_pid{0};
std::atomic<pid_t> g_bench_pid{0};

void on_interrupt(int /*signum*/) {
  // A forked child runs this handler until it execs: it must not count or forward anything.
  if (::getpid() != g_bench_pid.load()) return;
  const int saved_errno = errno;
  const int count = g_interrupts.fetch_add(1) + 1;
  // A ^C from the terminal reaches the child too, `kill -INT <bench>` does not: forward it. A second one
  // kills.
  if (pid_t pid = g_forward_pid.load(); pid > 0) ::kill(pid, count > 1 ? SIGKILL : SIGTERM);
  errno = saved_errno;
}

bool interrupted() {
  return g_interrupts.load() > 0;
}

// Installs on_interrupt for SIGINT and SIGTERM for the duration of run_bench. Without SA_RESTART, so that a
// poll() waiting for the origin returns at once; wait4() is simply retried (the handler signals the child).
class InterruptScope {
 public:
  InterruptScope() {
    g_interrupts = 0;
    g_bench_pid = ::getpid();
    struct sigaction action {};
    action.sa_handler = on_interrupt;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGINT, &action, &old_int_);
    ::sigaction(SIGTERM, &action, &old_term_);
  }
  ~InterruptScope() {
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
  }
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

// While it lives, an interrupt of bench is passed on to `pid`, including one that came just before.
class ForwardInterrupts {
 public:
  explicit ForwardInterrupts(pid_t pid) {
    g_forward_pid = pid;
    if (interrupted()) ::kill(pid, SIGTERM);
  }
  ~ForwardInterrupts() { g_forward_pid = 0; }
  ForwardInterrupts(const ForwardInterrupts&) = delete;
  ForwardInterrupts& operator=(const ForwardInterrupts&) = delete;
};

struct ChildSummary {
  std::optional<double> wall_s;
  std::uint64_t failed = 0;
  bool interrupted = false;
};

std::optional<ChildSummary> read_summary(const std::filesystem::path& path, std::string* error) {
  std::ifstream in(path);
  if (!in) {
    *error = fmt::format("no summary at {}", path.string());
    return std::nullopt;
  }
  try {
    auto j = nlohmann::json::parse(in);
    ChildSummary summary;
    if (j.contains("wall_s") && j["wall_s"].is_number()) summary.wall_s = j["wall_s"].get<double>();
    summary.failed = j.value("failed", std::uint64_t{0});
    summary.interrupted = j.value("interrupted", false);
    return summary;
  } catch (const nlohmann::json::exception& e) {
    *error = fmt::format("unreadable summary {}: {}", path.string(), e.what());
    return std::nullopt;
  }
}

void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  out.close();
  if (!out) throw std::runtime_error(fmt::format("cannot write {}", path.string()));
}

Row run_row(const BenchOptions& options, std::span<const WorkloadFile> files, const std::string& strategy,
            int concurrency) {
  Row row;
  row.strategy = strategy;
  row.concurrency = concurrency;
  row.files = options.workload.files;
  row.size = options.workload.size;

  auto dir = TempDir::create(kTempPrefix, options.dir);
  if (options.keep) dir.keep();
  const auto out_dir = dir.path() / "out";
  const auto config_path = dir.path() / "jobs.yaml";
  const auto summary_path = dir.path() / "summary.json";
  std::filesystem::create_directory(out_dir);
  auto job_list =
      make_job_list({strategy, concurrency, out_dir, options.workload.fsync}, files, options.job_list_limits);
  write_text(config_path, job_list.yaml);
  for (const auto& urls : job_list.urls_files) write_text(dir.path() / urls.name, urls.text);
  row.inline_checks = job_list.inline_checks;

  const std::vector<std::string> argv = {options.self_exe, "run",
                                         "--config",       config_path.string(),
                                         "--strategy",     strategy,
                                         "--concurrency",  std::to_string(concurrency),
                                         "--summary-json", summary_path.string()};
  ExitStatus status;
  {
    auto child = ChildProcess::spawn(argv, ChildStdout::kToStderr);
    ForwardInterrupts forward(child.pid());
    status = child.wait();
  }
  row.process_wall_s = status.wall_s;
  row.cpu_user_s = status.cpu_user_s;
  row.cpu_sys_s = status.cpu_sys_s;
  row.peak_rss_mib = status.peak_rss_mib;
  row.child_status = status.describe();

  std::string summary_error;
  auto summary = read_summary(summary_path, &summary_error);
  if (summary) {
    row.wall_s = summary->wall_s;
    row.child_failed = summary->failed;
    row.interrupted = summary->interrupted;
  }
  row.interrupted = row.interrupted || interrupted();

  // Bench's own check, whatever the child said: a file counts only if it is on disk and right.
  auto report = verify_files(out_dir, files);
  row.bytes = report.bytes;
  row.verify_failures = report.failures;
  row.failures = std::max(row.verify_failures, row.child_failed);
  if (row.interrupted) {
    // Missing files are the expected outcome here, not news.
    row.error = fmt::format("interrupted (fetchd run ended with {})", row.child_status);
  } else {
    for (const auto& problem : report.problems) spdlog::error("{} x{}: {}", strategy, concurrency, problem);
    if (report.failures > report.problems.size()) {
      spdlog::error("{} x{}: ... and {} more bad files", strategy, concurrency,
                    report.failures - report.problems.size());
    }
    if (!status.success()) {
      row.error = fmt::format("fetchd run ended with {}", row.child_status);
    } else if (!summary) {
      row.error = summary_error;
    } else if (row.verify_failures > 0) {
      row.error = fmt::format("fetchd run reported success, but {} of {} files are missing or wrong",
                              row.verify_failures, files.size());
    }
  }
  if (!row.error.empty() || row.interrupted) row.failures = std::max<std::uint64_t>(row.failures, 1);
  if (!row.error.empty()) spdlog::error("{} x{}: {}", strategy, concurrency, row.error);
  if (options.keep) spdlog::info("kept {}", dir.path().string());
  return row;
}

void write_json(const std::filesystem::path& path, std::span<const Row> rows) {
  write_text(path, rows_to_json(rows).dump(2) + "\n");
}

}  // namespace

std::optional<std::string> validate(const BenchOptions& options) {
  const auto& w = options.workload;
  if (w.files == 0) return "--files must be at least 1";
  if (w.files > kMaxFiles) return fmt::format("--files {} is more than the limit of {}", w.files, kMaxFiles);
  if (w.size > 0 && w.files > UINT64_MAX / w.size) return "--files x --size does not fit in 64 bits";
  if (options.strategies.empty()) return "no strategy to measure";
  if (options.concurrency.empty()) return "no concurrency to measure";
  for (int c : options.concurrency) {
    if (c < 1 || c > kMaxConcurrency)
      return fmt::format("concurrency {} is outside 1..{}", c, kMaxConcurrency);
  }
  if (!options.expected_sha256) return "no digest function for the origin's bodies";
  return std::nullopt;
}

std::optional<std::string> check_disk_space(const WorkloadSpec& spec, const std::filesystem::path& dir) {
  std::error_code ec;
  auto space = std::filesystem::space(dir, ec);
  if (ec) return fmt::format("cannot check free space in {}: {}", dir.string(), ec.message());
  const std::uint64_t blocks_per_file = spec.size / kBlockBytes + (spec.size % kBlockBytes != 0 ? 1 : 0);
  std::uint64_t per_file = 0;
  std::uint64_t needed = 0;
  const bool overflow = __builtin_mul_overflow(blocks_per_file, kBlockBytes, &per_file) ||
                        __builtin_add_overflow(per_file, kJobListBytesPerFile, &per_file) ||
                        __builtin_mul_overflow(per_file, spec.files, &needed);
  if (overflow || needed > space.available) {
    return fmt::format(
        "the workload needs about {} in {} but only {:.1f} GiB is available (set TMPDIR, or use "
        "fewer or smaller files)",
        overflow ? std::string("more than 16 EiB")
                 : fmt::format("{:.1f} GiB", static_cast<double>(needed) / kGiB),
        dir.string(), static_cast<double>(space.available) / kGiB);
  }
  return std::nullopt;
}

bool BenchResult::ok() const {
  return error.empty() && !interrupted && std::ranges::all_of(rows, [](const Row& r) { return r.ok(); });
}

BenchResult run_bench(const BenchOptions& options, std::ostream& out) {
  BenchResult result;
  if (auto problem = validate(options)) {
    result.error = *problem;
    return result;
  }
  InterruptScope interrupt_scope;
  out << describe_workload(options.workload) << "\n"
      << fmt::format("output: {} ({})", options.dir.string(), file_system_name(options.dir)) << "\n"
      << std::flush;
  try {
    auto origin = OriginProcess::start(origin_argv(options.self_exe, options.workload.latency),
                                       options.origin_startup_timeout, [] { return interrupted(); });
    spdlog::info("origin listening on {} (pid {})", origin.base_url(), origin.pid());
    const auto files = make_workload(options.workload, origin.base_url(), options.expected_sha256);
    // The same decision every row will make (only the temp dir's name differs, and not its length).
    const auto probe = make_job_list(
        {options.strategies.front(), options.concurrency.front(),
         options.dir / fmt::format("{}XXXXXX", kTempPrefix) / "out", options.workload.fsync},
        files, options.job_list_limits);
    if (!probe.inline_checks) {
      out << fmt::format(
          "note: {} jobs with checksums exceed the config loader's limit of {}: the job list names "
          "URL files instead, so fetchd does not verify as it downloads (bench still verifies every "
          "file afterwards)\n",
          files.size(), core::format_size(options.job_list_limits.max_config_bytes));
    }
    out << format_table_header() << "\n" << std::flush;
    const std::size_t total = options.strategies.size() * options.concurrency.size();
    for (const auto& strategy : options.strategies) {
      for (int concurrency : options.concurrency) {
        if (interrupted() || !result.error.empty()) break;
        if (auto gone = origin.exited()) {
          result.error = fmt::format("the origin exited during the benchmark ({})", *gone);
          break;
        }
        spdlog::info("row {}/{}: {} at concurrency {}", result.rows.size() + 1, total, strategy, concurrency);
        result.rows.push_back(run_row(options, files, strategy, concurrency));
        out << format_table_row(result.rows.back()) << "\n" << std::flush;
      }
    }
    auto status = origin.stop();
    if (!status.success() && status.term_signal() != SIGTERM && !interrupted()) {
      spdlog::warn("origin ended with {}", status.describe());
    }
  } catch (const std::exception& e) {
    result.error = e.what();
  }
  result.interrupted = interrupted();
  if (!options.json_path.empty()) {
    try {
      write_json(options.json_path, result.rows);
    } catch (const std::exception& e) {
      if (!result.error.empty()) result.error += "; ";
      result.error += e.what();
    }
  }
  if (!result.error.empty()) spdlog::error("bench: {}", result.error);
  return result;
}

}  // namespace fetchd::bench
