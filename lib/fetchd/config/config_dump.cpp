// SPDX-License-Identifier: Apache-2.0
// Printing: a Config as normalized YAML that loads back to an equal Config (with show_secrets).
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <stdexcept>

#include "fetchd/config/config.hpp"
#include "fetchd/core/text.hpp"
#include "fetchd/core/units.hpp"
#include "fetchd/curl/curl.hpp"
#include "text_util.hpp"

namespace fetchd::config {
namespace {

constexpr const char* kRedacted = "<redacted>";

// format_size rounds sizes that are not a whole number of units ("1.5KiB" for 1500); such a size is printed
// in bytes so that loading the output gives the same number back.
std::string exact_size(std::uint64_t bytes) {
  std::string human = core::format_size(bytes);
  if (core::parse_size(human) == bytes) return human;
  return std::to_string(bytes);
}

std::string exact_duration(std::chrono::milliseconds d) {
  std::string human = core::format_duration(d);
  if (core::parse_duration(human) == d) return human;
  return std::to_string(d.count()) + "ms";
}

void emit_headers(YAML::Emitter& out, const core::Headers& headers, bool show_secrets) {
  out << YAML::BeginMap;
  for (const auto& [name, value] : headers) {
    out << YAML::Key << name << YAML::Value << YAML::DoubleQuoted << (show_secrets ? value : kRedacted);
  }
  out << YAML::EndMap;
}

// Userinfo shown as <redacted> (so the reader sees there is some), query values as in logs (security.redact_query).
std::string shown_url(const std::string& url, const Config& config, bool show_secrets) {
  if (show_secrets) return url;
  return curl::redact_query(detail::replace_userinfo(url, kRedacted), config.security.redact_query);
}

// Comments must stay on one line whatever the path contains.
std::string one_line(std::string s) {
  for (auto& c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return s;
}

void emit_retry(YAML::Emitter& out, const core::RetryPolicy& r) {
  out << YAML::Key << "retries" << YAML::Value << r.retries;
  out << YAML::Key << "backoff" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "initial" << YAML::Value << exact_duration(r.initial);
  out << YAML::Key << "max" << YAML::Value << exact_duration(r.max);
  out << YAML::Key << "multiplier" << YAML::Value << fmt::format("{}", r.multiplier);
  out << YAML::Key << "jitter" << YAML::Value << (r.jitter == core::Jitter::kFull ? "full" : "none");
  out << YAML::EndMap;
  out << YAML::Key << "retry_on" << YAML::Value << YAML::Flow << YAML::BeginSeq;
  if (r.retry_on.connect) out << "connect";
  if (r.retry_on.timeout) out << "timeout";
  if (r.retry_on.partial) out << "partial";
  if (r.retry_on.tls) out << "tls";
  for (int status : r.retry_on.statuses) out << status;
  out << YAML::EndSeq;
  out << YAML::Key << "retry_after_max" << YAML::Value << exact_duration(r.retry_after_max);
}

}  // namespace

std::string dump_config(const Config& config, bool show_secrets) {
  YAML::Emitter out;
  out.SetIndent(2);
  out << YAML::BeginMap;

  out << YAML::Key << "strategy" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "kind" << YAML::Value << std::string(to_string(config.strategy.kind));
  out << YAML::Key << "concurrency" << YAML::Value << config.strategy.concurrency;
  out << YAML::Key << "workers" << YAML::Value << config.strategy.workers;
  out << YAML::Key << "inner" << YAML::Value << std::string(to_string(config.strategy.inner));
  if (config.strategy.threads == 0) {
    out << YAML::Key << "threads" << YAML::Value << "auto";
  } else {
    out << YAML::Key << "threads" << YAML::Value << config.strategy.threads;
  }
  out << YAML::EndMap;

  out << YAML::Key << "output" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "dir" << YAML::Value << YAML::DoubleQuoted << config.output.dir.string();
  out << YAML::Key << "on_exists" << YAML::Value << std::string(core::to_string(config.output.on_exists));
  out << YAML::Key << "fsync" << YAML::Value << config.output.fsync;
  out << YAML::EndMap;

  const auto& d = config.defaults;
  out << YAML::Key << "defaults" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "timeout" << YAML::Value << exact_duration(d.timeout);
  out << YAML::Key << "connect_timeout" << YAML::Value << exact_duration(d.connect_timeout);
  out << YAML::Key << "low_speed" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "limit" << YAML::Value << exact_size(d.low_speed_limit);
  out << YAML::Key << "time" << YAML::Value << exact_duration(d.low_speed_time);
  out << YAML::EndMap;
  emit_retry(out, d.retry);
  out << YAML::Key << "max_redirects" << YAML::Value << d.max_redirects;
  out << YAML::Key << "user_agent" << YAML::Value << YAML::DoubleQuoted << d.user_agent;
  out << YAML::Key << "headers" << YAML::Value;
  emit_headers(out, d.headers, show_secrets);
  out << YAML::Key << "max_size" << YAML::Value << exact_size(d.max_size);
  out << YAML::Key << "rate" << YAML::Value << exact_size(d.rate);
  out << YAML::EndMap;

  out << YAML::Key << "limits" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "per_host" << YAML::Value << config.limits.per_host;
  out << YAML::Key << "rate" << YAML::Value << exact_size(config.limits.rate);
  out << YAML::EndMap;

  out << YAML::Key << "tls" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "ca_file" << YAML::Value << YAML::DoubleQuoted << d.ca_file;
  out << YAML::Key << "ca_path" << YAML::Value << YAML::DoubleQuoted << d.ca_path;
  out << YAML::EndMap;

  out << YAML::Key << "security" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "deny_private_addresses" << YAML::Value << d.deny_private_addresses;
  out << YAML::Key << "redact_query" << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (const auto& name : config.security.redact_query) out << YAML::DoubleQuoted << name;
  out << YAML::EndSeq;
  out << YAML::EndMap;

  out << YAML::Key << "log" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "level" << YAML::Value << config.log.level;
  out << YAML::Key << "interval" << YAML::Value << exact_duration(config.log.interval);
  out << YAML::EndMap;

  const auto& c = config.control;
  out << YAML::Key << "control" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "socket" << YAML::Value << YAML::DoubleQuoted << c.socket.string();
  out << YAML::Key << "mode" << YAML::Value << YAML::DoubleQuoted << fmt::format("{:04o}", c.mode);
  out << YAML::Key << "group" << YAML::Value << YAML::DoubleQuoted << c.group;
  out << YAML::Key << "tcp" << YAML::Value << YAML::DoubleQuoted << c.tcp;
  out << YAML::Key << "max_connections" << YAML::Value << c.max_connections;
  out << YAML::EndMap;

  const auto& st = config.state;
  out << YAML::Key << "state" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "dir" << YAML::Value << YAML::DoubleQuoted << st.dir.string();
  out << YAML::Key << "synchronous" << YAML::Value << std::string(to_string(st.synchronous));
  out << YAML::Key << "url" << YAML::Value << YAML::DoubleQuoted
      << (show_secrets ? st.url : core::redact_password(st.url));
  out << YAML::Key << "node" << YAML::Value << YAML::DoubleQuoted << st.node;
  out << YAML::Key << "lease" << YAML::Value << exact_duration(st.lease);
  out << YAML::Key << "history" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "max_age" << YAML::Value << exact_duration(st.history_max_age);
  out << YAML::Key << "max_jobs" << YAML::Value << st.history_max_jobs;
  out << YAML::EndMap;
  out << YAML::EndMap;

  out << YAML::Key << "shutdown" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "grace" << YAML::Value << exact_duration(config.shutdown.grace);
  out << YAML::EndMap;

  out << YAML::Key << "jobs" << YAML::Value << YAML::BeginSeq;
  for (const auto& job : config.jobs) {
    out << YAML::BeginMap;
    out << YAML::Key << "url" << YAML::Value << YAML::DoubleQuoted << shown_url(job.url, config, show_secrets);
    out << YAML::Key << "dest" << YAML::Value << YAML::DoubleQuoted << job.dest;
    if (job.sha256) out << YAML::Key << "sha256" << YAML::Value << YAML::DoubleQuoted << *job.sha256;
    const core::JobOptions& o = job.options;
    if (o.sha512) out << YAML::Key << "sha512" << YAML::Value << YAML::DoubleQuoted << *o.sha512;
    if (job.size) out << YAML::Key << "size" << YAML::Value << exact_size(*job.size);
    if (o.timeout) out << YAML::Key << "timeout" << YAML::Value << exact_duration(*o.timeout);
    if (o.max_size) out << YAML::Key << "max_size" << YAML::Value << exact_size(*o.max_size);
    if (o.rate) out << YAML::Key << "rate" << YAML::Value << exact_size(*o.rate);
    if (!(o.retry == RetryOverrides{})) {
      // A job's retry keys are written out whole: the dump is the policy the job runs with.
      core::RetryPolicy policy = config.defaults.retry;
      o.retry.apply_to(policy);
      emit_retry(out, policy);
    }
    if (!job.headers.empty()) {
      out << YAML::Key << "headers" << YAML::Value;
      emit_headers(out, job.headers, show_secrets);
    }
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
  out << YAML::EndMap;

  if (!out.good()) throw std::logic_error("dump_config: " + out.GetLastError());
  std::string text = "# fetchd configuration, normalized";
  if (!config.source.empty()) text += " from " + one_line(config.source.string());
  text += "\n";
  text += out.c_str();
  text += "\n";
  return text;
}

}  // namespace fetchd::config
