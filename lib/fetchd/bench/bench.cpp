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
#include "fetchd/bench/control_client.hpp"
#include "fetchd/bench/guard_rails.hpp"
#include "fetchd/bench/options.hpp"
#include "fetchd/bench/origin_process.hpp"
#include "fetchd/bench/process_tree.hpp"
#include "fetchd/bench/svg_plot.hpp"
#include "fetchd/bench/temp_dir.hpp"
#include "fetchd/bench/verify.hpp"
#include "fetchd/config/config.hpp"
#include "fetchd/control/protocol.hpp"
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

// Samples a row's process tree between waits, and kills the tree once it outgrows the row's memory budget.
class TreeWatch {
 public:
  TreeWatch(pid_t root, const RowContext& ctx)
      : sampler_(root),
        budget_bytes_(static_cast<std::uint64_t>(ctx.decision.budget_mib * kMiB)),
        budget_mib_(ctx.decision.budget_mib),
        max_interval_(ctx.options.sample_interval),
        // Sooner at first (2, 4, 8, 16 ms), so that a short row still gets a few samples.
        interval_(std::min(ctx.options.sample_interval, kFirstSampleInterval)) {}

  // How long to wait before the next sample.
  std::chrono::milliseconds next_interval() {
    auto interval = interval_;
    interval_ = std::min(max_interval_, interval_ * 2);
    return interval;
  }

  void sample() {
    const auto& tree = sampler_.sample();
    if (stopped_.empty() && budget_bytes_ > 0 && tree.rss_bytes > budget_bytes_) {
      stopped_ =
          fmt::format("stopped: its process tree reached {:.0f} MiB, over the memory budget of {:.0f} MiB",
                      static_cast<double>(tree.rss_bytes) / kMiB, budget_mib_);
      kill_tree(tree);
    }
  }

  const TreeSampler& sampler() const { return sampler_; }
  const std::string& stopped() const { return stopped_; }  // why the tree was killed; empty if it was not

 private:
  TreeSampler sampler_;
  std::uint64_t budget_bytes_;
  double budget_mib_;
  std::chrono::milliseconds max_interval_;
  std::chrono::milliseconds interval_;
  std::string stopped_;
};

Row new_row(const RowContext& ctx, Via via) {
  Row row;
  row.profile = ctx.profile.name;
  row.strategy = std::string(ctx.variant.name);
  row.via = std::string(to_string(via));
  row.concurrency = ctx.concurrency;
  if (ctx.workers > 0) row.workers = ctx.workers;
  row.files = ctx.profile.workload.files;
  row.size = ctx.profile.workload.size;
  row.estimated_mib = ctx.decision.estimate.total_mib();
  return row;
}

JobListSettings row_settings(const RowContext& ctx, const std::filesystem::path& out_dir) {
  return {std::string(ctx.variant.kind), ctx.concurrency, out_dir,
          ctx.profile.workload.fsync,    ctx.workers,     std::string(ctx.variant.inner)};
}

// The child's CPU and memory, from wait4() and from the samples of its tree.
void take_process_numbers(Row& row, const ExitStatus& status, const TreeSampler& sampler) {
  row.process_wall_s = status.wall_s;
  row.cpu_user_s = status.cpu_user_s;
  row.cpu_sys_s = status.cpu_sys_s;
  row.maxrss_mib = status.peak_rss_mib;
  if (sampler.samples() > 0) row.tree_peak_rss_mib = sampler.peak_rss_mib();
  row.tree_samples = sampler.samples();
  row.tree_peak_processes = sampler.peak_processes();
  row.tree_peak_threads = sampler.peak_threads();
  row.tree_cpu_s = sampler.last_cpu_s();
  row.sampler_cpu_s = sampler.own_cpu_s();
  row.child_status = status.describe();
  // wait4() counts a descendant's CPU only once its parent reaped it: CPU seen alive in the tree but missing
  // from wait4() means workers were left unreaped, and cpu_s is too low.
  if (row.tree_cpu_s > row.cpu_s() + kCpuSlackS) {
    spdlog::warn(
        "{} x{}: wait4() reports {:.2f} s of CPU but the process tree had used {:.2f} s: processes of the "
        "tree were not reaped by it, cpu_s is too low",
        row.strategy, row.concurrency, row.cpu_s(), row.tree_cpu_s);
  }
}

