// SPDX-License-Identifier: Apache-2.0
#include "fetchd/control/protocol.hpp"

#include <fmt/format.h>

#include <array>
#include <climits>
#include <ctime>
#include <exception>
#include <initializer_list>
#include <limits>
#include <utility>

#include "fetchd/config/validate.hpp"
#include "fetchd/config/value_reader.hpp"
#include "fetchd/core/dest_path.hpp"
#include "fetchd/curl/curl.hpp"

namespace fetchd::control {

namespace {

using json = nlohmann::json;

// Thrown inside the parser only; parse_request turns it into a ProtocolError. Never leaves this file.
struct Refusal {
  ErrorCode code;
  std::string message;
};

[[noreturn]] void refuse(ErrorCode code, std::string message) {
  throw Refusal{code, std::move(message)};
}

// The length of the valid UTF-8 sequence at s[i], or 0 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF).
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  std::size_t len = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c == 0xe0) lo = 0xa0;  // overlong
    if (c == 0xed) hi = 0x9f;  // surrogates
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c == 0xf0) lo = 0x90;  // overlong
    if (c == 0xf4) hi = 0x8f;  // > U+10FFFF
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  if (b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < len; ++k) {
    if (b(i + k) < 0x80 || b(i + k) > 0xbf) return 0;
  }
  return len;
}

// The offset of the first byte that is not valid UTF-8, or npos.
std::size_t invalid_utf8_at(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    std::size_t len = utf8_sequence_length(s, i);
    if (len == 0) return i;
    i += len;
  }
  return std::string_view::npos;
}

// Whether arrays/objects nest deeper than the limit, counting brackets outside strings. Cheap, and it runs
// before the parser so that nothing deep is ever built.
bool too_deep(std::string_view s) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : s) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

// A client-supplied name quoted for a message: control characters escaped, cut at 60 bytes on a character
// boundary. Only for names (fields, ops, states), never for values that may be secrets.
std::string show(std::string_view s) {
  constexpr std::size_t kMaxShown = 60;
  std::string out = "'";
  std::size_t i = 0;
  for (; i < s.size() && out.size() < kMaxShown;) {
    std::size_t len = utf8_sequence_length(s, i);
    auto c = static_cast<unsigned char>(s[i]);
    if (len == 0 || c < 0x20 || c == 0x7f || c == '\'' || c == '\\') {
      out += fmt::format("\\x{:02x}", c);
      ++i;
      continue;
    }
    out.append(s.substr(i, len));
    i += len;
  }
  if (i < s.size()) out += "...";
  out += "'";
  return out;
}

// A field name for a message: plain names as they are ("jobs[0].destination: ..."), anything odd quoted.
std::string field_name(std::string_view key) {
  bool plain = !key.empty() && key.size() <= 40;
  for (char c : key) {
    plain = plain && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '-');
  }
  return plain ? std::string(key) : show(key);
}

// "got a string", "got -3", "got 1.5", "got null" for type errors; numbers are shown (never secrets).
std::string got(const json& v) {
  if (v.is_number()) return "got " + v.dump();
  if (v.is_null()) return "got null";
  if (v.is_boolean()) return std::string("got ") + (v.get<bool>() ? "true" : "false");
  if (v.is_array()) return "got an array";
  if (v.is_object()) return "got an object";
  return "got a string";
}

std::string join(const std::vector<std::string_view>& items) {
  std::string out;
  for (auto item : items) {
    if (!out.empty()) out += ", ";
    out += item;
  }
  return out;
}

// Refuses the first key of `obj` that is not in `allowed`.
void check_fields(const json& obj, const std::vector<std::string_view>& allowed, ErrorCode code,
                  std::string_view prefix, std::string_view takes) {
  for (const auto& [key, value] : obj.items()) {
    bool known = false;
    for (auto a : allowed) known = known || key == a;
    if (!known) {
      refuse(code, fmt::format("{}{}: unknown field ({} takes: {})", prefix, field_name(key), takes,
                               join(allowed)));
    }
  }
}

const json* find(const json& obj, const char* name) {
  auto it = obj.find(name);
  return it == obj.end() ? nullptr : &*it;
}

// Present and not null.
const json* find_value(const json& obj, const char* name) {
  const json* v = find(obj, name);
  return v && !v->is_null() ? v : nullptr;
}

