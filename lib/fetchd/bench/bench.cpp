// SPDX-License-Identifier: Apache-2.0
#include "fetchd/bench/bench.hpp"

#include <fmt/format.h>
#include <signal.h>  // NOLINT(modernize-deprecated-headers): sigaction is POSIX, not in <csignal>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <ostream>

#include "fetchd/bench/child_process.hpp"
#include "fetchd/bench/guard_rails.hpp"
#include "fetchd/bench/options.hpp"
#include "fetchd/bench/origin_process.hpp"
#include "fetchd/bench/process_tree.hpp"
#include "fetchd/bench/svg_plot.hpp"
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
constexpr double kMiB = 1024.0 * 1024.0;
// Ticks of 10 ms in /proc, and a sample taken up to one interval before the end: tolerance of the CPU check.
constexpr double kCpuSlackS = 0.1;
constexpr std::chrono::milliseconds kFirstSampleInterval{2};

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

// The binary's answer to "can you run this strategy?": `fetchd run` on an empty job list with the row's own
// kind of settings (the scheduler builds its strategy before it looks at the jobs). std::nullopt when it can;
// else why not, in its own words.
std::optional<std::string> probe_strategy(const BenchOptions& options, const StrategyVariant& variant,
                                          int cpus) {
  constexpr int kProbeConcurrency = 2;
  auto dir = TempDir::create(kTempPrefix, options.dir);
  const auto out_dir = dir.path() / "out";
  const auto config_path = dir.path() / "probe.yaml";
  std::filesystem::create_directory(out_dir);
  const JobListSettings settings{std::string(variant.kind),
                                 kProbeConcurrency,
                                 out_dir,
                                 false,
                                 workers_for(variant, kProbeConcurrency, options.workers, cpus),
                                 std::string(variant.inner)};
  write_text(config_path, make_job_list(settings, {}, options.job_list_limits).yaml);
  const std::vector<std::string> argv = {options.self_exe, "run",
                                         "--config",       config_path.string(),
                                         "--strategy",     std::string(variant.kind),
                                         "--concurrency",  std::to_string(kProbeConcurrency)};
  auto child = ChildProcess::spawn(argv, ChildStdout::kPipeWithStderr);
  ForwardInterrupts forward(child.pid());
  const auto output = read_output(child.stdout_fd(), options.probe_timeout);
  child.close_stdout();
  auto status = child.wait_for(options.probe_timeout);
  if (!status) status = child.stop();
  if (status->success()) return std::nullopt;
  // Its last line says why: "<time> critical run: strategy 'x' is not available ..." or
  // "<path>:1:49: strategy.inner: unknown key 'inner' ...".
  std::string_view last;
  std::string_view rest = output;
  while (!rest.empty()) {
    auto nl = rest.find('\n');
    auto line = rest.substr(0, nl);
    if (line.find_first_not_of(" \t\r") != std::string_view::npos) last = line;
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
  }
  std::string why(last);
  if (auto at = why.find(" run: "); at != std::string::npos) why.erase(0, at + 6);
  if (why.starts_with(config_path.string())) why.replace(0, config_path.string().size(), "job list");
  if (why.empty()) why = "no message";
  return fmt::format("unavailable: `fetchd run` said: {} ({})", why, status->describe());
}

struct RowContext {
  const BenchOptions& options;
  const Profile& profile;
  std::span<const WorkloadFile> files;
  const StrategyVariant& variant;
  int concurrency = 0;
  int workers = 0;
  Decision decision;
};

