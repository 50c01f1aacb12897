// SPDX-License-Identifier: Apache-2.0
#pragma once
// Helpers for the config tests: a fixture that writes config files into its own temp dir, loads them, and
// collects the errors; and a Config comparison that ignores where things were defined.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "fetchd/config/config.hpp"
#include "temp_dir.hpp"

namespace fetchd::config {

inline bool same_options(const core::TransferOptions& a, const core::TransferOptions& b) {
  return a.timeout == b.timeout && a.connect_timeout == b.connect_timeout &&
         a.low_speed_limit == b.low_speed_limit && a.low_speed_time == b.low_speed_time &&
         a.max_redirects == b.max_redirects && a.user_agent == b.user_agent && a.headers == b.headers &&
         a.max_size == b.max_size && a.rate == b.rate && a.ca_file == b.ca_file && a.ca_path == b.ca_path &&
         a.deny_private_addresses == b.deny_private_addresses && a.retry == b.retry;
}

// Equal in meaning: `source` and each job's `origin` say where it came from, which a dump changes on purpose.
inline ::testing::AssertionResult same_config(const Config& a, const Config& b) {
  if (!(a.strategy == b.strategy)) return ::testing::AssertionFailure() << "strategy differs";
  if (!(a.output == b.output)) {
    return ::testing::AssertionFailure() << "output differs: " << a.output.dir << " vs " << b.output.dir;
  }
  if (!same_options(a.defaults, b.defaults)) return ::testing::AssertionFailure() << "defaults differ";
  if (!(a.limits == b.limits)) return ::testing::AssertionFailure() << "limits differ";
  if (!(a.security == b.security)) return ::testing::AssertionFailure() << "security differs";
  if (!(a.log == b.log)) return ::testing::AssertionFailure() << "log differs";
  if (!(a.control == b.control)) return ::testing::AssertionFailure() << "control differs";
  if (!(a.state == b.state)) return ::testing::AssertionFailure() << "state differs";
  if (!(a.shutdown == b.shutdown)) return ::testing::AssertionFailure() << "shutdown differs";
  if (a.jobs.size() != b.jobs.size()) {
    return ::testing::AssertionFailure() << "job count " << a.jobs.size() << " vs " << b.jobs.size();
  }
  for (std::size_t i = 0; i < a.jobs.size(); ++i) {
    const Job& x = a.jobs[i];
    const Job& y = b.jobs[i];
    core::RetryPolicy xr = a.defaults.retry, yr = b.defaults.retry;
    x.options.retry.apply_to(xr);
    y.options.retry.apply_to(yr);
    const core::JobOptions& xo = x.options;
    const core::JobOptions& yo = y.options;
    if (x.url != y.url || x.dest != y.dest || x.sha256 != y.sha256 || xo.sha512 != yo.sha512 || x.size != y.size ||
        x.headers != y.headers || xo.max_size != yo.max_size || xo.rate != yo.rate || xo.timeout != yo.timeout ||
        !(xr == yr)) {
      return ::testing::AssertionFailure() << "jobs[" << i << "] differs: " << x.url << " -> " << x.dest
                                           << " vs " << y.url << " -> " << y.dest;
    }
  }
  return ::testing::AssertionSuccess();
}

class ConfigTest : public ::testing::Test {
 protected:
  // Writes `text` as the config file and loads it.
  Config load(const std::string& text, const std::string& file = "fetchd.yaml") {
    return load_config(dir_.write(file, text));
  }

  // Writes `text` as the config file, expects loading to fail, and returns every error.
  std::vector<ConfigError> errors(const std::string& text, const std::string& file = "fetchd.yaml") {
    auto path = dir_.write(file, text);
    try {
      load_config(path);
    } catch (const ConfigErrors& e) {
      return e.errors();
    }
    ADD_FAILURE() << "expected the config to be rejected:\n" << text;
    return {};
  }

  // The single error `text` produces, checked to name `key` and `line` and to contain `fragment`.
  ::testing::AssertionResult has_error(const std::vector<ConfigError>& errs, const std::string& key, int line,
                                       const std::string& fragment) {
    for (const auto& e : errs) {
      if (e.key == key && e.line == line && e.message.find(fragment) != std::string::npos) {
        if (e.column <= 0) return ::testing::AssertionFailure() << "no column in " << e.to_string();
        return ::testing::AssertionSuccess();
      }
    }
    auto failure = ::testing::AssertionFailure();
    failure << "no error with key '" << key << "', line " << line << " and '" << fragment << "'; got:";
    for (const auto& e : errs) failure << "\n  " << e.to_string();
    return failure;
  }

  ::testing::AssertionResult rejected_with(const std::string& text, const std::string& key, int line,
                                           const std::string& fragment) {
    return has_error(errors(text), key, line, fragment);
  }

  fetchd::testing::TempDir dir_;
};

}  // namespace fetchd::config