std::uint64_t as_uint(const json& v, ErrorCode code, std::string_view field, std::string_view what) {
  if (!v.is_number_unsigned()) refuse(code, fmt::format("{}: must be {}, {}", field, what, got(v)));
  return v.get<std::uint64_t>();
}

core::JobId parse_id(const json& obj) {
  const json* v = find(obj, "id");
  if (!v) refuse(ErrorCode::kBadRequest, "id: missing (a job id, a positive integer)");
  auto id = as_uint(*v, ErrorCode::kBadRequest, "id", "a positive integer");
  if (id == 0) refuse(ErrorCode::kBadRequest, "id: must be a positive integer, got 0");
  return id;
}

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// The first character of a header name that is not an RFC 9110 token character.
std::size_t first_non_token(std::string_view name) {
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (!config::header_name_ok(name.substr(i, 1))) return i;
  }
  return std::string_view::npos;
}

std::string show_char(char c) {
  auto u = static_cast<unsigned char>(c);
  if (u < 0x20 || u >= 0x7f || c == '\'') return fmt::format("\\x{:02x}", u);
  return fmt::format("'{}'", c);
}

// A job's own options, read by the config's reader (the YAML job list's words and checks); the first problem
// refuses the job.
class OptionReader final : public config::ValueReader {
 protected:
  void error(config::Pos, std::string key, std::string message) override {
    refuse(ErrorCode::kInvalidJob, fmt::format("{}: {}", key, message));
  }
};

JobSpec parse_job(const json& j, std::size_t index) {
  const std::string at = fmt::format("jobs[{}]", index);
  auto fail = [&](std::string_view field, std::string message) {
    refuse(ErrorCode::kInvalidJob, fmt::format("{}.{}: {}", at, field, message));
  };
  if (!j.is_object()) refuse(ErrorCode::kInvalidJob, fmt::format("{}: must be an object, {}", at, got(j)));
  static const std::vector<std::string_view> kJobFields = [] {
    std::vector<std::string_view> out{"url", "dest", "sha256", "size", "headers", "priority", "key"};
    out.insert(out.end(), config::kJobOptionKeys.begin(), config::kJobOptionKeys.end());
    return out;
  }();
  check_fields(j, kJobFields, ErrorCode::kInvalidJob, at + ".", "a job");
  JobSpec job;

  const json* url = find(j, "url");
  if (!url) fail("url", "missing");
  if (!url->is_string()) fail("url", fmt::format("must be a string, {}", got(*url)));
  job.url = url->get<std::string>();
  if (std::string problem = config::url_problem(job.url); !problem.empty()) fail("url", problem);

  if (const json* dest = find_value(j, "dest")) {
    if (!dest->is_string()) fail("dest", fmt::format("must be a string, {}", got(*dest)));
    std::string error;
    auto normalized = core::normalize_relative_dest(dest->get_ref<const std::string&>(), &error);
    if (!normalized) fail("dest", error);
    job.dest = std::move(*normalized);
  }

  if (const json* sha = find_value(j, "sha256")) {
    if (!sha->is_string())
      fail("sha256", fmt::format("must be a string of 64 hexadecimal digits, {}", got(*sha)));
    std::string hex = sha->get<std::string>();
    if (hex.size() != 64) {
      fail("sha256", fmt::format("must be 64 hexadecimal digits, got {} characters", hex.size()));
    }
    for (char& c : hex) {
      if (!is_hex(c)) fail("sha256", fmt::format("must be 64 hexadecimal digits, got {}", show_char(c)));
      if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
    }
    job.sha256 = std::move(hex);
  }

  if (const json* size = find_value(j, "size")) {
    job.size = as_uint(*size, ErrorCode::kInvalidJob, at + ".size", "a non-negative integer (bytes)");
  }

  if (const json* headers = find_value(j, "headers")) {
    if (!headers->is_object()) {
      fail("headers", fmt::format("must be an object of name: value strings, {}", got(*headers)));
    }
    for (const auto& [name, value] : headers->items()) {
      if (name.empty()) fail("headers", "a header name is empty");
      if (auto bad = first_non_token(name); bad != std::string::npos) {
        // Shows only the valid start: a name like "Authorization: Bearer …" must not echo the token.
        fail("headers", fmt::format("invalid header name {}: character {} is not allowed in a header name",
                                    show(std::string_view(name).substr(0, bad)), show_char(name[bad])));
      }
      // The name is a token now, safe to show; the value is never shown.
      if (!value.is_string())
        fail("headers." + name,
             fmt::format("value must be a string, {}", value.is_number() ? "got a number" : got(value)));
      if (!config::header_value_ok(value.get_ref<const std::string&>())) {
        fail("headers." + name, "value contains a control character (CR, LF, NUL, ...); it must be one line");
      }
      job.headers.emplace_back(name, value.get<std::string>());
    }
  }

  if (const json* priority = find_value(j, "priority")) {
    if (!priority->is_number_integer())
      fail("priority", fmt::format("must be an integer, {}", got(*priority)));
    bool in_range =
        priority->is_number_unsigned()
            ? priority->get<std::uint64_t>() <= static_cast<std::uint64_t>(INT_MAX)
            : priority->get<std::int64_t>() >= INT_MIN && priority->get<std::int64_t>() <= INT_MAX;
    if (!in_range)
      fail("priority", fmt::format("must be between {} and {}, {}", INT_MIN, INT_MAX, got(*priority)));
    job.priority = priority->get<int>();
  }

  if (const json* key = find_value(j, "key")) {
    if (!key->is_string()) fail("key", fmt::format("must be a string, {}", got(*key)));
    const auto& k = key->get_ref<const std::string&>();
    if (k.empty()) fail("key", "must not be empty (omit it for no key)");
    if (k.size() > kMaxKeyBytes)
      fail("key", fmt::format("must be at most {} bytes, got {}", kMaxKeyBytes, k.size()));
    job.key = k;
  }

  OptionReader reader;
  for (auto name : config::kJobOptionKeys) {
    const json* v = find_value(j, std::string(name).c_str());
    if (!v) continue;
    const config::Value value = config::value_from_json(*v);
    reader.job_option(config::Entry{std::string(name), fmt::format("{}.{}", at, name), {}, &value}, job.options);
  }
  return job;
}

