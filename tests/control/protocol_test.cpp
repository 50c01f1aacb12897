// SPDX-License-Identifier: Apache-2.0
// The control protocol's parser and encoders: every op, the malformed inputs a client (or a fuzzer) can send,
// and encoders that always produce exactly one JSON line.

#include "fetchd/control/protocol.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <variant>

namespace fetchd::control {
namespace {

using json = nlohmann::json;

Request expect_request(std::string_view line) {
  auto result = parse_request(line);
  if (auto* error = std::get_if<ProtocolError>(&result)) {
    ADD_FAILURE() << "refused: " << to_string(error->code) << ": " << error->message << "\n  line: " << line;
    return Request{Ping{}, std::nullopt};
  }
  return std::get<Request>(std::move(result));
}

ProtocolError expect_error(std::string_view line) {
  auto result = parse_request(line);
  if (!std::holds_alternative<ProtocolError>(result)) {
    ADD_FAILURE() << "accepted: " << line;
    return {};
  }
  return std::get<ProtocolError>(std::move(result));
}

// Every encoder output: exactly one line, valid JSON.
json parse_line(const std::string& line) {
  EXPECT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1) << line;
  return json::parse(line);
}

// ---- valid requests ----

TEST(ControlProtocol, PingWithReqEcho) {
  auto r = expect_request(R"({"op":"ping","req":{"n":[1,2,"x"]}})");
  EXPECT_TRUE(std::holds_alternative<Ping>(r.op));
  EXPECT_EQ(op_name(r.op), "ping");
  ASSERT_TRUE(r.req.has_value());
  EXPECT_EQ(*r.req, json::parse(R"({"n":[1,2,"x"]})"));
}

TEST(ControlProtocol, OpsWithoutFields) {
  EXPECT_TRUE(std::holds_alternative<Stats>(expect_request(R"({"op":"stats"})").op));
  EXPECT_TRUE(std::holds_alternative<Watch>(expect_request(R"({"op":"watch"})").op));
  EXPECT_TRUE(std::holds_alternative<Reload>(expect_request(R"({"op":"reload","req":null})").op));
  auto r = expect_request(R"({"op":"ping"})");
  EXPECT_FALSE(r.req.has_value());
  // "req": null is still a given req, echoed as null.
  EXPECT_TRUE(expect_request(R"({"op":"stats","req":null})").req.has_value());
}

TEST(ControlProtocol, StatusAndCancel) {
  auto s = expect_request(R"({"op":"status","id":12})");
  ASSERT_TRUE(std::holds_alternative<Status>(s.op));
  EXPECT_EQ(std::get<Status>(s.op).id, 12u);
  auto c = expect_request(R"({"id":18446744073709551615,"op":"cancel"})");
  ASSERT_TRUE(std::holds_alternative<Cancel>(c.op));
  EXPECT_EQ(std::get<Cancel>(c.op).id, UINT64_MAX);
  EXPECT_EQ(op_name(c.op), "cancel");
}

TEST(ControlProtocol, ListDefaultsAndFields) {
  auto d = std::get<List>(expect_request(R"({"op":"list"})").op);
  EXPECT_FALSE(d.state.has_value());
  EXPECT_EQ(d.after, 0u);
  EXPECT_EQ(d.offset, 0u);
  EXPECT_EQ(d.limit, 1000u);
  auto l = std::get<List>(
      expect_request(R"({"op":"list","state":"failed","after":7,"offset":3,"limit":10000})").op);
  EXPECT_EQ(l.state, store::State::kFailed);
  EXPECT_EQ(l.after, 7u);
  EXPECT_EQ(l.offset, 3u);
  EXPECT_EQ(l.limit, 10000u);
  // null means "not given" for optional fields.
  auto n = std::get<List>(expect_request(R"({"op":"list","state":null,"limit":null})").op);
  EXPECT_FALSE(n.state.has_value());
  EXPECT_EQ(n.limit, 1000u);
}

TEST(ControlProtocol, SubmitNormalizesEveryField) {
  auto r = expect_request(
      R"({"op":"submit","req":"r1","jobs":[)"
      R"({"url":"https://example.com/a/b.bin?x=1","dest":"sub//b.bin","sha256":")" +
      std::string(32, 'A') + std::string(32, 'f') +
      R"(","size":0,"headers":{"Authorization":"Bearer t","X-Empty":""},"priority":-5,"key":"k1"},)"
      R"({"url":"http://127.0.0.1:8080/","dest":null,"priority":2147483647}]})");
  ASSERT_TRUE(std::holds_alternative<Submit>(r.op));
  const auto& jobs = std::get<Submit>(r.op).jobs;
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[0].url, "https://example.com/a/b.bin?x=1");
  EXPECT_EQ(jobs[0].dest, "sub/b.bin");
  EXPECT_EQ(jobs[0].sha256, std::string(32, 'a') + std::string(32, 'f'));
  EXPECT_EQ(jobs[0].size, 0u);
  ASSERT_EQ(jobs[0].headers.size(), 2u);
  EXPECT_EQ(jobs[0].headers[0], (std::pair<std::string, std::string>{"Authorization", "Bearer t"}));
  EXPECT_EQ(jobs[0].headers[1], (std::pair<std::string, std::string>{"X-Empty", ""}));
  EXPECT_EQ(jobs[0].priority, -5);
  EXPECT_EQ(jobs[0].key, "k1");
  EXPECT_FALSE(jobs[1].dest.has_value());  // the daemon derives it from the URL
  EXPECT_FALSE(jobs[1].sha256.has_value());
  EXPECT_FALSE(jobs[1].size.has_value());
  EXPECT_FALSE(jobs[1].key.has_value());
  EXPECT_EQ(jobs[1].priority, 2147483647);
  EXPECT_EQ(r.req, json("r1"));
}

