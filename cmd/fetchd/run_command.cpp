// SPDX-License-Identifier: Apache-2.0
// `fetchd run --config FILE`: download every job of a YAML job list, then exit 0 (all ok), 1 (some failed),
// 78 (bad config) or 2 (bad usage).

#include <sys/resource.h>

#include <cstdio>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "commands.hpp"
#include "fetchd/config/config.hpp"
#include "fetchd/curl/curl.hpp"
#include "fetchd/scheduler/run.hpp"
#include "logging.hpp"

namespace fetchd::cmd {

namespace {

struct RunArgs {
  std::string config_path;
  std::string summary_json;
  std::string strategy;
  int concurrency = 0;
};

int run(const RunArgs& args) {
  config::Config cfg;
  try {
    cfg = config::load_config(args.config_path);
  } catch (const config::ConfigErrors& e) {
    for (const auto& err : e.errors()) std::cerr << err.to_string() << "\n";
    return kExitConfig;
  }
  if (!args.strategy.empty()) {
    auto kind = config::strategy_kind_from_string(args.strategy);
    if (!kind) {
      std::cerr << "fetchd run: unknown strategy '" << args.strategy << "'\n";
      return kExitUsage;
    }
    cfg.strategy.kind = *kind;
  }
  if (args.concurrency > 0) cfg.strategy.concurrency = args.concurrency;
  setup_logging(cfg.log.level);
  curl::set_redacted_query(cfg.security.redact_query);
  raise_fd_limit(cfg.strategy.concurrency);

  scheduler::RunOptions options;
  options.handle_signals = true;
  scheduler::RunSummary summary;
  try {
    summary = scheduler::run_job_list(cfg, options);
  } catch (const std::exception& e) {
    spdlog::critical("run: {}", e.what());
    return kExitSoftware;
  }

  for (const auto& f : summary.failures) {
    spdlog::error("failed: {} -> {} ({}): {} [{} after {} attempt(s)]", f.url, f.dest, f.origin, f.result.message,
                  core::to_string(f.result.category), f.attempts);
  }
  if (!args.summary_json.empty()) {
    nlohmann::json j = {{"strategy", summary.strategy},  {"jobs", summary.jobs},
                        {"done", summary.done},          {"skipped", summary.skipped},
                        {"failed", summary.failed},      {"bytes", summary.bytes},
                        {"wall_s", summary.wall_s},      {"cpu_s", summary.cpu_s},
                        {"peak_rss_mib", summary.peak_rss_mib}, {"interrupted", summary.interrupted}};
    auto& failures = j["failures"] = nlohmann::json::array();
    for (const auto& f : summary.failures) {
      failures.push_back({{"url", f.url},
                          {"dest", f.dest},
                          {"category", std::string(core::to_string(f.result.category))},
                          {"message", f.result.message},
                          {"attempts", f.attempts}});
    }
    std::ofstream out(args.summary_json);
    out << j.dump(2) << "\n";
    if (!out) {
      spdlog::error("cannot write {}", args.summary_json);
      return kExitSoftware;
    }
  }
  return summary.failed == 0 && !summary.interrupted ? kExitOk : kExitFailed;
}

}  // namespace

void register_run(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<RunArgs>();
  auto* sub = app.add_subcommand("run", "Download every job of a YAML job list, then exit");
  sub->add_option("-c,--config", args->config_path, "YAML job list")->required();
  sub->add_option("--strategy", args->strategy, "Override strategy.kind");
  sub->add_option("--concurrency", args->concurrency, "Override strategy.concurrency")
      ->check(CLI::PositiveNumber);
  sub->add_option("--summary-json", args->summary_json, "Write the run's totals and failures as JSON");
  sub->callback([args, &exit_code] { exit_code = run(*args); });
}

}  // namespace fetchd::cmd