Submit parse_submit(const json& obj) {
  const json* jobs = find(obj, "jobs");
  if (!jobs) refuse(ErrorCode::kBadRequest, "jobs: missing (an array of jobs)");
  if (!jobs->is_array())
    refuse(ErrorCode::kBadRequest, fmt::format("jobs: must be an array, {}", got(*jobs)));
  if (jobs->empty() || jobs->size() > kMaxJobsPerSubmit) {
    refuse(ErrorCode::kBadRequest,
           fmt::format("jobs: must hold 1 to {} jobs, got {}", kMaxJobsPerSubmit, jobs->size()));
  }
  Submit submit;
  submit.jobs.reserve(jobs->size());
  for (std::size_t i = 0; i < jobs->size(); ++i) submit.jobs.push_back(parse_job((*jobs)[i], i));
  return submit;
}

List parse_list(const json& obj) {
  List list;
  if (const json* state = find_value(obj, "state")) {
    if (!state->is_string())
      refuse(ErrorCode::kBadRequest, fmt::format("state: must be a string, {}", got(*state)));
    const auto& name = state->get_ref<const std::string&>();
    list.state = store::state_from_string(name);
    if (!list.state) {
      refuse(ErrorCode::kBadRequest,
             fmt::format("state: unknown state {} (one of queued, running, done, failed, cancelled)",
                         show(name)));
    }
  }
  if (const json* after = find_value(obj, "after")) {
    list.after = as_uint(*after, ErrorCode::kBadRequest, "after", "a job id (a non-negative integer)");
  }
  if (const json* offset = find_value(obj, "offset")) {
    list.offset = as_uint(*offset, ErrorCode::kBadRequest, "offset", "a non-negative integer");
  }
  if (const json* limit = find_value(obj, "limit")) {
    const std::string what = fmt::format("an integer from 1 to {}", kMaxListLimit);
    list.limit = as_uint(*limit, ErrorCode::kBadRequest, "limit", what);
    if (list.limit == 0 || list.limit > kMaxListLimit) {
      refuse(ErrorCode::kBadRequest, fmt::format("limit: must be {}, {}", what, got(*limit)));
    }
  }
  return list;
}

constexpr std::array<std::string_view, 8> kOpNames = {"submit", "status", "list",   "cancel",
                                                      "stats",  "watch",  "reload", "ping"};

