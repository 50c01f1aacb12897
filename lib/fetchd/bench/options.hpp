// SPDX-License-Identifier: Apache-2.0
#pragma once
// What `fetchd bench` may be asked to measure: the strategies (fetchd's four, plus bench-only variants of
// them), the workload profiles, and the parsers for the comma-separated lists given on the command line. Pure
// functions, no I/O.

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fetchd/bench/workload.hpp"

namespace fetchd::bench {

// Every strategy fetchd knows by name (design.md §1).
inline constexpr std::string_view kKnownStrategies[] = {"event-loop", "curl-multi", "thread-pool",
                                                        "process-pool"};

// The fetchd strategies bench measures, in the order `--strategies all` measures them. Whether the binary
// under test really has each one is asked at run time (bench probes it), so that a build that lacks one shows
// "refused: unavailable" in that row instead of failing.
std::span<const std::string_view> available_strategies();

// How a process pool's worker count is chosen for a row.
enum class WorkersRule {
  kNone,         // not a process pool
  kOption,       // --workers N, default: the number of CPUs
  kConcurrency,  // one worker process per transfer
};

// A row's strategy as bench names it: a fetchd strategy kind plus the settings that make a variant of it.
struct StrategyVariant {
  std::string_view name;   // in --strategies, the table, JSON and CSV
  std::string_view kind;   // strategy.kind of the job list (and `fetchd run --strategy`)
  std::string_view inner;  // strategy.inner for a process pool; empty: the key is left out
  WorkersRule workers = WorkersRule::kNone;
};

// The four strategies, and `process-pool-blocking`: the classic multiprocessing design, one `fetchd worker`
// process per transfer each running blocking transfers (kind process-pool, inner blocking, workers =
// concurrency). It exists in bench only, to show what the event-driven designs save.
inline constexpr StrategyVariant kBenchStrategies[] = {
    {"event-loop", "event-loop", "", WorkersRule::kNone},
    {"curl-multi", "curl-multi", "", WorkersRule::kNone},
    {"thread-pool", "thread-pool", "", WorkersRule::kNone},
    {"process-pool", "process-pool", "event-loop", WorkersRule::kOption},
    {"process-pool-blocking", "process-pool", "blocking", WorkersRule::kConcurrency},
};

// The variant named `name`, or nullptr.
const StrategyVariant* find_strategy(std::string_view name);

// The worker processes of a row: 0 for a strategy without processes. `workers_option` is --workers (0: not
// given, use `cpus`). A pool never has more workers than transfers: the rest would sit idle.
int workers_for(const StrategyVariant& variant, int concurrency, int workers_option, int cpus);

// Guard rails: beyond these a run is a typo, not a benchmark.
inline constexpr std::uint64_t kMaxFiles = 10'000'000;
inline constexpr int kMaxConcurrency = 100'000;

// "a, b,c" -> {"a","b","c"}; surrounding blanks trimmed. Empty items (",,", trailing comma) are an error.
std::optional<std::vector<std::string>> split_list(std::string_view text, std::string* error = nullptr);

// "1,10,1000" -> {1,10,1000}; each an integer in [1, kMaxConcurrency]. Order and repeats are kept.
std::optional<std::vector<int>> parse_concurrency_list(std::string_view text, std::string* error = nullptr);

// "all" (every name of kBenchStrategies) or a list of names from kBenchStrategies. Unknown names are refused.
std::optional<std::vector<std::string>> parse_strategy_list(std::string_view text,
                                                            std::string* error = nullptr);

// How a row drives fetchd: `fetchd run` on a job list (the default), or `fetchd serve` with the jobs
// submitted over its control socket, the product's real path.
enum class Via { kRun, kServe };

std::string_view to_string(Via via);  // "run", "serve"

// "run" or "serve"; anything else is refused with a message naming both.
std::optional<Via> parse_via(std::string_view text, std::string* error = nullptr);

// A workload profile: one table section of the report, measuring one thing.
struct Profile {
  std::string name;  // "latency", "cpu", or "custom" for --files/--size/--latency
  std::string what;  // one line on what the profile measures, printed above its table
  WorkloadSpec workload;
  std::vector<int> concurrency;  // the rows of each strategy
};

// Many small files behind a per-request latency: transfers spend their time waiting, so how many a strategy
// keeps in flight, and at what cost, is what matters.
Profile latency_profile();
// A few large files at no latency, verified by SHA-256 as they arrive: the cost per byte (copies, hashing,
// writing) is what matters. Its concurrency, 16, is the file count: every file is in flight at once, so no
// strategy waits on scheduling, and it stays under process-pool-blocking's process cap so all five run.
Profile cpu_profile();

// "latency", "cpu", "latency,cpu" or "all" (both, in that order).
std::optional<std::vector<Profile>> parse_profile_list(std::string_view text, std::string* error = nullptr);

// The workload part of the command line, as given: std::nullopt for an option that was not given.
struct WorkloadArgs {
  std::optional<std::string> profile;
  std::optional<std::uint64_t> files;
  std::optional<std::uint64_t> size;
  std::optional<std::chrono::milliseconds> latency;
  std::optional<std::vector<int>> concurrency;  // --concurrency, for every profile
  bool fsync = false;
};

// The profiles to run: both by default; those of --profile; or, when any of --files/--size/--latency is
// given, one "custom" profile (what is not given comes from the latency profile, concurrency 1000). --profile
// together with --files/--size/--latency is an error.
std::optional<std::vector<Profile>> plan_profiles(const WorkloadArgs& args, std::string* error = nullptr);

}  // namespace fetchd::bench
