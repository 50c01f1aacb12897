// SPDX-License-Identifier: Apache-2.0
#include "fetchd/bench/options.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

namespace fetchd::bench {

namespace {

constexpr std::string_view kAvailable[] = {"event-loop", "curl-multi", "thread-pool", "process-pool"};
constexpr std::uint64_t kMiB = 1024 * 1024;
constexpr int kCustomConcurrency = 1000;

std::string_view trim(std::string_view s) {
  constexpr std::string_view kBlanks = " \t";
  auto first = s.find_first_not_of(kBlanks);
  if (first == std::string_view::npos) return {};
  auto last = s.find_last_not_of(kBlanks);
  return s.substr(first, last - first + 1);
}

bool set_error(std::string* error, std::string message) {
  if (error != nullptr) *error = std::move(message);
  return false;
}

template <typename Range>
std::string join(const Range& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += ", ";
    out += item;
  }
  return out;
}

}  // namespace

std::span<const std::string_view> available_strategies() {
  return kAvailable;
}

std::optional<std::vector<std::string>> split_list(std::string_view text, std::string* error) {
  std::vector<std::string> items;
  if (trim(text).empty()) {
    set_error(error, "empty list");
    return std::nullopt;
  }
  std::size_t start = 0;
  while (true) {
    auto comma = text.find(',', start);
    auto item =
        trim(text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    if (item.empty()) {
      set_error(error, fmt::format("empty item in list '{}'", text));
      return std::nullopt;
    }
    items.emplace_back(item);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return items;
}

std::optional<std::vector<int>> parse_concurrency_list(std::string_view text, std::string* error) {
  auto items = split_list(text, error);
  if (!items) return std::nullopt;
  std::vector<int> values;
  for (const auto& item : *items) {
    int value = 0;
    auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), value);
    if (ec == std::errc::result_out_of_range || (ec == std::errc() && value > kMaxConcurrency)) {
      set_error(error, fmt::format("concurrency '{}' is too large (at most {})", item, kMaxConcurrency));
      return std::nullopt;
    }
    if (ec != std::errc() || end != item.data() + item.size()) {
      set_error(error, fmt::format("concurrency '{}' is not a whole number", item));
      return std::nullopt;
    }
    if (value < 1) {
      set_error(error, fmt::format("concurrency must be at least 1, got {}", value));
      return std::nullopt;
    }
    values.push_back(value);
  }
  return values;
}

std::optional<std::vector<std::string>> parse_strategy_list(std::string_view text, std::string* error) {
  auto items = split_list(text, error);
  if (!items) return std::nullopt;
  if (items->size() == 1 && items->front() == "all") {
    std::vector<std::string> all;
    for (const auto& v : kBenchStrategies) all.emplace_back(v.name);
    return all;
  }
  for (const auto& name : *items) {
    if (name == "all") {
      set_error(error, "'all' cannot be combined with other strategy names");
      return std::nullopt;
    }
    if (find_strategy(name) == nullptr) {
      std::vector<std::string_view> names;
      for (const auto& v : kBenchStrategies) names.push_back(v.name);
      set_error(error, fmt::format("unknown strategy '{}' (known: {})", name, join(names)));
      return std::nullopt;
    }
  }
  return items;
}

const StrategyVariant* find_strategy(std::string_view name) {
  auto it = std::ranges::find(kBenchStrategies, name, &StrategyVariant::name);
  return it == std::end(kBenchStrategies) ? nullptr : &*it;
}

int workers_for(const StrategyVariant& variant, int concurrency, int workers_option, int cpus) {
  switch (variant.workers) {
    case WorkersRule::kNone:
      return 0;
    case WorkersRule::kConcurrency:
      return concurrency;
    case WorkersRule::kOption:
      break;
  }
  const int wanted = workers_option > 0 ? workers_option : std::max(cpus, 1);
  return std::min(wanted, concurrency);
}

std::string_view to_string(Via via) {
  return via == Via::kServe ? "serve" : "run";
}

std::optional<Via> parse_via(std::string_view text, std::string* error) {
  const auto name = trim(text);
  if (name == "run") return Via::kRun;
  if (name == "serve") return Via::kServe;
  set_error(error, fmt::format("unknown way to run fetchd '{}' (known: run, serve)", name));
  return std::nullopt;
}

Profile latency_profile() {
  return {"latency",
          "many small files behind a per-request latency: concurrency is what matters",
          WorkloadSpec{.files = 10'000, .size = 4096, .latency = std::chrono::milliseconds(25)},
          {1000}};
}

Profile cpu_profile() {
  return {"cpu",
          "a few large files verified by SHA-256, no latency: CPU per byte is what matters",
          WorkloadSpec{.files = 16, .size = 64 * kMiB, .latency = std::chrono::milliseconds(0)},
          {16}};
}

std::optional<std::vector<Profile>> parse_profile_list(std::string_view text, std::string* error) {
  auto items = split_list(text, error);
  if (!items) return std::nullopt;
  std::vector<Profile> profiles;
  for (const auto& name : *items) {
    if (name == "all") {
      if (items->size() != 1) {
        set_error(error, "'all' cannot be combined with other profile names");
        return std::nullopt;
      }
      return std::vector<Profile>{latency_profile(), cpu_profile()};
    }
    if (name == "latency") {
      profiles.push_back(latency_profile());
    } else if (name == "cpu") {
      profiles.push_back(cpu_profile());
    } else {
      set_error(error, fmt::format("unknown profile '{}' (known: latency, cpu, all)", name));
      return std::nullopt;
    }
    if (std::ranges::count(*items, name) > 1) {
      set_error(error, fmt::format("profile '{}' is named twice", name));
      return std::nullopt;
    }
  }
  return profiles;
}

std::optional<std::vector<Profile>> plan_profiles(const WorkloadArgs& args, std::string* error) {
  const bool custom = args.files || args.size || args.latency;
  std::vector<Profile> profiles;
  if (custom) {
    if (args.profile) {
      set_error(
          error,
          "--profile cannot be combined with --files, --size or --latency (they define a custom workload)");
      return std::nullopt;
    }
    Profile p = latency_profile();
    p.name = "custom";
    p.what = "the workload given by --files, --size and --latency";
    if (args.files) p.workload.files = *args.files;
    if (args.size) p.workload.size = *args.size;
    if (args.latency) p.workload.latency = *args.latency;
    p.concurrency = {kCustomConcurrency};
    profiles.push_back(std::move(p));
  } else {
    auto parsed = parse_profile_list(args.profile.value_or("all"), error);
    if (!parsed) return std::nullopt;
    profiles = std::move(*parsed);
  }
  for (auto& p : profiles) {
    p.workload.fsync = args.fsync;
    if (args.concurrency) p.concurrency = *args.concurrency;
  }
  return profiles;
}

}  // namespace fetchd::bench