// Everything after the op is known; `name` is one of kOpNames.
Op parse_op(std::string_view name, const json& obj) {
  auto only = [&](const std::vector<std::string_view>& fields, std::string_view takes) {
    check_fields(obj, fields, ErrorCode::kBadRequest, "", takes);
  };
  if (name == "submit") {
    only({"op", "req", "jobs"}, "submit");
    return parse_submit(obj);
  }
  if (name == "status") {
    only({"op", "req", "id"}, "status");
    return Status{parse_id(obj)};
  }
  if (name == "cancel") {
    only({"op", "req", "id"}, "cancel");
    return Cancel{parse_id(obj)};
  }
  if (name == "list") {
    only({"op", "req", "state", "after", "offset", "limit"}, "list");
    return parse_list(obj);
  }
  only({"op", "req"}, name);
  if (name == "stats") return Stats{};
  if (name == "watch") return Watch{};
  if (name == "reload") return Reload{};
  return Ping{};
}

// nlohmann's parse messages end with "; last read: '<token>'", which may quote a secret (an unterminated
// header value): keep only the description before it.
std::string describe_parse_error(const json::parse_error& e) {
  std::string_view what = e.what();
  if (auto p = what.find("] "); p != std::string_view::npos)
    what.remove_prefix(p + 2);  // "[json.exception...] "
  if (auto p = what.find(": "); p != std::string_view::npos && what.starts_with("parse error")) {
    what.remove_prefix(p + 2);  // "parse error at line 1, column 7: " -> we give the byte offset instead
  }
  if (auto p = what.find("; last read"); p != std::string_view::npos) what = what.substr(0, p);
  return fmt::format("invalid JSON at byte {}: {}", e.byte, what);
}

ParseResult parse_object(std::string_view line) {
  json doc;
  try {
    doc = json::parse(line);
  } catch (const json::parse_error& e) {
    return ProtocolError{ErrorCode::kBadJson, describe_parse_error(e), std::nullopt, std::nullopt};
  } catch (const json::out_of_range&) {
    // nlohmann 3.11 throws out_of_range (406), not parse_error, for a number beyond a double ("1e999"); found
    // by tests/fuzz/protocol_fuzz.cpp. Its message quotes the token: not repeated.
    return ProtocolError{ErrorCode::kBadJson, "invalid JSON: a number is out of range", std::nullopt, std::nullopt};
  }
  if (!doc.is_object()) {
    return ProtocolError{ErrorCode::kBadJson, fmt::format("a request must be a JSON object, {}", got(doc)),
                         std::nullopt, std::nullopt};
  }
  std::optional<json> req;
  if (auto it = doc.find("req"); it != doc.end()) req = std::move(*it);

  const json* op = find(doc, "op");
  if (!op)
    return ProtocolError{ErrorCode::kBadRequest, "op: missing (e.g. \"op\":\"ping\")", std::nullopt, req};
  if (!op->is_string()) {
    return ProtocolError{ErrorCode::kBadRequest, fmt::format("op: must be a string, {}", got(*op)),
                         std::nullopt, req};
  }
  const auto& name = op->get_ref<const std::string&>();
  bool known = false;
  for (auto n : kOpNames) known = known || n == name;
  if (!known) {
    return ProtocolError{
        ErrorCode::kUnknownOp,
        fmt::format("op: unknown operation {} (one of submit, status, list, cancel, stats, watch, "
                    "reload, ping)",
                    show(name)),
        std::nullopt, req};
  }
  try {
    return Request{parse_op(name, doc), std::move(req)};
  } catch (const Refusal& r) {
    return ProtocolError{r.code, r.message, name, std::move(req)};
  }
}

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

void append_string(std::string& out, std::string_view s) {
  out += dump(json(std::string(s)));
}

}  // namespace

std::string_view to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::kBadJson:
      return "bad_json";
    case ErrorCode::kBadRequest:
      return "bad_request";
    case ErrorCode::kUnknownOp:
      return "unknown_op";
    case ErrorCode::kLineTooLong:
      return "line_too_long";
    case ErrorCode::kInvalidJob:
      return "invalid_job";
    case ErrorCode::kNotFound:
      return "not_found";
    case ErrorCode::kConflict:
      return "conflict";
    case ErrorCode::kUnavailable:
      return "unavailable";
    case ErrorCode::kReloadFailed:
      return "reload_failed";
    case ErrorCode::kInternal:
      return "internal";
  }
  return "internal";
}

