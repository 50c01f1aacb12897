// SPDX-License-Identifier: Apache-2.0
// The Config value types: names of enum values, error formatting and header merging. Loading is in
// config_loader.cpp, printing in config_dump.cpp.
#include "fetchd/config/config.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <utility>

#include "text_util.hpp"

namespace fetchd::config {
namespace {

constexpr std::array<std::pair<StrategyKind, std::string_view>, 4> kStrategyNames{{
    {StrategyKind::kEventLoop, "event-loop"},
    {StrategyKind::kCurlMulti, "curl-multi"},
    {StrategyKind::kThreadPool, "thread-pool"},
    {StrategyKind::kProcessPool, "process-pool"},
}};

std::string join_errors(const std::vector<ConfigError>& errors) {
  std::string out;
  for (const auto& e : errors) {
    if (!out.empty()) out += '\n';
    out += e.to_string();
  }
  return out.empty() ? std::string("invalid configuration") : out;
}

}  // namespace

std::string_view to_string(StrategyKind k) {
  for (const auto& [kind, name] : kStrategyNames) {
    if (kind == k) return name;
  }
  return "?";
}

std::optional<StrategyKind> strategy_kind_from_string(std::string_view s) {
  for (const auto& [kind, name] : kStrategyNames) {
    if (name == s) return kind;
  }
  return std::nullopt;
}

std::string_view to_string(Synchronous s) {
  return s == Synchronous::kFull ? "full" : "normal";
}

std::string_view to_string(InnerKind k) {
  switch (k) {
    case InnerKind::kEventLoop:
      return "event-loop";
    case InnerKind::kBlocking:
      return "blocking";
  }
  return "?";
}

std::string ConfigError::to_string() const {
  std::string out = file;
  if (line > 0) {
    out += fmt::format(":{}", line);
    if (column > 0) out += fmt::format(":{}", column);
  }
  out += ": ";
  if (!key.empty()) {
    out += key;
    out += ": ";
  }
  out += message;
  return out;
}

ConfigErrors::ConfigErrors(std::vector<ConfigError> errors)
    : std::runtime_error(join_errors(errors)), errors_(std::move(errors)) {}

core::TransferOptions Config::effective_options(const core::JobOptions& options,
                                                const core::Headers& headers) const {
  core::TransferOptions out = defaults;
  options.apply_to(out);
  for (const auto& [name, value] : headers) {
    auto same = std::find_if(out.headers.begin(), out.headers.end(),
                             [&n = name](const auto& h) { return detail::iequals(h.first, n); });
    if (same != out.headers.end()) {
      // The job's spelling of the name wins along with its value.
      *same = {name, value};
    } else {
      out.headers.emplace_back(name, value);
    }
  }
  return out;
}

}  // namespace fetchd::config
