// SPDX-License-Identifier: Apache-2.0
#include "fetchd/bench/options.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

namespace fetchd::bench {

namespace {

// Only event-loop exists so far; each strategy's issue appends its name here.
constexpr std::string_view kAvailable[] = {"event-loop"};

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
    return std::vector<std::string>(kAvailable, kAvailable + std::size(kAvailable));
  }
  const auto available = available_strategies();
  for (const auto& name : *items) {
    if (name == "all") {
      set_error(error, "'all' cannot be combined with other strategy names");
      return std::nullopt;
    }
    if (std::ranges::find(kKnownStrategies, name) == std::end(kKnownStrategies)) {
      set_error(error, fmt::format("unknown strategy '{}' (known: {})", name, join(kKnownStrategies)));
      return std::nullopt;
    }
    if (std::ranges::find(available, name) == available.end()) {
      set_error(error, fmt::format("strategy '{}' is not available in this build (available: {})", name,
                                   join(available)));
      return std::nullopt;
    }
  }
  return items;
}

}  // namespace fetchd::bench
