// SPDX-License-Identifier: Apache-2.0
#pragma once
// What `fetchd bench` may be asked to measure: the strategy names this build offers, and the parsers for the
// comma-separated lists given on the command line. Pure functions, no I/O.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fetchd::bench {

// Every strategy fetchd knows by name (design.md §1), whether or not this build has it yet.
inline constexpr std::string_view kKnownStrategies[] = {"event-loop", "curl-multi", "thread-pool",
                                                        "process-pool"};

// The strategies this build can run, in the order `--strategies all` measures them. The one place to extend
// when a strategy lands.
std::span<const std::string_view> available_strategies();

// Guard rails: beyond these a run is a typo, not a benchmark.
inline constexpr std::uint64_t kMaxFiles = 10'000'000;
inline constexpr int kMaxConcurrency = 100'000;

// "a, b,c" -> {"a","b","c"}; surrounding blanks trimmed. Empty items (",,", trailing comma) are an error.
std::optional<std::vector<std::string>> split_list(std::string_view text, std::string* error = nullptr);

// "1,10,1000" -> {1,10,1000}; each an integer in [1, kMaxConcurrency]. Order and repeats are kept.
std::optional<std::vector<int>> parse_concurrency_list(std::string_view text, std::string* error = nullptr);

// "all" or a list of names. Unknown names and names this build lacks are refused, each with its own message.
std::optional<std::vector<std::string>> parse_strategy_list(std::string_view text,
                                                            std::string* error = nullptr);

}  // namespace fetchd::bench
