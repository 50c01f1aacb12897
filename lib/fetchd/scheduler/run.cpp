// SPDX-License-Identifier: Apache-2.0
#include "fetchd/scheduler/run.hpp"

#include <csignal>

#include <spdlog/spdlog.h>

#include "fetchd/curl/curl.hpp"
#include "fetchd/stats/stats.hpp"
#include "fetchd/uv/loop.hpp"

namespace fetchd::scheduler {

core::TransferRequest make_request(const config::Config& config, const config::Job& job) {
  core::TransferRequest r;
  r.url = job.url;
  r.dest = config.dest_path(job).string();
  r.sha256 = job.sha256;
  r.sha512 = job.options.sha512;
  r.expected_size = job.size;
  r.on_exists = config.output.on_exists;
  r.fsync = config.output.fsync;
  r.options = config.effective_options(job);
  return r;
}

RunSummary run_job_list(const config::Config& config, const RunOptions& options) {
  RunSummary summary;
  summary.strategy = std::string(config::to_string(config.strategy.kind));
  summary.jobs = config.jobs.size();

  uv::Loop loop;
  stats::Throughput throughput(summary.strategy);
  std::unordered_map<core::JobId, const config::Job*> job_of;

  Scheduler::Options sched_options;
  sched_options.per_host = config.limits.per_host;
  sched_options.on_finished = [&](const JobRecord& job) {
    if (job.state == JobState::kDone) {
      if (job.last.skipped) ++summary.skipped;
      return;
    }
    const config::Job* src = job_of.at(job.request.id);
    summary.failures.push_back(
        FailedJob{curl::redact_url(src->url), src->dest, src->origin, job.last, job.request.attempt});
  };

  uv::Timer log_timer(loop.get());
  uv::Timer finish_timer(loop.get());
  uv::Signal sigint(loop.get());
  uv::Signal sigterm(loop.get());
  bool draining = false;
  std::unique_ptr<Scheduler> scheduler;

  auto finish = [&] {
    if (draining) return;
    draining = true;
    scheduler->drain([&] {
      log_timer.close();
      finish_timer.close();
      sigint.close();
      sigterm.close();
    });
  };
  sched_options.on_idle = [&] {
    // Deferred: on_idle may fire from inside scheduler calls (add, cancel) that still use the scheduler.
    if (!draining) finish_timer.start(0, 0, finish);
  };

  scheduler = std::make_unique<Scheduler>(
      loop.get(),
      [&](strategy::Strategy::ResultCallback cb) {
        return strategy::make_strategy(config, loop.get(), std::move(cb));
      },
      std::move(sched_options));

  if (options.handle_signals) {
    auto on_signal = [&](int signum) {
      if (summary.interrupted) {
        spdlog::warn("second signal: exiting now");
        std::_Exit(130);
      }
      spdlog::warn("{}: cancelling the run (again to exit at once)", strsignal(signum));
      summary.interrupted = true;
      scheduler->cancel_all();
    };
    sigint.start(SIGINT, on_signal);
    sigterm.start(SIGTERM, on_signal);
  } else {
    sigint.close();
    sigterm.close();
  }

  spdlog::info("run: {} job(s), strategy={} concurrency={} output={}", config.jobs.size(), summary.strategy,
               config.strategy.concurrency, config.output.dir.string());
  for (const auto& job : config.jobs) {
    auto id = scheduler->add(make_request(config, job));
    job_of.emplace(id, &job);
  }
  if (scheduler->idle()) finish();
  auto interval = static_cast<std::uint64_t>(std::max<std::int64_t>(1, config.log.interval.count()));
  if (!draining) {
    log_timer.start(interval, interval, [&] { spdlog::info("{}", throughput.sample(scheduler->counters())); });
  }

  loop.run();

  auto counters = scheduler->counters();
  summary.done = counters.done;
  summary.failed = counters.failed + counters.cancelled;
  summary.bytes = counters.bytes;
  summary.wall_s = throughput.elapsed_s();
  spdlog::info("{}", throughput.total(counters));
  scheduler.reset();
  loop.close();

  auto usage = stats::resource_usage();
  summary.cpu_s = usage.cpu_s();
  summary.peak_rss_mib = usage.peak_rss_mib;
  double mib = static_cast<double>(summary.bytes) / (1024.0 * 1024.0);
  spdlog::info("summary: strategy={} jobs={} done={} skipped={} failed={} wall={:.3f}s files/s={:.1f} "
               "MiB={:.2f} MiB/s={:.2f} cpu={:.2f}s peak_rss={:.1f}MiB",
               summary.strategy, summary.jobs, summary.done, summary.skipped, summary.failed, summary.wall_s,
               summary.wall_s > 0 ? static_cast<double>(summary.done + summary.failed) / summary.wall_s : 0, mib,
               summary.wall_s > 0 ? mib / summary.wall_s : 0, summary.cpu_s, summary.peak_rss_mib);
  return summary;
}

}  // namespace fetchd::scheduler
