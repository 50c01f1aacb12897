// SPDX-License-Identifier: Apache-2.0
#pragma once
// A job's own overrides of the config's defaults (the per-job keys of docs/configuration.md, jobs), the same
// whether the job came from the YAML job list or the control socket. In core, not config, so that the job store
// can keep them without depending on config. The JSON form uses the keys' names and value syntax; it is what
// the store keeps and what status/list show. Plain data; any thread.

#include <chrono>
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>

#include "fetchd/core/transfer_types.hpp"

namespace fetchd::core {

// A job's own retry keys; unset ones come from defaults.
struct RetryOverrides {
  std::optional<int> retries;
  std::optional<std::chrono::milliseconds> initial;
  std::optional<std::chrono::milliseconds> max;
  std::optional<double> multiplier;
  std::optional<Jitter> jitter;
  std::optional<std::chrono::milliseconds> retry_after_max;
  std::optional<RetryOn> retry_on;

  void apply_to(RetryPolicy& policy) const;
  bool operator==(const RetryOverrides&) const = default;
};

struct JobOptions {
  std::optional<std::string> sha512;  // lowercase hex
  RetryOverrides retry;
  std::optional<std::uint64_t> max_size;
  std::optional<std::uint64_t> rate;
  std::optional<std::chrono::milliseconds> timeout;

  bool empty() const { return *this == JobOptions{}; }
  // Merges the overrides over `options` (sha512 is not a transfer option: see TransferRequest).
  void apply_to(TransferOptions& options) const;
  bool operator==(const JobOptions&) const = default;
};

// Only the keys that are set: {"retries":1,"backoff":{"initial":"1s"},"retry_on":["connect",503],
// "max_size":1048576,"timeout":"30s",...}. Durations as exact human text, sizes as numbers of bytes.
nlohmann::json to_json(const JobOptions& options);
// The inverse of to_json; nullopt with *error set when `j` is not what to_json writes.
std::optional<JobOptions> job_options_from_json(const nlohmann::json& j, std::string* error);

}  // namespace fetchd::core