// Bench's own check, whatever the child said: a file counts only if it is on disk and right. `child_error` is
// why the child's part failed (empty when it did not); the first problem found becomes the row's error.
void finish_row(Row& row, const RowContext& ctx, const std::filesystem::path& out_dir,
                const std::string& child_error, std::string_view child_name) {
  row.interrupted = row.interrupted || interrupted();
  auto report = verify_files(out_dir, ctx.files);
  row.bytes = report.bytes;
  row.verify_failures = report.failures;
  row.failures = std::max(row.verify_failures, row.child_failed);
  if (row.interrupted) {
    // Missing files are the expected outcome here, not news.
    row.error = fmt::format("interrupted ({} ended with {})", child_name, row.child_status);
  } else {
    for (const auto& problem : report.problems) {
      spdlog::error("{} x{}: {}", row.strategy, row.concurrency, problem);
    }
    if (report.failures > report.problems.size()) {
      spdlog::error("{} x{}: ... and {} more bad files", row.strategy, row.concurrency,
                    report.failures - report.problems.size());
    }
    if (!child_error.empty()) {
      row.error = child_error;
    } else if (row.verify_failures > 0) {
      row.error = fmt::format("{} reported success, but {} of {} files are missing or wrong", child_name,
                              row.verify_failures, ctx.files.size());
    }
  }
  if (!row.error.empty() || row.interrupted) row.failures = std::max<std::uint64_t>(row.failures, 1);
  if (!row.error.empty()) spdlog::error("{} x{}: {}", row.strategy, row.concurrency, row.error);
}

Row run_row(const RowContext& ctx) {
  const auto& options = ctx.options;
  Row row = new_row(ctx, Via::kRun);

  auto dir = TempDir::create(kTempPrefix, options.dir);
  if (options.keep) dir.keep();
  const auto out_dir = dir.path() / "out";
  const auto config_path = dir.path() / "jobs.yaml";
  const auto summary_path = dir.path() / "summary.json";
  std::filesystem::create_directory(out_dir);
  auto job_list = make_job_list(row_settings(ctx, out_dir), ctx.files, options.job_list_limits);
  write_text(config_path, job_list.yaml);
  for (const auto& urls : job_list.urls_files) write_text(dir.path() / urls.name, urls.text);
  row.inline_checks = job_list.inline_checks;

  const std::vector<std::string> argv = {options.self_exe, "run",
                                         "--config",       config_path.string(),
                                         "--strategy",     std::string(ctx.variant.kind),
                                         "--concurrency",  std::to_string(ctx.concurrency),
                                         "--summary-json", summary_path.string()};
  ExitStatus status;
  std::string stopped;
  {
    auto child = ChildProcess::spawn(argv, ChildStdout::kToStderr);
    ForwardInterrupts forward(child.pid());
    // Sampling between waits, on this thread: the child is reaped only by wait_for, so its pid stays its own
    // (a zombie at worst) whenever the tree is scanned.
    TreeWatch watch(child.pid(), ctx);
    std::optional<ExitStatus> done;
    while (!(done = child.wait_for(watch.next_interval()))) watch.sample();
    status = *done;
    stopped = watch.stopped();
    take_process_numbers(row, status, watch.sampler());
  }

  std::string summary_error;
  auto summary = read_summary(summary_path, &summary_error);
  if (summary) {
    row.wall_s = summary->wall_s;
    row.child_failed = summary->failed;
    row.interrupted = summary->interrupted;
  }
  std::string child_error = stopped;
  if (child_error.empty() && !status.success()) {
    child_error = fmt::format("fetchd run ended with {}", row.child_status);
  } else if (child_error.empty() && !summary) {
    child_error = summary_error;
  }
  finish_row(row, ctx, out_dir, child_error, "fetchd run");
  if (options.keep) spdlog::info("kept {}", dir.path().string());
  return row;
}