TEST(ControlProtocol, LineEndingsTolerated) {
  EXPECT_TRUE(std::holds_alternative<Ping>(expect_request("{\"op\":\"ping\"}\r").op));
  EXPECT_TRUE(std::holds_alternative<Ping>(expect_request("{\"op\":\"ping\"}\r\n").op));
  EXPECT_TRUE(std::holds_alternative<Ping>(expect_request(" { \"op\" : \"ping\" } ").op));
}

TEST(ControlProtocol, MaxSizeSubmitIsAccepted) {
  std::string line = R"({"op":"submit","jobs":[)";
  for (int i = 0; i < 1000; ++i)
    line += std::string(i ? "," : "") + R"({"url":"http://h/)" + std::to_string(i) + "\"}";
  line += "]}";
  EXPECT_EQ(std::get<Submit>(expect_request(line).op).jobs.size(), 1000u);
}

// ---- malformed requests ----

struct Malformed {
  const char* name;
  std::string line;
  ErrorCode code;
  std::string message;                   // a substring the message must contain
  std::optional<std::string> op = {};    // the op the error names
  std::string absent = "\x01never\x01";  // a substring the message must not contain (secrets)
};

std::ostream& operator<<(std::ostream& os, const Malformed& m) {
  return os << m.name;
}

std::string submit(const std::string& job) {
  return R"({"op":"submit","jobs":[)" + job + "]}";
}
std::string job_with(const std::string& fields) {
  return submit(R"({"url":"http://h/a",)" + fields + "}");
}

const std::string kSub = "submit";

std::vector<Malformed> malformed_cases() {
  std::string too_many = R"({"op":"submit","jobs":[)";
  for (std::size_t i = 0; i <= kMaxJobsPerSubmit; ++i) too_many += i ? ",{}" : "{}";
  too_many += "]}";
  std::string deep = R"({"op":"ping","req":)" + std::string(100, '[') + std::string(100, ']') + "}";
  return {
      {"truncated_json", R"({"op":"ping")", ErrorCode::kBadJson, "invalid JSON at byte"},
      {"not_json", "hello", ErrorCode::kBadJson, "invalid JSON"},
      {"number_overflow", R"({"op":"ping","req":1e999})", ErrorCode::kBadJson, "out of range"},
      {"trailing_garbage", R"({"op":"ping"} x)", ErrorCode::kBadJson, "invalid JSON"},
      {"whitespace_only", "   ", ErrorCode::kBadJson, "invalid JSON"},
      {"string_not_object", R"("ping")", ErrorCode::kBadJson, "must be a JSON object, got a string"},
      {"array_not_object", R"([{"op":"ping"}])", ErrorCode::kBadJson, "must be a JSON object, got an array"},
      {"number_not_object", "42", ErrorCode::kBadJson, "must be a JSON object, got 42"},
      {"invalid_utf8", "{\"op\":\"ping\",\"req\":\"\xff\"}", ErrorCode::kBadJson,
       "not valid UTF-8 (byte 20)"},
      {"overlong_utf8", "{\"op\":\"ping\",\"req\":\"\xc0\xaf\"}", ErrorCode::kBadJson, "not valid UTF-8"},
      {"surrogate_utf8", "{\"op\":\"ping\",\"req\":\"\xed\xa0\x80\"}", ErrorCode::kBadJson,
       "not valid UTF-8"},
      {"truncated_utf8", "{\"op\":\"ping\",\"req\":\"\xe2\x82\"}", ErrorCode::kBadJson, "not valid UTF-8"},
      {"too_deep", deep, ErrorCode::kBadJson, "nested deeper than 64"},
      {"unknown_op", R"({"op":"frobnicate"})", ErrorCode::kUnknownOp, "op: unknown operation 'frobnicate'"},
      {"op_wrong_case", R"({"op":"PING"})", ErrorCode::kUnknownOp, "'PING'"},
      {"op_not_string", R"({"op":5})", ErrorCode::kBadRequest, "op: must be a string, got 5"},
      {"op_null", R"({"op":null})", ErrorCode::kBadRequest, "op: must be a string, got null"},
      {"missing_op", R"({"req":1})", ErrorCode::kBadRequest, "op: missing"},
      {"unknown_field", R"({"op":"ping","verbose":true})", ErrorCode::kBadRequest, "verbose: unknown field",
       "ping"},
      {"unknown_field_quoted", R"({"op":"stats","a b":1})", ErrorCode::kBadRequest, "'a b': unknown field",
       "stats"},
      {"unknown_submit_field", R"({"op":"submit","jobz":[]})", ErrorCode::kBadRequest,
       "jobz: unknown field (submit takes: op, req, jobs)", kSub},
      {"jobs_missing", R"({"op":"submit"})", ErrorCode::kBadRequest, "jobs: missing", kSub},
      {"jobs_empty", R"({"op":"submit","jobs":[]})", ErrorCode::kBadRequest,
       "jobs: must hold 1 to 100000 jobs, got 0", kSub},
      {"jobs_not_array", R"({"op":"submit","jobs":{"url":"http://h/"}})", ErrorCode::kBadRequest,
       "jobs: must be an array, got an object", kSub},
      {"jobs_too_many", too_many, ErrorCode::kBadRequest, "got 100001", kSub},
      {"job_not_object", submit(R"("http://h/a")"), ErrorCode::kInvalidJob, "jobs[0]: must be an object",
       kSub},
      {"job_unknown_field", job_with(R"("destination":"x")"), ErrorCode::kInvalidJob,
       "jobs[0].destination: unknown field", kSub},
      {"url_missing", submit(R"({"dest":"a"})"), ErrorCode::kInvalidJob, "jobs[0].url: missing", kSub},
      {"url_not_string", submit(R"({"url":17})"), ErrorCode::kInvalidJob,
       "jobs[0].url: must be a string, got 17", kSub},
      {"url_file", submit(R"({"url":"http://h/ok"},{"url":"file:///etc/passwd"})"), ErrorCode::kInvalidJob,
       "jobs[1].url: URL scheme 'file' is not allowed (use http or https)", kSub},
      {"url_ftp", submit(R"({"url":"ftp://user:s3cret@h/a"})"), ErrorCode::kInvalidJob,
       "jobs[0].url: URL scheme 'ftp' is not allowed", kSub, "s3cret"},
      {"url_no_scheme", submit(R"({"url":"example.com/a.bin"})"), ErrorCode::kInvalidJob,
       "jobs[0].url: URL has no scheme", kSub},
      {"url_space", submit(R"({"url":"http://h/a b"})"), ErrorCode::kInvalidJob,
       "jobs[0].url: URL contains a space", kSub},
      {"url_empty", submit(R"({"url":""})"), ErrorCode::kInvalidJob, "jobs[0].url: URL is empty", kSub},
      {"dest_absolute", job_with(R"("dest":"/etc/passwd")"), ErrorCode::kInvalidJob,
       "jobs[0].dest: destination must be relative", kSub},
      {"dest_dotdot", job_with(R"("dest":"a/../../b")"), ErrorCode::kInvalidJob, "jobs[0].dest: ", kSub},
      {"dest_not_string", job_with(R"("dest":["a"])"), ErrorCode::kInvalidJob,
       "jobs[0].dest: must be a string, got an array", kSub},
      {"dest_empty", job_with(R"("dest":"")"), ErrorCode::kInvalidJob, "jobs[0].dest: destination is empty",
       kSub},
      {"sha256_short", job_with(R"("sha256":")" + std::string(63, 'a') + "\""), ErrorCode::kInvalidJob,
       "jobs[0].sha256: must be 64 hexadecimal digits, got 63 characters", kSub},
      {"sha256_non_hex", job_with(R"("sha256":")" + std::string(63, 'a') + "g\""), ErrorCode::kInvalidJob,
       "jobs[0].sha256: must be 64 hexadecimal digits, got 'g'", kSub},
      {"sha256_number", job_with(R"("sha256":12)"), ErrorCode::kInvalidJob,
       "jobs[0].sha256: must be a string", kSub},
      {"size_negative", job_with(R"("size":-1)"), ErrorCode::kInvalidJob,
       "jobs[0].size: must be a non-negative integer (bytes), got -1", kSub},
      {"size_float", job_with(R"("size":1.5)"), ErrorCode::kInvalidJob,
       "jobs[0].size: must be a non-negative integer", kSub},
      {"size_exponent", job_with(R"("size":1e3)"), ErrorCode::kInvalidJob,
       "jobs[0].size: must be a non-negative", kSub},
      {"size_string", job_with(R"("size":"100")"), ErrorCode::kInvalidJob,
       "jobs[0].size: must be a non-negative integer (bytes), got a string", kSub},
      {"size_too_big", job_with(R"("size":18446744073709551616)"), ErrorCode::kInvalidJob,
       "jobs[0].size: ", kSub},
      {"headers_not_object", job_with(R"("headers":["A: b"])"), ErrorCode::kInvalidJob,
       "jobs[0].headers: must be an object", kSub},
      {"header_bad_name", job_with(R"("headers":{"Authorization: Bearer s3cret":"x"})"),
       ErrorCode::kInvalidJob,
       "jobs[0].headers: invalid header name 'Authorization': character ':' is not allowed", kSub, "s3cret"},
      {"header_empty_name", job_with(R"("headers":{"":"x"})"), ErrorCode::kInvalidJob,
       "jobs[0].headers: a header name is empty", kSub},
      {"header_crlf_value", job_with(R"("headers":{"X-Token":"s3cret\r\nX-Evil: 1"})"),
       ErrorCode::kInvalidJob, "jobs[0].headers.X-Token: value contains a control character", kSub, "s3cret"},
      {"header_value_not_string", job_with(R"("headers":{"X-Pin":1234})"), ErrorCode::kInvalidJob,
       "jobs[0].headers.X-Pin: value must be a string, got a number", kSub, "1234"},
      {"priority_float", job_with(R"("priority":1.5)"), ErrorCode::kInvalidJob,
       "jobs[0].priority: must be an integer", kSub},
      {"priority_too_big", job_with(R"("priority":2147483648)"), ErrorCode::kInvalidJob,
       "jobs[0].priority: must be between -2147483648 and 2147483647", kSub},
      {"priority_too_small", job_with(R"("priority":-2147483649)"), ErrorCode::kInvalidJob,
       "jobs[0].priority: must be", kSub},
      {"priority_string", job_with(R"("priority":"high")"), ErrorCode::kInvalidJob,
       "jobs[0].priority: must be an integer, got a string", kSub},
      {"key_empty", job_with(R"("key":"")"), ErrorCode::kInvalidJob, "jobs[0].key: must not be empty", kSub},
      {"key_too_long", job_with(R"("key":")" + std::string(1025, 'k') + "\""), ErrorCode::kInvalidJob,
       "jobs[0].key: must be at most 1024 bytes, got 1025", kSub},
      {"key_number", job_with(R"("key":5)"), ErrorCode::kInvalidJob, "jobs[0].key: must be a string", kSub},
      {"status_id_missing", R"({"op":"status"})", ErrorCode::kBadRequest, "id: missing", "status"},
      {"status_id_zero", R"({"op":"status","id":0})", ErrorCode::kBadRequest,
       "id: must be a positive integer, got 0", "status"},
      {"status_id_negative", R"({"op":"status","id":-3})", ErrorCode::kBadRequest,
       "id: must be a positive integer, got -3", "status"},
      {"status_id_string", R"({"op":"status","id":"12"})", ErrorCode::kBadRequest,
       "id: must be a positive integer, got a string", "status"},
      {"status_id_float", R"({"op":"status","id":1.0})", ErrorCode::kBadRequest,
       "id: must be a positive integer, got 1.0", "status"},
      {"cancel_id_missing", R"({"op":"cancel","req":9})", ErrorCode::kBadRequest, "id: missing", "cancel"},
      {"cancel_extra_field", R"({"op":"cancel","id":1,"force":true})", ErrorCode::kBadRequest,
       "force: unknown field", "cancel"},
      {"list_state_unknown", R"({"op":"list","state":"sleeping"})", ErrorCode::kBadRequest,
       "state: unknown state 'sleeping' (one of queued, running, done, failed, cancelled)", "list"},
      {"list_state_not_string", R"({"op":"list","state":1})", ErrorCode::kBadRequest,
       "state: must be a string", "list"},
      {"list_limit_zero", R"({"op":"list","limit":0})", ErrorCode::kBadRequest,
       "limit: must be an integer from 1 to 10000, got 0", "list"},
      {"list_limit_too_big", R"({"op":"list","limit":10001})", ErrorCode::kBadRequest,
       "limit: must be an integer from 1 to 10000, got 10001", "list"},
      {"list_limit_negative", R"({"op":"list","limit":-1})", ErrorCode::kBadRequest, "limit: must be",
       "list"},
      {"list_after_float", R"({"op":"list","after":2.5})", ErrorCode::kBadRequest, "after: must be a job id",
       "list"},
      {"list_offset_string", R"({"op":"list","offset":"1"})", ErrorCode::kBadRequest,
       "offset: must be a non-negative", "list"},
      {"line_too_long", R"({"op":"ping","req":")" + std::string(kMaxLineBytes, 'x') + "\"}",
       ErrorCode::kLineTooLong, "the limit is 1048576"},
      {"unterminated_secret", R"({"op":"submit","jobs":[{"url":"http://h/","headers":{"A":"Bearer s3cret)",
       ErrorCode::kBadJson, "invalid JSON", std::nullopt, "s3cret"},
  };
}

class ControlProtocolMalformed : public ::testing::TestWithParam<Malformed> {};

TEST_P(ControlProtocolMalformed, RefusedWithCodeAndField) {
  const Malformed& m = GetParam();
  ProtocolError e = expect_error(m.line);
  EXPECT_EQ(to_string(e.code), to_string(m.code)) << e.message;
  EXPECT_NE(e.message.find(m.message), std::string::npos) << "message: " << e.message;
  EXPECT_EQ(e.message.find(m.absent), std::string::npos) << "message leaks: " << e.message;
  EXPECT_EQ(e.op, m.op);
  // The error line is one valid JSON line carrying the code and message.
  json j = parse_line(encode_error(e));
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["error"]["code"], std::string(to_string(m.code)));
  EXPECT_EQ(j["error"]["message"], e.message);
  if (m.op) {
    EXPECT_EQ(j["op"], *m.op);
  } else {
    EXPECT_TRUE(j["op"].is_null());
  }
}