Row run_row(const RowContext& ctx) {
  const auto& options = ctx.options;
  const std::string strategy(ctx.variant.name);
  const int concurrency = ctx.concurrency;
  Row row;
  row.profile = ctx.profile.name;
  row.strategy = strategy;
  row.concurrency = concurrency;
  if (ctx.workers > 0) row.workers = ctx.workers;
  row.files = ctx.profile.workload.files;
  row.size = ctx.profile.workload.size;
  row.estimated_mib = ctx.decision.estimate.total_mib();

  auto dir = TempDir::create(kTempPrefix, options.dir);
  if (options.keep) dir.keep();
  const auto out_dir = dir.path() / "out";
  const auto config_path = dir.path() / "jobs.yaml";
  const auto summary_path = dir.path() / "summary.json";
  std::filesystem::create_directory(out_dir);
  const JobListSettings settings{std::string(ctx.variant.kind), concurrency, out_dir,
                                 ctx.profile.workload.fsync,    ctx.workers, std::string(ctx.variant.inner)};
  auto job_list = make_job_list(settings, ctx.files, options.job_list_limits);
  write_text(config_path, job_list.yaml);
  for (const auto& urls : job_list.urls_files) write_text(dir.path() / urls.name, urls.text);
  row.inline_checks = job_list.inline_checks;

  const std::vector<std::string> argv = {options.self_exe, "run",
                                         "--config",       config_path.string(),
                                         "--strategy",     std::string(ctx.variant.kind),
                                         "--concurrency",  std::to_string(concurrency),
                                         "--summary-json", summary_path.string()};
  ExitStatus status;
  std::string stopped;
  std::optional<TreeSampler> sampler;
  {
    auto child = ChildProcess::spawn(argv, ChildStdout::kToStderr);
    ForwardInterrupts forward(child.pid());
    // Sampling between waits, on this thread: the child is reaped only by wait_for, so its pid stays its own
    // (a zombie at worst) whenever the tree is scanned.
    sampler.emplace(child.pid());
    const auto budget_bytes = static_cast<std::uint64_t>(ctx.decision.budget_mib * kMiB);
    std::optional<ExitStatus> done;
    // Sooner at first (2, 4, 8, 16 ms), so that a short row still gets a few samples.
    auto interval = std::min(options.sample_interval, kFirstSampleInterval);
    while (!(done = child.wait_for(interval))) {
      interval = std::min(options.sample_interval, interval * 2);
      const auto& tree = sampler->sample();
      if (stopped.empty() && budget_bytes > 0 && tree.rss_bytes > budget_bytes) {
        stopped =
            fmt::format("stopped: its process tree reached {:.0f} MiB, over the memory budget of {:.0f} MiB",
                        static_cast<double>(tree.rss_bytes) / kMiB, ctx.decision.budget_mib);
        kill_tree(tree);
      }
    }
    status = *done;
  }
  row.process_wall_s = status.wall_s;
  row.cpu_user_s = status.cpu_user_s;
  row.cpu_sys_s = status.cpu_sys_s;
  row.maxrss_mib = status.peak_rss_mib;
  if (sampler->samples() > 0) row.tree_peak_rss_mib = sampler->peak_rss_mib();
  row.tree_samples = sampler->samples();
  row.tree_peak_processes = sampler->peak_processes();
  row.tree_peak_threads = sampler->peak_threads();
  row.tree_cpu_s = sampler->last_cpu_s();
  row.sampler_cpu_s = sampler->own_cpu_s();
  row.child_status = status.describe();
  // wait4() counts a descendant's CPU only once its parent reaped it: CPU seen alive in the tree but missing
  // from wait4() means workers were left unreaped, and cpu_s is too low.
  if (row.tree_cpu_s > row.cpu_s() + kCpuSlackS) {
    spdlog::warn(
        "{} x{}: wait4() reports {:.2f} s of CPU but the process tree had used {:.2f} s: processes of the "
        "tree were not reaped by it, cpu_s is too low",
        strategy, concurrency, row.cpu_s(), row.tree_cpu_s);
  }

  std::string summary_error;
  auto summary = read_summary(summary_path, &summary_error);
  if (summary) {
    row.wall_s = summary->wall_s;
    row.child_failed = summary->failed;
    row.interrupted = summary->interrupted;
  }
  row.interrupted = row.interrupted || interrupted();

  // Bench's own check, whatever the child said: a file counts only if it is on disk and right.
  auto report = verify_files(out_dir, ctx.files);
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
    if (!stopped.empty()) {
      row.error = stopped;
    } else if (!status.success()) {
      row.error = fmt::format("fetchd run ended with {}", row.child_status);
    } else if (!summary) {
      row.error = summary_error;
    } else if (row.verify_failures > 0) {
      row.error = fmt::format("fetchd run reported success, but {} of {} files are missing or wrong",
                              row.verify_failures, ctx.files.size());
    }
  }
  if (!row.error.empty() || row.interrupted) row.failures = std::max<std::uint64_t>(row.failures, 1);
  if (!row.error.empty()) spdlog::error("{} x{}: {}", strategy, concurrency, row.error);
  if (options.keep) spdlog::info("kept {}", dir.path().string());
  return row;
}

