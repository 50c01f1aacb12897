// SPDX-License-Identifier: Apache-2.0
#pragma once
// The control socket's protocol v1 (docs/protocol.md, "Control socket"): one request line parsed into a
// typed, fully validated request, and the response and event lines encoded. Pure functions: no I/O, no
// globals, never throwing on any input, so any thread may call them and the fuzz target can call
// parse_request directly.

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "fetchd/core/job_options.hpp"
#include "fetchd/core/transfer_types.hpp"
#include "fetchd/store/job_store.hpp"

namespace fetchd::control {

enum class ErrorCode {
  kBadJson,     // not JSON, not an object, invalid UTF-8, nested too deeply
  kBadRequest,  // missing, mistyped or unknown field, number out of range
  kUnknownOp,
  kLineTooLong,
  kInvalidJob,  // a job of a submit failed validation; the message starts with "jobs[i].<field>: "
  kNotFound,
  kConflict,
  kUnavailable,
  kReloadFailed,
  kInternal,
};
std::string_view to_string(ErrorCode code);  // "bad_json", "bad_request", ...

inline constexpr std::size_t kMaxLineBytes = 1 << 20;  // without the '\n' (and a tolerated '\r')
inline constexpr std::size_t kMaxJobsPerSubmit = 100000;
// What a client best puts in one submit line: the daemon takes about this many submitted jobs per turn of its
// loop and lets the transfers run before it reads the connection's next line, so larger lines only delay the
// first transfers (fetchctl and bench send lines of this many jobs).
inline constexpr std::size_t kSubmitJobsPerLine = 1000;
inline constexpr std::size_t kMaxKeyBytes = 1024;
inline constexpr std::uint64_t kDefaultListLimit = 1000;
inline constexpr std::uint64_t kMaxListLimit = 10000;
// Deeper JSON is refused before parsing: nlohmann's copy and dump recurse, and `req` is copied and echoed.
inline constexpr int kMaxJsonDepth = 64;

struct JobSpec {
  std::string url;                    // http(s), checked with curl's parser
  std::optional<std::string> dest;    // normalized relative path; absent = the daemon derives it from the URL
  std::optional<std::string> sha256;  // 64 lowercase hex digits
  std::optional<std::uint64_t> size;
  core::Headers headers;  // names are tokens, values single lines; values may be secrets: never log them
  int priority = 0;
  std::optional<std::string> key;  // 1..kMaxKeyBytes bytes, as the client gave it (no "client:" prefix)
  // The job's own options: the YAML job list's keys (sha512, timeout, max_size, rate, retries, backoff,
  // retry_on, retry_after_max), with the same value syntax and checks (config/value_reader.hpp).
  core::JobOptions options;
};

struct Submit {
  std::vector<JobSpec> jobs;  // 1..kMaxJobsPerSubmit
};
struct Status {
  core::JobId id = 0;  // > 0
};
struct Cancel {
  core::JobId id = 0;  // > 0
};
struct List {
  std::optional<store::State> state;
  core::JobId after = 0;
  std::uint64_t offset = 0;
  std::uint64_t limit = kDefaultListLimit;  // 1..kMaxListLimit
};
struct Stats {};
struct Watch {};
struct Reload {};
struct Ping {};

using Op = std::variant<Submit, Status, List, Cancel, Stats, Watch, Reload, Ping>;

struct Request {
  Op op;
  std::optional<nlohmann::json> req;  // echoed verbatim in the response
};

struct ProtocolError {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;            // names the field; never quotes a header value
  std::optional<std::string> op;  // the op when it was recognised, else null in the response
  std::optional<nlohmann::json> req;
  // A submit's `conflict`: what became of each of its jobs, as in the result ({"id","state","existing"}, or
  // {"error":"conflict","conflicts_with":N}); the jobs without a conflict were stored.
  std::optional<nlohmann::json> jobs = std::nullopt;
};

using ParseResult = std::variant<Request, ProtocolError>;

// Parses one line (without its '\n'; a trailing "\r" or "\n" is tolerated). Never throws.
ParseResult parse_request(std::string_view line);

std::string_view op_name(const Op& op);  // "submit", "status", ...

// Encoders: each returns one complete line ending in '\n' (no other '\n' inside). Invalid UTF-8 in any string
// is replaced by U+FFFD rather than throwing.
//   {"ok":true,"op":<op>,"req":<req, only when given>,"result":<result>}
std::string encode_result(std::string_view op, const std::optional<nlohmann::json>& req,
                          const nlohmann::json& result);
//   {"ok":false,"op":<op or null>,"req":<req, only when given>,"error":{"code":<code>,"message":<message>
//   [,"jobs":<jobs, only when given>]}}
std::string encode_error(const ProtocolError& error);
//   {"event":<event>,"<key>":<value>}, e.g. encode_event("done", "job", watch_job_to_json(job)) or
//   encode_event("stats", "stats", stats_result).
std::string encode_event(std::string_view event, std::string_view key, const nlohmann::json& value);

// The Job object of status/list/cancel results. The URL goes through curl::redact_url (userinfo removed, the
// query shown as "?…": both may carry credentials). Headers are never shown; `options` holds the job's own
// options (only the keys set), `errors` the error lines of its last failed attempts (already redacted when
// the transfer wrote them). `key` shows a client's key without the store's "client:"
// prefix; any other key (the config's, which embeds the URL) is shown as null. A done job has `skipped`
// (true: its destination existed and on_exists: skip kept it; nothing was downloaded); other states have
// none.
nlohmann::json job_to_json(const store::Job& job);
// The smaller job object of watch events: id, url (redacted), dest, state, attempts, bytes, size, error, and
// skipped when done.
nlohmann::json watch_job_to_json(const store::Job& job);

// "2024-05-01T12:34:56.789Z" (RFC 3339, UTC, milliseconds).
std::string format_time_ms(std::int64_t unix_ms);

}  // namespace fetchd::control