INSTANTIATE_TEST_SUITE_P(All, ControlProtocolMalformed, ::testing::ValuesIn(malformed_cases()),
                         [](const auto& info) { return std::string(info.param.name); });

// Each of a job's own options, in the YAML job list's syntax: durations as text or seconds, sizes as text or
// bytes.
TEST(ControlProtocol, SubmitTakesTheJobListsOptions) {
  auto r = expect_request(R"({"op":"submit","jobs":[{"url":"http://h/a","sha512":")" + std::string(128, 'A') +
                          R"(","timeout":"1h30m","max_size":"10MiB","rate":"1.5MB","retries":2,)"
                          R"("backoff":{"initial":"250ms","max":90,"multiplier":1.5,"jitter":"none"},)"
                          R"("retry_on":["connect",503,"429","tls"],"retry_after_max":"2m"}]})");
  const auto& o = std::get<Submit>(r.op).jobs.at(0).options;
  EXPECT_EQ(o.sha512, std::string(128, 'a'));
  EXPECT_EQ(o.timeout, std::chrono::minutes(90));
  EXPECT_EQ(o.max_size, 10u << 20);
  EXPECT_EQ(o.rate, 1'500'000u);
  EXPECT_EQ(o.retry.retries, 2);
  EXPECT_EQ(o.retry.initial, std::chrono::milliseconds(250));
  EXPECT_EQ(o.retry.max, std::chrono::seconds(90));
  EXPECT_EQ(o.retry.multiplier, 1.5);
  EXPECT_EQ(o.retry.jitter, core::Jitter::kNone);
  EXPECT_EQ(o.retry.retry_on, (core::RetryOn{true, false, false, true, {429, 503}}));
  EXPECT_EQ(o.retry.retry_after_max, std::chrono::minutes(2));

  auto plain = expect_request(R"({"op":"submit","jobs":[{"url":"http://h/a","timeout":0,"max_size":4096,)"
                              R"("retries":0,"rate":null}]})");
  const auto& p = std::get<Submit>(plain.op).jobs.at(0).options;
  EXPECT_EQ(p.timeout, std::chrono::milliseconds(0));  // 0 = none, as in YAML
  EXPECT_EQ(p.max_size, 4096u);
  EXPECT_EQ(p.retry.retries, 0);
  EXPECT_FALSE(p.rate);  // null = not given
  EXPECT_TRUE(std::get<Submit>(expect_request(submit(R"({"url":"http://h/a"})")).op).jobs.at(0).options.empty());
}

// A bad option is refused with the YAML loader's words, under the job's dotted key.
TEST(ControlProtocol, SubmitRefusesBadOptionsWithTheirKey) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"("retries":-1)", "jobs[0].retries: must not be negative, got -1"},
      {R"("retries":"many")", "jobs[0].retries: expected an integer, got 'many'"},
      {R"("retries":1.5)", "jobs[0].retries: expected an integer, got '1.5'"},
      {R"("retries":[1])", "jobs[0].retries: expected an integer, got an array"},
      {R"("timeout":"soon")", "jobs[0].timeout: "},
      {R"("timeout":-5)", "jobs[0].timeout: "},
      {R"("retry_after_max":0)", "jobs[0].retry_after_max: must be longer than 0, got '0'"},
      {R"("max_size":"10Q")", "jobs[0].max_size: "},
      {R"("max_size":{"a":1})", "jobs[0].max_size: expected a size such as 4096, 64KiB or 1.5MB, got an object"},
      {R"("rate":true)", "jobs[0].rate: "},
      {R"("sha512":"abc")", "jobs[0].sha512: expected 128 hex digits, got 'abc' (3 characters)"},
      {R"("backoff":5)", "jobs[0].backoff: expected a map, got the value '5'"},
      {R"("backoff":{"initial":"0s"})", "jobs[0].backoff.initial: must be longer than 0, got '0s'"},
      {R"("backoff":{"initial":"fast"})", "jobs[0].backoff.initial: "},
      {R"("backoff":{"multiplier":0.5})", "jobs[0].backoff.multiplier: expected a number from 1 to 1000, got '0.5'"},
      {R"("backoff":{"jitter":"ful"})",
       "jobs[0].backoff.jitter: unknown jitter 'ful'; expected one of: full, none (did you mean 'full'?)"},
      {R"("backoff":{"initail":"1s"})",
       "jobs[0].backoff.initail: unknown key 'initail' in jobs[0].backoff; did you mean 'initial'?"},
      {R"("retry_on":"503")",
       "jobs[0].retry_on: expected a list such as [connect, timeout, partial, 429, 503], got the value '503'"},
      {R"("retry_on":["connect",200])",
       "jobs[0].retry_on[1]: expected connect, timeout, partial, tls or an HTTP status from 400 to 599, got '200'"},
      {R"("retry_on":[null])",
       "jobs[0].retry_on[0]: missing value; expected connect, timeout, partial, tls or an HTTP status"},
  };
  for (const auto& [fields, message] : cases) {
    ProtocolError e = expect_error(job_with(fields));
    EXPECT_EQ(e.code, ErrorCode::kInvalidJob) << fields;
    if (message.back() == ' ') {
      EXPECT_EQ(e.message.rfind(message, 0), 0u) << fields << " -> " << e.message;
    } else {
      EXPECT_EQ(e.message, message) << fields;
    }
  }
  // Unknown keys stay refused, and the list of what a job takes names the options too.
  ProtocolError e = expect_error(job_with(R"("retry":1)"));
  EXPECT_EQ(e.message,
            "jobs[0].retry: unknown field (a job takes: url, dest, sha256, size, headers, priority, key, sha512, "
            "timeout, max_size, rate, retries, backoff, retry_on, retry_after_max)");
}