Row refused_row(const Profile& profile, const StrategyVariant& variant, int concurrency, int workers,
                std::string reason, double estimated_mib) {
  Row row;
  row.profile = profile.name;
  row.strategy = std::string(variant.name);
  row.concurrency = concurrency;
  if (workers > 0) row.workers = workers;
  row.files = profile.workload.files;
  row.size = profile.workload.size;
  row.refused = std::move(reason);
  row.estimated_mib = estimated_mib;
  return row;
}

void write_outputs(const BenchOptions& options, std::span<const Row> rows, std::string* error) {
  auto attempt = [&](const std::filesystem::path& path, const std::function<std::string()>& text) {
    if (path.empty()) return;
    try {
      write_text(path, text());
    } catch (const std::exception& e) {
      if (!error->empty()) *error += "; ";
      *error += e.what();
    }
  };
  attempt(options.json_path, [&] { return rows_to_json(rows).dump(2) + "\n"; });
  attempt(options.csv_path, [&] { return rows_to_csv(rows); });
  attempt(options.plot_path, [&] { return render_svg(rows); });
}

std::string gib_text(std::uint64_t bytes) {
  if (bytes == std::numeric_limits<std::uint64_t>::max()) return "unknown";
  return fmt::format("{:.1f} GiB", static_cast<double>(bytes) / kGiB);
}

}  // namespace

