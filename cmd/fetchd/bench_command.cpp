// SPDX-License-Identifier: Apache-2.0
// `fetchd bench`: measures strategies against the embedded origin and prints a table per workload profile
// (and JSON, CSV and an SVG chart on request). Exit status: 0 every row measured and verified (refused rows
// included), 1 a row failed, 2 bad usage, 70 bench could not run (origin, temp dir, output files), 130
// interrupted.

#include <cstdint>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include "commands.hpp"
#include "fetchd/bench/bench.hpp"
#include "fetchd/bench/options.hpp"
#include "fetchd/bench/temp_dir.hpp"
#include "fetchd/core/units.hpp"
#include "logging.hpp"

namespace fetchd::cmd {

namespace {

constexpr int kExitInterrupted = 130;  // 128 + SIGINT, as a shell reports ^C

struct BenchArgs {
  std::string profile;
  std::int64_t files = 0;  // signed: CLI11 would wrap "-3" into a huge unsigned count
  std::string size;
  std::string latency;
  std::string concurrency;
  std::string strategies = "all";
  std::string via = "run";
  int workers = 0;
  std::string json;
  std::string csv;
  std::string plot;
  std::string dir;
  bool fsync = false;
  bool keep = false;
  // Which options were given (CLI11's count()), filled in by the callback.
  bool has_profile = false;
  bool has_files = false;
  bool has_size = false;
  bool has_latency = false;
  bool has_concurrency = false;
  bool has_workers = false;
};

int usage_error(const std::string& message) {
  std::cerr << "fetchd bench: " << message << "\n";
  return kExitUsage;
}

std::string strategy_names() {
  std::string out;
  for (const auto& v : bench::kBenchStrategies) {
    if (!out.empty()) out += ",";
    out += v.name;
  }
  return out;
}

// Checked last, as it may create the file: a long run must not end in "cannot write".
std::optional<std::string> check_writable(const std::string& option, const std::filesystem::path& path) {
  if (!path.empty() && !std::ofstream(path, std::ios::app)) return option + ": cannot write " + path.string();
  return std::nullopt;
}

int bench_main(const BenchArgs& args) {
  std::string error;
  bench::WorkloadArgs workload;
  workload.fsync = args.fsync;
  if (args.has_profile) workload.profile = args.profile;
  if (args.has_files) {
    if (args.files < 1) return usage_error("--files must be at least 1, got " + std::to_string(args.files));
    workload.files = static_cast<std::uint64_t>(args.files);
  }
  if (args.has_size) {
    auto size = core::parse_size(args.size, &error);
    if (!size) return usage_error("--size '" + args.size + "': " + error);
    workload.size = *size;
  }
  if (args.has_latency) {
    auto latency = core::parse_duration(args.latency, &error);
    if (!latency) return usage_error("--latency '" + args.latency + "': " + error);
    workload.latency = *latency;
  }
  if (args.has_concurrency) {
    auto concurrency = bench::parse_concurrency_list(args.concurrency, &error);
    if (!concurrency) return usage_error("--concurrency: " + error);
    workload.concurrency = std::move(*concurrency);
  }
  auto profiles = bench::plan_profiles(workload, &error);
  if (!profiles) return usage_error(error);
  auto strategies = bench::parse_strategy_list(args.strategies, &error);
  if (!strategies) return usage_error("--strategies: " + error);
  auto via = bench::parse_via(args.via, &error);
  if (!via) return usage_error("--via: " + error);
  if (args.has_workers && args.workers < 1) {
    return usage_error("--workers must be at least 1, got " + std::to_string(args.workers));
  }

  bench::BenchOptions options;
  options.profiles = std::move(*profiles);
  options.strategies = std::move(*strategies);
  options.workers = args.workers;
  options.via = *via;
  options.json_path = args.json;
  options.csv_path = args.csv;
  options.plot_path = args.plot;
  options.keep = args.keep;
  options.dir = args.dir.empty() ? bench::default_bench_dir() : std::filesystem::path(args.dir);
  if (!std::filesystem::is_directory(options.dir)) {
    return usage_error("--dir: " + options.dir.string() + " is not a directory");
  }
  if (auto problem = bench::validate(options)) return usage_error(*problem);
  // Rows run one after the other and each removes its files: the largest profile must fit.
  for (const auto& profile : options.profiles) {
    if (auto problem = bench::check_disk_space(profile.workload, options.dir)) return usage_error(*problem);
  }
  for (auto [option, path] : {std::pair{"--json", options.json_path}, std::pair{"--csv", options.csv_path},
                              std::pair{"--plot", options.plot_path}}) {
    if (auto problem = check_writable(option, path)) return usage_error(*problem);
  }

  setup_logging("info");
  auto result = bench::run_bench(options, std::cout);
  if (result.interrupted) return kExitInterrupted;
  if (!result.error.empty()) return kExitSoftware;
  return result.ok() ? kExitOk : kExitFailed;
}

}  // namespace

void register_bench(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<BenchArgs>();
  auto* sub = app.add_subcommand(
      "bench",
      "Measure strategies: download generated workloads from the embedded origin, verify every file. By "
      "default "
      "both profiles (latency: 10000 x 4KiB at 25ms, concurrency 1000; cpu: 16 x 64MiB at 0ms with SHA-256, "
      "concurrency 16) with every strategy");
  auto* profile = sub->add_option("--profile", args->profile,
                                  "Workload profiles: latency, cpu, or all (default: all; not with "
                                  "--files/--size/--latency)");
  auto* files = sub->add_option("--files", args->files, "Custom workload: files per row (default 10000)");
  auto* size = sub->add_option("--size", args->size, "Custom workload: size of each file (default 4KiB)");
  auto* latency = sub->add_option("--latency", args->latency,
                                  "Custom workload: origin's delay per request (default 25ms)");
  auto* concurrency = sub->add_option(
      "--concurrency", args->concurrency,
      "Comma-separated concurrency levels, one row each, for every profile (default: the profile's own)");
  sub->add_option("--strategies", args->strategies,
                  "Comma-separated strategies, or 'all' (" + strategy_names() + ")")
      ->capture_default_str();
  sub->add_option(
         "--via", args->via,
         "How each row runs fetchd: run (`fetchd run` on a job list) or serve (`fetchd serve` with its "
         "job store, the jobs submitted over its control socket: the daemon's real path; wall time from "
         "the first submit byte to the last finished job)")
      ->capture_default_str();
  auto* workers = sub->add_option("--workers", args->workers,
                                  "Worker processes of process-pool rows (default: one per CPU)");
  sub->add_option("--json", args->json, "Also write the rows as a JSON array to this file");
  sub->add_option("--csv", args->csv, "Also write the rows as CSV to this file");
  sub->add_option("--plot", args->plot,
                  "Also draw files/s and peak memory against concurrency as SVG to this file");
  sub->add_flag("--fsync", args->fsync,
                "Flush every file to disk (off: bench measures the strategies, not the disk)");
  sub->add_option("--dir", args->dir,
                  "Where rows download to (default: $TMPDIR if set, else /dev/shm when writable, else /tmp)");
  sub->add_flag("--keep", args->keep, "Keep each row's temp dir (job list, summary, files) for inspection");
  sub->callback([=, &exit_code] {
    args->has_profile = profile->count() > 0;
    args->has_files = files->count() > 0;
    args->has_size = size->count() > 0;
    args->has_latency = latency->count() > 0;
    args->has_concurrency = concurrency->count() > 0;
    args->has_workers = workers->count() > 0;
    exit_code = bench_main(*args);
  });
}

}  // namespace fetchd::cmd