TEST(ControlProtocol, ErrorsEchoReqWhenParseable) {
  auto e = expect_error(R"({"op":"status","req":{"trace":"abc"},"id":0})");
  ASSERT_TRUE(e.req.has_value());
  EXPECT_EQ(*e.req, json::parse(R"({"trace":"abc"})"));
  json j = parse_line(encode_error(e));
  EXPECT_EQ(j["req"]["trace"], "abc");
  EXPECT_EQ(j["op"], "status");

  auto u = expect_error(R"({"op":"nope","req":7})");
  EXPECT_EQ(u.req, json(7));
  EXPECT_FALSE(u.op.has_value());  // unknown ops are answered with "op": null
  EXPECT_FALSE(expect_error("[1]").req.has_value());
}

// ---- encoders ----

TEST(ControlProtocol, EncodeResultShape) {
  std::string line = encode_result("ping", json("r"), json{{"version", "0.1.0"}, {"pid", 7}});
  EXPECT_EQ(line, R"({"ok":true,"op":"ping","req":"r","result":{"pid":7,"version":"0.1.0"}})"
                  "\n");
  json j = parse_line(encode_result("stats", std::nullopt, json::object()));
  EXPECT_FALSE(j.contains("req"));
  EXPECT_EQ(j["result"], json::object());
  // A req given as null is echoed as null.
  EXPECT_TRUE(parse_line(encode_result("stats", json(nullptr), 1)).contains("req"));
}