std::optional<std::string> validate(const BenchOptions& options) {
  if (options.profiles.empty()) return "no profile to measure";
  for (const auto& profile : options.profiles) {
    const auto& w = profile.workload;
    if (w.files == 0) return "--files must be at least 1";
    if (w.files > kMaxFiles)
      return fmt::format("--files {} is more than the limit of {}", w.files, kMaxFiles);
    if (w.size > 0 && w.files > UINT64_MAX / w.size) return "--files x --size does not fit in 64 bits";
    if (profile.concurrency.empty()) return "no concurrency to measure";
    for (int c : profile.concurrency) {
      if (c < 1 || c > kMaxConcurrency)
        return fmt::format("concurrency {} is outside 1..{}", c, kMaxConcurrency);
    }
  }
  if (options.strategies.empty()) return "no strategy to measure";
  for (const auto& name : options.strategies) {
    if (find_strategy(name) == nullptr) return fmt::format("unknown strategy '{}'", name);
  }
  if (options.workers < 0 || options.workers > kMaxConcurrency)
    return fmt::format("--workers {} is outside 1..{}", options.workers, kMaxConcurrency);
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
  auto limits_now = [&options] {
    return options.system_limits ? options.system_limits() : read_system_limits(options.dir);
  };
  const auto first_limits = limits_now();
  out << fmt::format("output: {} ({})", options.dir.string(), file_system_name(options.dir)) << "\n"
      << fmt::format("machine: {} CPUs, MemAvailable {}, open files hard limit {}; process-pool workers: {}",
                     first_limits.cpus, gib_text(first_limits.mem_available_bytes),
                     first_limits.nofile_hard == std::numeric_limits<std::uint64_t>::max()
                         ? std::string("unlimited")
                         : std::to_string(first_limits.nofile_hard),
                     options.workers > 0 ? fmt::format("{} (--workers)", options.workers)
                                         : fmt::format("{} (one per CPU)", first_limits.cpus))
      << "\n"
      << std::flush;
  try {
    // One origin for every row: each URL asks for its profile's latency.
    auto origin = OriginProcess::start(origin_argv(options.self_exe, std::chrono::milliseconds(0)),
                                       options.origin_startup_timeout, [] { return interrupted(); });
    spdlog::info("origin listening on {} (pid {})", origin.base_url(), origin.pid());

    std::map<std::string, std::optional<std::string>, std::less<>> unavailable;
    for (const auto& name : options.strategies) {
      if (interrupted()) break;
      const auto& variant = *find_strategy(name);
      if (unavailable.contains(variant.name)) continue;
      unavailable[std::string(variant.name)] = probe_strategy(options, variant, first_limits.cpus);
      if (interrupted()) break;  // the probe was stopped, not refused
      if (const auto& why = unavailable[std::string(variant.name)]) {
        out << fmt::format("note: {} cannot run in this binary, its rows are refused ({})\n", name, *why);
      }
    }

    MemoryHistory history;
    for (const auto& profile : options.profiles) {
      if (interrupted() || !result.error.empty()) break;
      out << "\n"
          << fmt::format("== profile {}: {}", profile.name, profile.what) << "\n"
          << describe_workload(profile.workload) << "\n";
      const auto files = make_workload(profile.workload, origin.base_url(), options.expected_sha256);
      // The same decision every row will make (only the temp dir's name differs, and not its length).
      const auto& first = *find_strategy(options.strategies.front());
      const int first_workers =
          workers_for(first, profile.concurrency.front(), options.workers, first_limits.cpus);
      const auto probe = make_job_list({std::string(first.kind), profile.concurrency.front(),
                                        options.dir / fmt::format("{}XXXXXX", kTempPrefix) / "out",
                                        profile.workload.fsync, first_workers, std::string(first.inner)},
                                       files, options.job_list_limits);
      if (!probe.inline_checks) {
        out << fmt::format(
            "note: {} jobs with checksums exceed the config loader's limit of {}: the job list names "
            "URL files instead, so fetchd does not verify as it downloads (bench still verifies every "
            "file afterwards)\n",
            files.size(), core::format_size(options.job_list_limits.max_config_bytes));
      }
      out << format_table_header() << "\n" << std::flush;
      const std::size_t total = options.strategies.size() * profile.concurrency.size();
      std::size_t done = 0;
      for (const auto& name : options.strategies) {
        const auto& variant = *find_strategy(name);
        for (int concurrency : profile.concurrency) {
          if (interrupted() || !result.error.empty()) break;
          if (auto gone = origin.exited()) {
            result.error = fmt::format("the origin exited during the benchmark ({})", *gone);
            break;
          }
          ++done;
          const auto limits = limits_now();
          const int workers = workers_for(variant, concurrency, options.workers, limits.cpus);
          const RowPlan plan{variant, concurrency, workers, profile.workload};
          const auto key = history_key(profile.name, variant);
          auto decision = decide(plan, limits, options.guard_rails, history.basis(key, concurrency));
          if (const auto& why = unavailable[std::string(variant.name)]; why && !decision.refused) {
            decision.refused = *why;
          }
          if (decision.refused) {
            spdlog::info("row {}/{} of {}: {} at concurrency {}: refused", done, total, profile.name, name,
                         concurrency);
            result.rows.push_back(refused_row(profile, variant, concurrency, workers, *decision.refused,
                                              decision.estimate.total_mib()));
          } else {
            spdlog::info("row {}/{} of {}: {} at concurrency {} (estimated {:.0f} MiB)", done, total,
                         profile.name, name, concurrency, decision.estimate.total_mib());
            result.rows.push_back(
                run_row({options, profile, files, variant, concurrency, workers, decision}));
            const auto& row = result.rows.back();
            if (row.ok() && row.tree_peak_rss_mib) {
              history.add(key, concurrency, std::max(*row.tree_peak_rss_mib, row.maxrss_mib));
            }
          }
          out << format_table_row(result.rows.back()) << "\n" << std::flush;
        }
      }
      out << table_footnote() << "\n" << std::flush;
    }
    auto status = origin.stop();
    if (!status.success() && status.term_signal() != SIGTERM && !interrupted()) {
      spdlog::warn("origin ended with {}", status.describe());
    }
  } catch (const std::exception& e) {
    result.error = e.what();
  }
  result.interrupted = interrupted();
  write_outputs(options, result.rows, &result.error);
  if (!result.error.empty()) spdlog::error("bench: {}", result.error);
  return result;
}

}  // namespace fetchd::bench