ParseResult parse_request(std::string_view line) {
  try {
    if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > kMaxLineBytes) {
      return ProtocolError{
          ErrorCode::kLineTooLong,
          fmt::format("request line is {} bytes, the limit is {}", line.size(), kMaxLineBytes), std::nullopt,
          std::nullopt};
    }
    if (auto bad = invalid_utf8_at(line); bad != std::string_view::npos) {
      return ProtocolError{ErrorCode::kBadJson, fmt::format("request is not valid UTF-8 (byte {})", bad),
                           std::nullopt, std::nullopt};
    }
    if (too_deep(line)) {
      return ProtocolError{ErrorCode::kBadJson,
                           fmt::format("JSON nested deeper than {} levels", kMaxJsonDepth), std::nullopt,
                           std::nullopt};
    }
    return parse_object(line);
  } catch (const std::exception& e) {
    // Only allocation failures and the like get here: the parser's own errors are values.
    return ProtocolError{ErrorCode::kInternal, fmt::format("cannot parse the request: {}", e.what()),
                         std::nullopt, std::nullopt};
  } catch (...) {
    return ProtocolError{ErrorCode::kInternal, "cannot parse the request", std::nullopt, std::nullopt};
  }
}

std::string_view op_name(const Op& op) {
  return kOpNames.at(op.index());
}

std::string encode_result(std::string_view op, const std::optional<json>& req, const json& result) {
  // Assembled by hand: keeps the documented field order, and a large result is dumped once, never copied.
  std::string out = R"({"ok":true,"op":)";
  append_string(out, op);
  if (req) {
    out += R"(,"req":)";
    out += dump(*req);
  }
  out += R"(,"result":)";
  out += dump(result);
  out += "}\n";
  return out;
}

std::string encode_error(const ProtocolError& error) {
  std::string out = R"({"ok":false,"op":)";
  if (error.op) {
    append_string(out, *error.op);
  } else {
    out += "null";
  }
  if (error.req) {
    out += R"(,"req":)";
    out += dump(*error.req);
  }
  out += R"(,"error":{"code":)";
  append_string(out, to_string(error.code));
  out += R"(,"message":)";
  append_string(out, error.message);
  if (error.jobs) {
    out += R"(,"jobs":)";
    out += dump(*error.jobs);
  }
  out += "}}\n";
  return out;
}

std::string encode_event(std::string_view event, std::string_view key, const json& value) {
  std::string out = R"({"event":)";
  append_string(out, event);
  out += ',';
  append_string(out, key);
  out += ':';
  out += dump(value);
  out += "}\n";
  return out;
}

std::string format_time_ms(std::int64_t unix_ms) {
  // Floor division, so that times before 1970 still print a valid (if unusual) timestamp.
  std::int64_t secs = unix_ms / 1000;
  std::int64_t ms = unix_ms % 1000;
  if (ms < 0) {
    ms += 1000;
    --secs;
  }
  std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return "1970-01-01T00:00:00.000Z";
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

namespace {

json optional_size(const std::optional<std::uint64_t>& size) {
  return size ? json(*size) : json(nullptr);
}

}  // namespace

json job_to_json(const store::Job& job) {
  constexpr std::string_view kClientPrefix = "client:";
  json key = nullptr;
  if (std::string_view k = job.key; k.starts_with(kClientPrefix))
    key = std::string(k.substr(kClientPrefix.size()));
  json out{
      {"id", job.id},
      {"url", curl::redact_url(job.url)},
      {"dest", job.dest},
      {"state", store::to_string(job.state)},
      {"attempts", job.attempts},
      {"error", job.error},
      {"errors", job.errors},
      {"bytes", job.bytes},
      {"size", optional_size(job.size)},
      {"sha256", job.sha256 ? json(*job.sha256) : json(nullptr)},
      {"priority", job.priority},
      {"options", core::to_json(job.options)},
      {"key", std::move(key)},
      {"created", format_time_ms(job.created_ms)},
      {"updated", format_time_ms(job.updated_ms)},
      {"finished", job.finished_ms != 0 ? json(format_time_ms(job.finished_ms)) : json(nullptr)},
  };
  if (job.state == store::State::kDone) out["skipped"] = job.skipped;
  return out;
}

json watch_job_to_json(const store::Job& job) {
  json out{
      {"id", job.id},
      {"url", curl::redact_url(job.url)},
      {"dest", job.dest},
      {"state", store::to_string(job.state)},
      {"attempts", job.attempts},
      {"bytes", job.bytes},
      {"size", optional_size(job.size)},
      {"error", job.error},
  };
  if (job.state == store::State::kDone) out["skipped"] = job.skipped;
  return out;
}

}  // namespace fetchd::control