// A serve row's daemon, seen from bench: every wait watches for its exit and samples its process tree.
class DaemonWatch {
 public:
  DaemonWatch(ChildProcess& child, TreeWatch& watch) : child_(child), watch_(watch) {}

  // Waits up to `timeout` for the daemon to exit, then samples. False when it exited, was killed for its
  // memory, or bench was interrupted.
  bool pause(std::chrono::milliseconds timeout) {
    if (exited_) return false;
    exited_ = child_.wait_for(timeout);
    if (exited_) return false;
    watch_.sample();
    return watch_.stopped().empty() && !interrupted();
  }
  bool keep_waiting() { return pause(std::chrono::milliseconds(0)); }

  // Why the row cannot go on, when pause() said so.
  std::string why_stopped() const {
    if (!watch_.stopped().empty()) return watch_.stopped();
    if (exited_) return fmt::format("fetchd serve exited during the row with {}", exited_->describe());
    return "interrupted";
  }
  // A failed exchange with the daemon is explained by its exit (or bench's) when there was one.
  std::string explain(const std::string& error) const {
    return exited_ || !watch_.stopped().empty() || interrupted() ? why_stopped() : error;
  }

  std::optional<ExitStatus>& exited() { return exited_; }

 private:
  ChildProcess& child_;
  TreeWatch& watch_;
  std::optional<ExitStatus> exited_;
};

struct ServeOutcome {
  std::optional<double> wall_s;
  std::optional<double> submit_ack_s;
  std::uint64_t failed = 0;  // failed or cancelled jobs
  std::string error;
};