TEST(ControlProtocol, EncodeErrorShape) {
  std::string line = encode_error({ErrorCode::kNotFound, "no job 12", "status", json(3)});
  EXPECT_EQ(line, R"({"ok":false,"op":"status","req":3,"error":{"code":"not_found","message":"no job 12"}})"
                  "\n");
  EXPECT_EQ(encode_error({ErrorCode::kUnknownOp, "x", std::nullopt, std::nullopt}),
            R"({"ok":false,"op":null,"error":{"code":"unknown_op","message":"x"}})"
            "\n");
  // A conflict tells what became of each job of the submit.
  ProtocolError conflict{ErrorCode::kConflict, "jobs[1].dest: taken", "submit", std::nullopt};
  conflict.jobs =
      json::parse(R"([{"id":4,"state":"queued","existing":false},{"error":"conflict","conflicts_with":2}])");
  EXPECT_EQ(encode_error(conflict),
            R"({"ok":false,"op":"submit","error":{"code":"conflict","message":"jobs[1].dest: taken","jobs":)"
            R"([{"existing":false,"id":4,"state":"queued"},{"conflicts_with":2,"error":"conflict"}]}})"
            "\n");
}

TEST(ControlProtocol, EncodeEventShape) {
  EXPECT_EQ(encode_event("stats", "stats", json{{"active", 1}}), R"({"event":"stats","stats":{"active":1}})"
                                                                 "\n");
}

