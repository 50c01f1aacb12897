// SPDX-License-Identifier: Apache-2.0
// `fetchd bench`: measures strategies against the embedded origin and prints a table (and JSON with --json).
// Exit status: 0 every row measured and verified, 1 a row failed, 2 bad usage, 70 bench could not run
// (origin, temp dir, JSON file), 130 interrupted.

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
  std::int64_t files = 10'000;  // signed: CLI11 would wrap "-3" into a huge unsigned count
  std::string size = "4KiB";
  std::string latency = "25ms";
  std::string concurrency = "1000";
  std::string strategies = "all";
  std::string json;
  std::string dir;
  bool fsync = false;
  bool keep = false;
};

int usage_error(const std::string& message) {
  std::cerr << "fetchd bench: " << message << "\n";
  return kExitUsage;
}

std::string available_list() {
  std::string out;
  for (auto name : bench::available_strategies()) {
    if (!out.empty()) out += ",";
    out += name;
  }
  return out;
}

int bench_main(const BenchArgs& args) {
  bench::BenchOptions options;
  std::string error;
  auto size = core::parse_size(args.size, &error);
  if (!size) return usage_error("--size '" + args.size + "': " + error);
  auto latency = core::parse_duration(args.latency, &error);
  if (!latency) return usage_error("--latency '" + args.latency + "': " + error);
  auto concurrency = bench::parse_concurrency_list(args.concurrency, &error);
  if (!concurrency) return usage_error("--concurrency: " + error);
  auto strategies = bench::parse_strategy_list(args.strategies, &error);
  if (!strategies) return usage_error("--strategies: " + error);

  if (args.files < 1) return usage_error("--files must be at least 1, got " + std::to_string(args.files));

  options.workload = {static_cast<std::uint64_t>(args.files), *size, *latency, args.fsync};
  options.concurrency = std::move(*concurrency);
  options.strategies = std::move(*strategies);
  options.json_path = args.json;
  options.keep = args.keep;
  options.dir = args.dir.empty() ? bench::default_bench_dir() : std::filesystem::path(args.dir);
  if (!std::filesystem::is_directory(options.dir)) {
    return usage_error("--dir: " + options.dir.string() + " is not a directory");
  }
  if (auto problem = bench::validate(options)) return usage_error(*problem);
  if (auto problem = bench::check_disk_space(options.workload, options.dir)) {
    return usage_error(*problem);
  }

  // Checked last, as it may create the file: a long run must not end in "cannot write".
  if (!options.json_path.empty() && !std::ofstream(options.json_path, std::ios::app)) {
    return usage_error("--json: cannot write " + options.json_path.string());
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
      "Measure strategies: download a generated workload from the embedded origin, verify every file");
  sub->add_option("--files", args->files, "Files per row")->capture_default_str();
  sub->add_option("--size", args->size, "Size of each file (4096, 4KiB, 1MiB, ...)")->capture_default_str();
  sub->add_option("--latency", args->latency, "Origin's delay per request (0ms, 25ms, 1s, ...)")
      ->capture_default_str();
  sub->add_option("--concurrency", args->concurrency, "Comma-separated concurrency levels, one row each")
      ->capture_default_str();
  sub->add_option("--strategies", args->strategies,
                  "Comma-separated strategies, or 'all' (available: " + available_list() + ")")
      ->capture_default_str();
  sub->add_option("--json", args->json, "Also write the rows as a JSON array to this file");
  sub->add_flag("--fsync", args->fsync,
                "Flush every file to disk (off: bench measures the strategies, not the disk)");
  sub->add_option("--dir", args->dir,
                  "Where rows download to (default: $TMPDIR if set, else /dev/shm when writable, else /tmp)");
  sub->add_flag("--keep", args->keep, "Keep each row's temp dir (job list, summary, files) for inspection");
  sub->callback([args, &exit_code] { exit_code = bench_main(*args); });
}

}  // namespace fetchd::cmd