// Submits the workload to a started daemon and waits until every job has finished. The wall time runs from
// the first submit byte to the latest `finished` time in the daemon's store.
ServeOutcome drive_daemon(const RowContext& ctx, const std::filesystem::path& socket,
                          std::span<const std::string> submit_lines, DaemonWatch& daemon) {
  const auto& options = ctx.options;
  const auto tick = options.sample_interval;
  auto keep_waiting = [&daemon] { return daemon.keep_waiting(); };
  ServeOutcome outcome;
  auto fail = [&outcome](std::string message) {
    outcome.error = fmt::format("fetchd serve: {}", message);
    return outcome;
  };
  std::string error;
  auto client = ControlClient::connect(
      socket, options.daemon_startup_timeout,
      [&daemon](std::chrono::milliseconds step) { return daemon.pause(step); }, &error);
  if (!client) return fail(daemon.explain(error));

  auto submitted = client->pipeline(submit_lines, options.control_timeout, tick, keep_waiting);
  if (!submitted.ok()) return fail(fmt::format("submit: {}", daemon.explain(submitted.error)));
  outcome.submit_ack_s =
      std::chrono::duration<double>(submitted.last_received - submitted.first_sent).count();
  for (const auto& line : submitted.replies) {
    auto reply = nlohmann::json::parse(line, nullptr, false);
    if (auto problem = reply_problem(reply); !problem.empty()) {
      return fail(fmt::format("submit: {}", problem));
    }
  }

  // Until done + failed + cancelled reaches the file count (the store is the row's own, so every job is
  // ours). A row gives up once neither a job finished nor a byte arrived for serve_stall_timeout: each
  // transfer is bounded by its own timeouts, so that is a stuck daemon, not a slow one.
  const std::string stats_line = "{\"op\":\"stats\"}\n";
  const auto files = static_cast<std::uint64_t>(ctx.files.size());
  std::uint64_t last_finished = 0;
  std::uint64_t last_bytes = 0;
  auto last_change = std::chrono::steady_clock::now();
  while (true) {
    auto stats = client->request(stats_line, options.control_timeout, tick, keep_waiting, &error);
    if (!stats) return fail(fmt::format("stats: {}", daemon.explain(error)));
    const auto& r = (*stats)["result"];
    const auto done = r.value("done", std::uint64_t{0});
    outcome.failed = r.value("failed", std::uint64_t{0}) + r.value("cancelled", std::uint64_t{0});
    const auto finished = done + outcome.failed;
    if (finished >= files) break;
    const auto bytes = r.value("bytes", std::uint64_t{0});
    const auto now = std::chrono::steady_clock::now();
    if (finished != last_finished || bytes != last_bytes) {
      last_finished = finished;
      last_bytes = bytes;
      last_change = now;
    } else if (now - last_change >= options.serve_stall_timeout) {
      return fail(fmt::format("no job finished and no byte arrived for {} ms ({} of {} jobs finished)",
                              options.serve_stall_timeout.count(), finished, files));
    }
    // Sampling more often than stats are asked for, as run rows sample.
    const auto next_stats = now + options.stats_interval;
    while (std::chrono::steady_clock::now() < next_stats) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          next_stats - std::chrono::steady_clock::now());
      if (!daemon.pause(std::clamp(left, std::chrono::milliseconds(1), options.sample_interval))) {
        return fail(daemon.why_stopped());
      }
    }
  }

  // The exact end: the latest `finished` of the done and failed jobs, paged through by id.
  std::int64_t last_finished_ms = 0;
  std::uint64_t listed = 0;
  for (std::string_view state : {"done", "failed"}) {
    if (state == "failed" && outcome.failed == 0) continue;
    core::JobId after = 0;
    // Bounded: each page holds up to kMaxListLimit jobs of the row's own.
    const std::uint64_t max_pages = files / control::kMaxListLimit + 2;
    for (std::uint64_t page = 0;; ++page) {
      if (page == max_pages) {
        return fail(fmt::format("list {}: more pages than {} jobs can fill", state, files));
      }
      const auto line = fmt::format("{{\"op\":\"list\",\"state\":\"{}\",\"after\":{},\"limit\":{}}}\n", state,
                                    after, control::kMaxListLimit);
      auto reply = client->request(line, options.control_timeout, tick, keep_waiting, &error);
      if (!reply) return fail(fmt::format("list: {}", daemon.explain(error)));
      const auto& result = (*reply)["result"];
      for (const auto& job : result["jobs"]) {
        const auto& finished = job["finished"];
        auto ms = finished.is_string() ? parse_time_ms(finished.get<std::string>()) : std::nullopt;
        if (!ms) return fail(fmt::format("list: job {} has no readable finished time", job.value("id", 0)));
        last_finished_ms = std::max(last_finished_ms, *ms);
        ++listed;
      }
      if (!result.contains("next_after") || !result["next_after"].is_number_integer()) break;
      after = result["next_after"].get<core::JobId>();
    }
  }
  if (listed < files) return fail(fmt::format("list: {} finished jobs listed, {} expected", listed, files));
  const double first_ms = static_cast<double>(std::chrono::duration_cast<std::chrono::microseconds>(
                                                  submitted.first_sent_wall.time_since_epoch())
                                                  .count()) /
                          1000.0;
  outcome.wall_s = (static_cast<double>(last_finished_ms) - first_ms) / 1000.0;
  return outcome;
}