TEST(ControlProtocol, EncodersNeverThrowOnInvalidUtf8) {
  const std::string bad = "a\xff\xfe\n\r\"b\xc3";
  std::string lines[] = {
      encode_result(bad, json(bad), json{{bad, bad}}),
      encode_error({ErrorCode::kInternal, bad, bad, json::array({bad})}),
      encode_event(bad, bad, json(bad)),
  };
  for (const auto& line : lines) {
    json j = parse_line(line);
    EXPECT_TRUE(j.is_object());
    EXPECT_NE(line.find("\xef\xbf\xbd"), std::string::npos) << "invalid bytes become U+FFFD: " << line;
  }
}

TEST(ControlProtocol, ErrorCodeNames) {
  EXPECT_EQ(to_string(ErrorCode::kBadJson), "bad_json");
  EXPECT_EQ(to_string(ErrorCode::kBadRequest), "bad_request");
  EXPECT_EQ(to_string(ErrorCode::kUnknownOp), "unknown_op");
  EXPECT_EQ(to_string(ErrorCode::kLineTooLong), "line_too_long");
  EXPECT_EQ(to_string(ErrorCode::kInvalidJob), "invalid_job");
  EXPECT_EQ(to_string(ErrorCode::kNotFound), "not_found");
  EXPECT_EQ(to_string(ErrorCode::kConflict), "conflict");
  EXPECT_EQ(to_string(ErrorCode::kUnavailable), "unavailable");
  EXPECT_EQ(to_string(ErrorCode::kReloadFailed), "reload_failed");
  EXPECT_EQ(to_string(ErrorCode::kInternal), "internal");
}

