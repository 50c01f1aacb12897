// SPDX-License-Identifier: Apache-2.0
#include "fetchd/core/job_options.hpp"

#include <nlohmann/json.hpp>

#include "fetchd/core/units.hpp"

namespace fetchd::core {
namespace {

using json = nlohmann::json;

// Thrown by the readers below, caught in job_options_from_json only.
struct Bad {
  std::string what;
};

std::chrono::milliseconds read_duration(const json& j, const char* key) {
  std::string why;
  if (!j.is_string()) throw Bad{std::string(key) + ": not a duration"};
  auto v = parse_duration(j.get_ref<const std::string&>(), &why);
  if (!v) throw Bad{std::string(key) + ": " + why};
  return *v;
}

std::uint64_t read_size(const json& j, const char* key) {
  if (!j.is_number_unsigned()) throw Bad{std::string(key) + ": not a number of bytes"};
  return j.get<std::uint64_t>();
}

}  // namespace

void RetryOverrides::apply_to(RetryPolicy& p) const {
  if (retries) p.retries = *retries;
  if (initial) p.initial = *initial;
  if (max) p.max = *max;
  if (multiplier) p.multiplier = *multiplier;
  if (jitter) p.jitter = *jitter;
  if (retry_after_max) p.retry_after_max = *retry_after_max;
  if (retry_on) p.retry_on = *retry_on;
}

void JobOptions::apply_to(TransferOptions& o) const {
  retry.apply_to(o.retry);
  if (max_size) o.max_size = *max_size;
  if (rate) o.rate = *rate;
  if (timeout) o.timeout = *timeout;
}

json to_json(const JobOptions& o) {
  json out = json::object();
  if (o.sha512) out["sha512"] = *o.sha512;
  const RetryOverrides& r = o.retry;
  if (r.retries) out["retries"] = *r.retries;
  json backoff = json::object();
  if (r.initial) backoff["initial"] = format_duration(*r.initial);
  if (r.max) backoff["max"] = format_duration(*r.max);
  if (r.multiplier) backoff["multiplier"] = *r.multiplier;
  if (r.jitter) backoff["jitter"] = *r.jitter == Jitter::kFull ? "full" : "none";
  if (!backoff.empty()) out["backoff"] = std::move(backoff);
  if (r.retry_on) {
    json list = json::array();
    if (r.retry_on->connect) list.push_back("connect");
    if (r.retry_on->timeout) list.push_back("timeout");
    if (r.retry_on->partial) list.push_back("partial");
    if (r.retry_on->tls) list.push_back("tls");
    for (int status : r.retry_on->statuses) list.push_back(status);
    out["retry_on"] = std::move(list);
  }
  if (r.retry_after_max) out["retry_after_max"] = format_duration(*r.retry_after_max);
  if (o.max_size) out["max_size"] = *o.max_size;
  if (o.rate) out["rate"] = *o.rate;
  if (o.timeout) out["timeout"] = format_duration(*o.timeout);
  return out;
}

std::optional<JobOptions> job_options_from_json(const json& j, std::string* error) {
  JobOptions o;
  try {
    if (!j.is_object()) throw Bad{"not an object"};
    for (const auto& [key, v] : j.items()) {
      if (key == "sha512") {
        if (!v.is_string()) throw Bad{"sha512: not a string"};
        o.sha512 = v.get<std::string>();
      } else if (key == "retries") {
        if (!v.is_number_integer()) throw Bad{"retries: not an integer"};
        o.retry.retries = v.get<int>();
      } else if (key == "backoff") {
        if (!v.is_object()) throw Bad{"backoff: not an object"};
        for (const auto& [bk, bv] : v.items()) {
          if (bk == "initial") {
            o.retry.initial = read_duration(bv, "backoff.initial");
          } else if (bk == "max") {
            o.retry.max = read_duration(bv, "backoff.max");
          } else if (bk == "multiplier") {
            if (!bv.is_number()) throw Bad{"backoff.multiplier: not a number"};
            o.retry.multiplier = bv.get<double>();
          } else if (bk == "jitter" && (bv == "full" || bv == "none")) {
            o.retry.jitter = bv == "full" ? Jitter::kFull : Jitter::kNone;
          } else {
            throw Bad{"backoff." + bk + ": unknown or invalid"};
          }
        }
      } else if (key == "retry_on") {
        if (!v.is_array()) throw Bad{"retry_on: not an array"};
        RetryOn on{false, false, false, false, {}};
        for (const auto& item : v) {
          if (item == "connect") {
            on.connect = true;
          } else if (item == "timeout") {
            on.timeout = true;
          } else if (item == "partial") {
            on.partial = true;
          } else if (item == "tls") {
            on.tls = true;
          } else if (item.is_number_integer()) {
            on.statuses.push_back(item.get<int>());
          } else {
            throw Bad{"retry_on: unknown item"};
          }
        }
        o.retry.retry_on = std::move(on);
      } else if (key == "retry_after_max") {
        o.retry.retry_after_max = read_duration(v, "retry_after_max");
      } else if (key == "max_size") {
        o.max_size = read_size(v, "max_size");
      } else if (key == "rate") {
        o.rate = read_size(v, "rate");
      } else if (key == "timeout") {
        o.timeout = read_duration(v, "timeout");
      } else {
        throw Bad{key + ": unknown key"};
      }
    }
  } catch (const Bad& b) {
    if (error) *error = b.what;
    return std::nullopt;
  } catch (const json::exception& e) {
    if (error) *error = e.what();
    return std::nullopt;
  }
  return o;
}

}  // namespace fetchd::core