// A `--via serve` row: `fetchd serve` on a config of the row's settings, the workload submitted over its
// control socket (lines encoded before the clock starts), then SIGTERM once every job finished.
Row serve_row(const RowContext& ctx) {
  const auto& options = ctx.options;
  Row row = new_row(ctx, Via::kServe);

  auto dir = TempDir::create(kTempPrefix, options.dir);
  if (options.keep) dir.keep();
  const auto out_dir = dir.path() / "out";
  const auto state_dir = dir.path() / "state";
  const auto socket = dir.path() / "ctl.sock";
  const auto config_path = dir.path() / "fetchd.yaml";
  std::filesystem::create_directory(out_dir);
  const auto settings = row_settings(ctx, out_dir);
  // Checksums go with the jobs exactly when the run row's job list would carry them.
  row.inline_checks = make_job_list(settings, ctx.files, options.job_list_limits).inline_checks;
  const auto lines =
      encode_submit_lines(ctx.files, row.inline_checks, control::kMaxLineBytes, control::kSubmitJobsPerLine);
  write_text(config_path, make_daemon_config(settings, socket, state_dir));

  const std::vector<std::string> argv = {options.self_exe, "serve", "--config", config_path.string()};
  ExitStatus status;
  std::string child_error;
  {
    auto child = ChildProcess::spawn(argv, ChildStdout::kToStderr);
    ForwardInterrupts forward(child.pid());
    TreeWatch watch(child.pid(), ctx);
    DaemonWatch daemon(child, watch);
    auto outcome = drive_daemon(ctx, socket, lines, daemon);
    row.wall_s = outcome.wall_s;
    row.submit_ack_s = outcome.submit_ack_s;
    row.child_failed = outcome.failed;
    child_error = outcome.error;
    if (child_error.empty() && outcome.failed > 0) {
      child_error = fmt::format("fetchd serve: {} of {} jobs failed", outcome.failed, ctx.files.size());
    }

    auto& exited = daemon.exited();
    if (!exited) {
      // Its CPU and memory come from wait4(), so the daemon must end: SIGTERM, then SIGKILL after a bound.
      child.kill(SIGTERM);
      const auto deadline = std::chrono::steady_clock::now() + options.daemon_stop_timeout;
      while (!(exited = child.wait_for(watch.next_interval()))) {
        watch.sample();
        if (std::chrono::steady_clock::now() >= deadline) {
          exited = child.stop(std::chrono::milliseconds(0));
          if (child_error.empty()) {
            child_error = fmt::format("fetchd serve did not exit within {} ms of SIGTERM",
                                      options.daemon_stop_timeout.count());
          }
          break;
        }
      }
      if (child_error.empty() && !exited->success()) {
        child_error = fmt::format("fetchd serve ended with {} after SIGTERM", exited->describe());
      }
    }
    status = *exited;
    if (!watch.stopped().empty()) child_error = watch.stopped();
    take_process_numbers(row, status, watch.sampler());
  }
  finish_row(row, ctx, out_dir, child_error, "fetchd serve");
  if (options.keep) spdlog::info("kept {}", dir.path().string());
  return row;
}

Row refused_row(const Profile& profile, const StrategyVariant& variant, Via via, int concurrency, int workers,
                std::string reason, double estimated_mib) {
  Row row;
  row.profile = profile.name;
  row.strategy = std::string(variant.name);
  row.via = std::string(to_string(via));
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
          << fmt::format("== profile {}: {} (via {})", profile.name, profile.what, to_string(options.via))
          << "\n"
          << describe_workload(profile.workload) << "\n";
      if (options.via == Via::kServe) {
        out << "via serve: each row starts `fetchd serve` (its job store in the row's folder, synchronous: "
               "full) "
               "and submits the jobs over its control socket\n";
      }
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
            result.rows.push_back(refused_row(profile, variant, options.via, concurrency, workers,
                                              *decision.refused, decision.estimate.total_mib()));
          } else {
            spdlog::info("row {}/{} of {}: {} at concurrency {} via {} (estimated {:.0f} MiB)", done, total,
                         profile.name, name, concurrency, to_string(options.via),
                         decision.estimate.total_mib());
            const RowContext ctx{options, profile, files, variant, concurrency, workers, decision};
            result.rows.push_back(options.via == Via::kServe ? serve_row(ctx) : run_row(ctx));
            const auto& row = result.rows.back();
            if (row.ok() && row.tree_peak_rss_mib) {
              history.add(key, concurrency, std::max(*row.tree_peak_rss_mib, row.maxrss_mib));
            }
          }
          out << format_table_row(result.rows.back()) << "\n" << std::flush;
        }
      }
      out << table_footnote(to_string(options.via)) << "\n" << std::flush;
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