TEST(ControlProtocol, OpNames) {
  EXPECT_EQ(op_name(Submit{}), "submit");
  EXPECT_EQ(op_name(Status{}), "status");
  EXPECT_EQ(op_name(List{}), "list");
  EXPECT_EQ(op_name(Cancel{}), "cancel");
  EXPECT_EQ(op_name(Stats{}), "stats");
  EXPECT_EQ(op_name(Watch{}), "watch");
  EXPECT_EQ(op_name(Reload{}), "reload");
  EXPECT_EQ(op_name(Ping{}), "ping");
}

TEST(ControlProtocol, TimeFormat) {
  EXPECT_EQ(format_time_ms(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(format_time_ms(1714566896789), "2024-05-01T12:34:56.789Z");
  EXPECT_EQ(format_time_ms(-1), "1969-12-31T23:59:59.999Z");
}

TEST(ControlProtocol, JobToJson) {
  store::Job job;
  job.id = 12;
  job.key = "client:mine";
  job.url = "https://user:s3cret@example.com/a.bin?token=t0k";
  job.dest = "/srv/out/a.bin";
  job.sha256 = std::string(64, 'a');
  job.size = 123;
  job.headers = {{"Authorization", "Bearer h3ader"}};
  job.priority = 3;
  job.state = store::State::kRunning;
  job.attempts = 2;
  job.error = "timeout";
  job.bytes = 99;
  job.created_ms = 1714566896789;
  job.updated_ms = 1714566897000;
  json j = job_to_json(job);
  const std::string text = j.dump();
  EXPECT_EQ(text.find("s3cret"), std::string::npos) << text;
  EXPECT_EQ(text.find("t0k"), std::string::npos) << text;
  EXPECT_EQ(text.find("h3ader"), std::string::npos) << text;
  EXPECT_EQ(j["id"], 12);
  EXPECT_EQ(j["url"], "https://example.com/a.bin?token=…");
  EXPECT_EQ(j["dest"], "/srv/out/a.bin");
  EXPECT_EQ(j["state"], "running");
  EXPECT_EQ(j["attempts"], 2);
  EXPECT_EQ(j["error"], "timeout");
  EXPECT_EQ(j["bytes"], 99);
  EXPECT_EQ(j["size"], 123);
  EXPECT_EQ(j["sha256"], std::string(64, 'a'));
  EXPECT_EQ(j["priority"], 3);
  EXPECT_EQ(j["key"], "mine");
  EXPECT_EQ(j["created"], "2024-05-01T12:34:56.789Z");
  EXPECT_EQ(j["updated"], "2024-05-01T12:34:57.000Z");
  EXPECT_TRUE(j["finished"].is_null());
  EXPECT_EQ(j["options"], json::object());
  EXPECT_EQ(j["errors"], json::array());
  EXPECT_EQ(j.size(), 16u);

  job.options.retry.retries = 1;
  job.options.max_size = 1024;
  job.options.timeout = std::chrono::seconds(90);
  job.errors = {"HTTP 503 from https://example.com/a.bin?token=…", "timeout"};
  j = job_to_json(job);
  EXPECT_EQ(j["options"], json::parse(R"({"retries":1,"max_size":1024,"timeout":"1m30s"})"));
  EXPECT_EQ(j["errors"], json(job.errors));

  job.key = "config:/srv/out/a.bin\nhttps://user:s3cret@example.com/";
  job.size.reset();
  job.sha256.reset();
  job.state = store::State::kDone;
  job.finished_ms = 1714566898000;
  j = job_to_json(job);
  EXPECT_TRUE(j["key"].is_null());
  EXPECT_TRUE(j["size"].is_null());
  EXPECT_TRUE(j["sha256"].is_null());
  EXPECT_EQ(j["finished"], "2024-05-01T12:34:58.000Z");
  EXPECT_EQ(j["skipped"], false) << "a done job says whether it was downloaded";
  EXPECT_EQ(j.size(), 17u);
  job.skipped = true;
  EXPECT_EQ(job_to_json(job)["skipped"], true);

  json w = watch_job_to_json(job);
  EXPECT_EQ(w.size(), 9u);
  EXPECT_EQ(w["url"], "https://example.com/a.bin?token=…");
  EXPECT_EQ(w["state"], "done");
  EXPECT_EQ(w["skipped"], true);
  EXPECT_EQ(parse_line(encode_event("done", "job", w))["job"]["id"], 12);

  // Only done jobs carry it.
  job.state = store::State::kFailed;
  EXPECT_FALSE(job_to_json(job).contains("skipped"));
  EXPECT_FALSE(watch_job_to_json(job).contains("skipped"));
}

// Bounded random mutation of valid requests: the parser never throws, and whatever it returns encodes to one
// line.
TEST(ControlProtocol, RandomInputsNeverThrow) {
  const std::string seeds[] = {
      R"({"op":"submit","req":[1],"jobs":[{"url":"http://h/a","dest":"x/y","sha256":")" +
          std::string(64, '0') + R"(","size":5,"headers":{"A":"b"},"priority":1,"key":"k"}]})",
      R"({"op":"list","state":"done","after":1,"offset":2,"limit":3})",
      R"({"op":"status","id":5})",
      R"({"op":"ping","req":{"a":"\u00e9\ud83d\ude00"}})",
  };
  std::mt19937_64 rng(12345);
  const char alphabet[] = "{}[]\",:\\0123456789.-+eE \x80\xc3\xff\r\ntruefalsnul";
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string s = seeds[rng() % std::size(seeds)];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !s.empty(); ++e) {
      const std::size_t pos = rng() % s.size();
      const char c = alphabet[rng() % (sizeof alphabet - 1)];
      switch (rng() % 3) {
        case 0:
          s[pos] = c;
          break;
        case 1:
          s.insert(pos, 1, c);
          break;
        default:
          s.erase(pos, 1);
          break;
      }
    }
    ParseResult r;
    ASSERT_NO_THROW(r = parse_request(s)) << s;
    std::string line;
    if (auto* e = std::get_if<ProtocolError>(&r)) {
      ASSERT_NO_THROW(line = encode_error(*e));
    } else {
      ++accepted;
      const auto& req = std::get<Request>(r);
      ASSERT_NO_THROW(line = encode_result(op_name(req.op), req.req, json::object()));
    }
    ASSERT_EQ(line.find('\n'), line.size() - 1) << s;
    json parsed;
    ASSERT_NO_THROW(parsed = json::parse(line)) << line;
    ASSERT_TRUE(parsed.is_object());
  }
  EXPECT_GT(accepted, 0);  // some mutations stay valid (e.g. inside strings)
}

}  // namespace
}  // namespace fetchd::control
