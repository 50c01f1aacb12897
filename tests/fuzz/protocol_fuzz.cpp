// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the control socket's framing and request parser (docs/protocol.md, docs/fuzzing.md).
//
// Input: a small header, then the byte stream a client sends.
//   byte 0        bits 0-2: count-1 of the read sizes that follow (1..8); bit 6: read sizes x16;
//                 bit 7: a small line limit follows (else control::kMaxLineBytes)
//   bytes 1..n    read sizes (1 + byte), cycled over the stream: how the kernel hands it to the server
//   [1 byte]      with bit 7: the line limit, 1 + 2 * byte
//   rest          the stream
// The stream is split into lines twice: at once (the framing rules of docs/protocol.md, written here from the
// text) and in reads of the sizes above (the algorithm of Connection::feed in control_server.cpp). Both must
// yield the same sequence of answers, each parsed independently. Every parse result is then checked against
// what protocol.hpp promises.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "fetchd/config/validate.hpp"
#include "fetchd/control/line_splitter.hpp"
#include "fetchd/control/protocol.hpp"
#include "fetchd/core/dest_path.hpp"
#include "fetchd/store/job_store.hpp"
#include "fuzz_check.hpp"

namespace {

using namespace fetchd;
using control::ErrorCode;
using control::ParseResult;
using control::ProtocolError;
using control::Request;
using fuzz::printable;
using json = nlohmann::json;

constexpr std::string_view kTooLong = "<line_too_long>";
constexpr std::string_view kOpNames[] = {"submit", "status", "list",   "cancel",
                                         "stats",  "watch",  "reload", "ping"};

struct Input {
  std::size_t max_line = control::kMaxLineBytes;
  std::vector<std::size_t> reads;
  std::string_view stream;
};

Input decode(const std::uint8_t* data, std::size_t size) {
  Input in;
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  unsigned flags = 0;
  if (!rest.empty()) {
    flags = static_cast<unsigned char>(rest.front());
    rest.remove_prefix(1);
  }
  const std::size_t count = 1 + (flags & 7u);
  const std::size_t scale = (flags & 0x40u) ? 16 : 1;
  for (std::size_t i = 0; i < count && !rest.empty(); ++i) {
    in.reads.push_back((1 + static_cast<unsigned char>(rest.front())) * scale);
    rest.remove_prefix(1);
  }
  if (in.reads.empty()) in.reads.push_back(1);
  if ((flags & 0x80u) && !rest.empty()) {
    in.max_line = 1 + 2 * static_cast<std::size_t>(static_cast<unsigned char>(rest.front()));
    rest.remove_prefix(1);
  }
  in.stream = rest;
  return in;
}

// The op with every field, so that two parses compare equal only when they agree on everything.
json op_json(const control::Op& op) {
  struct Visitor {
    json operator()(const control::Submit& s) const {
      json jobs = json::array();
      for (const auto& j : s.jobs) {
        json headers = json::array();
        for (const auto& [name, value] : j.headers) headers.push_back(json::array({name, value}));
        jobs.push_back({{"url", j.url},
                        {"dest", j.dest ? json(*j.dest) : json()},
                        {"sha256", j.sha256 ? json(*j.sha256) : json()},
                        {"size", j.size ? json(*j.size) : json()},
                        {"headers", std::move(headers)},
                        {"priority", j.priority},
                        {"key", j.key ? json(*j.key) : json()}});
      }
      return {{"jobs", std::move(jobs)}};
    }
    json operator()(const control::Status& s) const { return {{"id", s.id}}; }
    json operator()(const control::Cancel& c) const { return {{"id", c.id}}; }
    json operator()(const control::List& l) const {
      return {{"state", l.state ? json(std::string(store::to_string(*l.state))) : json()},
              {"after", l.after},
              {"offset", l.offset},
              {"limit", l.limit}};
    }
    json operator()(const control::Stats&) const { return json::object(); }
    json operator()(const control::Watch&) const { return json::object(); }
    json operator()(const control::Reload&) const { return json::object(); }
    json operator()(const control::Ping&) const { return json::object(); }
  };
  return std::visit(Visitor{}, op);
}

std::string encode(const ParseResult& r) {
  if (const auto* e = std::get_if<ProtocolError>(&r)) return control::encode_error(*e);
  const auto& q = std::get<Request>(r);
  return control::encode_result(control::op_name(q.op), q.req, op_json(q.op));
}

bool known_op(std::string_view name) {
  for (auto n : kOpNames) {
    if (n == name) return true;
  }
  return false;
}

bool is_lower_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

// An encoded answer is exactly one line of JSON.
json check_line(std::string_view encoded, std::string_view line) {
  FUZZ_CHECK(!encoded.empty() && encoded.back() == '\n' && encoded.find('\n') == encoded.size() - 1,
             "an encoded answer is not one line: {}\nline: {}", printable(encoded), printable(line));
  json doc = json::parse(encoded, nullptr, /*allow_exceptions=*/false);
  FUZZ_CHECK(doc.is_object(), "an encoded answer is not a JSON object: {}\nline: {}", printable(encoded),
             printable(line));
  return doc;
}

// The userinfo of an http(s)-looking URL ("user:pass" of "http://user:pass@host/"): [begin, end) or nullopt.
std::optional<std::pair<std::size_t, std::size_t>> userinfo_span(std::string_view url) {
  const auto scheme = url.find("://");
  if (scheme == std::string_view::npos) return std::nullopt;
  const std::size_t begin = scheme + 3;
  std::size_t end = url.find_first_of("/?#", begin);
  if (end == std::string_view::npos) end = url.size();
  const auto at = url.substr(begin, end - begin).rfind('@');
  if (at == std::string_view::npos || at == 0) return std::nullopt;
  return std::make_pair(begin, begin + at);
}

// "never quotes a header value or a URL's userinfo" (protocol.hpp, docs/protocol.md): every header value and
// userinfo of the request is replaced by a marker (a bad value by a marker that is bad the same way), and the
// error for the masked request must not contain a marker.
void check_secrets_not_echoed(const json& doc, std::string_view line) {
  if (line.find("Zq9") != std::string_view::npos) return;  // the marker would be the client's own text
  auto jobs = doc.find("jobs");
  if (jobs == doc.end() || !jobs->is_array()) return;
  json masked = doc;
  bool any = false;
  int n = 0;
  for (auto& job : masked["jobs"]) {
    if (!job.is_object()) continue;
    if (auto h = job.find("headers"); h != job.end() && h->is_object()) {
      for (auto& item : h->items()) {
        json& value = item.value();
        if (!value.is_string()) continue;
        const bool ok = config::header_value_ok(value.get_ref<const std::string&>());
        value = std::string(ok ? "Zq9value" : "Zq9value\n") + std::to_string(n++);
        any = true;
      }
    }
    if (auto u = job.find("url"); u != job.end() && u->is_string()) {
      std::string url = u->get<std::string>();
      if (auto span = userinfo_span(url)) {
        url.replace(span->first, span->second - span->first, "Zq9user:Zq9pass");
        *u = std::move(url);
        any = true;
      }
    }
  }
  if (!any) return;
  const std::string masked_line = masked.dump(-1, ' ', false, json::error_handler_t::replace);
  const ParseResult r = control::parse_request(masked_line);
  if (const auto* e = std::get_if<ProtocolError>(&r)) {
    FUZZ_CHECK(e->message.find("Zq9") == std::string::npos,
               "an error message quotes a header value or URL userinfo: {}\nmasked line: {}\nline: {}",
               printable(e->message), printable(masked_line), printable(line));
  }
}

void check_request(const Request& q, std::string_view line) {
  if (const auto* s = std::get_if<control::Submit>(&q.op)) {
    FUZZ_CHECK(!s->jobs.empty() && s->jobs.size() <= control::kMaxJobsPerSubmit, "submit with {} jobs: {}",
               s->jobs.size(), printable(line));
    for (const auto& j : s->jobs) {
      FUZZ_CHECK(config::url_problem(j.url).empty(), "accepted URL {} has a problem: {}", printable(j.url),
                 printable(line));
      if (j.dest) {
        std::string why;
        auto again = core::normalize_relative_dest(*j.dest, &why);
        FUZZ_CHECK(again && *again == *j.dest, "accepted dest {} is not normalized ({}): {}",
                   printable(*j.dest), why, printable(line));
      }
      if (j.sha256) {
        FUZZ_CHECK(j.sha256->size() == 64 && std::all_of(j.sha256->begin(), j.sha256->end(), is_lower_hex),
                   "accepted sha256 {}: {}", printable(*j.sha256), printable(line));
      }
      for (const auto& [name, value] : j.headers) {
        FUZZ_CHECK(config::header_name_ok(name) && config::header_value_ok(value), "accepted header {}: {}",
                   printable(name), printable(line));
      }
      if (j.key) {
        FUZZ_CHECK(!j.key->empty() && j.key->size() <= control::kMaxKeyBytes, "accepted key of {} bytes: {}",
                   j.key->size(), printable(line));
      }
    }
  } else if (const auto* st = std::get_if<control::Status>(&q.op)) {
    FUZZ_CHECK(st->id > 0, "status id 0: {}", printable(line));
  } else if (const auto* c = std::get_if<control::Cancel>(&q.op)) {
    FUZZ_CHECK(c->id > 0, "cancel id 0: {}", printable(line));
  } else if (const auto* l = std::get_if<control::List>(&q.op)) {
    FUZZ_CHECK(l->limit >= 1 && l->limit <= control::kMaxListLimit, "list limit {}: {}", l->limit,
               printable(line));
  }
  const json doc = check_line(encode(ParseResult{q}), line);
  FUZZ_CHECK(doc.value("ok", false) == true && doc.value("op", "") == control::op_name(q.op),
             "encoded result {} for {}", doc.dump(), printable(line));
}

void check_error(const ProtocolError& e, std::string_view line) {
  // Open finding "json-number-overflow" (docs/fuzzing.md): nlohmann throws out_of_range, not parse_error, for
  // a number beyond double ("1e999"), and parse_object catches only parse_error.
  if (e.code == ErrorCode::kInternal && e.message.find("out_of_range.406") != std::string::npos &&
      fuzz::ignored("json-number-overflow"))
    return;
  FUZZ_CHECK(e.code != ErrorCode::kInternal, "internal error (\"a bug\", docs/protocol.md): {}\nline: {}",
             printable(e.message), printable(line));
  FUZZ_CHECK(e.code == ErrorCode::kBadJson || e.code == ErrorCode::kBadRequest ||
                 e.code == ErrorCode::kUnknownOp || e.code == ErrorCode::kInvalidJob,
             "parse_request returned code {} for a line within the limit: {}", control::to_string(e.code),
             printable(line));
  FUZZ_CHECK(!e.message.empty(), "empty error message: {}", printable(line));
  if (e.op) {
    FUZZ_CHECK(known_op(*e.op) && (e.code == ErrorCode::kBadRequest || e.code == ErrorCode::kInvalidJob),
               "error names op {} with code {}: {}", printable(*e.op), control::to_string(e.code),
               printable(line));
  } else {
    FUZZ_CHECK(e.code != ErrorCode::kInvalidJob, "invalid_job without an op: {}", printable(line));
  }
  if (e.code == ErrorCode::kInvalidJob) {
    // docs/protocol.md: "the message starts with jobs[<i>].<field>: " (a job that is not an object has no
    // field: "jobs[<i>]: must be an object").
    bool ok = e.message.starts_with("jobs[");
    std::size_t i = 5;
    while (ok && i < e.message.size() && e.message[i] >= '0' && e.message[i] <= '9') ++i;
    ok = ok && i > 5 && i + 1 < e.message.size() && e.message[i] == ']' &&
         (e.message[i + 1] == '.' || e.message[i + 1] == ':');
    FUZZ_CHECK(ok, "invalid_job message does not start with jobs[i]: {}\nline: {}", printable(e.message),
               printable(line));
  }
  const json doc = check_line(control::encode_error(e), line);
  FUZZ_CHECK(doc.value("ok", true) == false && doc.contains("error") && doc["error"].is_object() &&
                 doc["error"].value("code", "") == control::to_string(e.code) &&
                 doc["error"].value("message", "") == e.message && doc.contains("op") &&
                 (e.op ? doc["op"] == *e.op : doc["op"].is_null()),
             "encoded error {} for {}", doc.dump(), printable(line));
}

// Everything protocol.hpp promises about one parsed line.
void check_result(const ParseResult& r, std::string_view line) {
  const auto* e = std::get_if<ProtocolError>(&r);
  if (e) check_error(*e, line);
  if (!e) check_request(std::get<Request>(r), line);
  // (internal only gets here when check_error let it pass: FETCHD_FUZZ_IGNORE)
  if (e && (e->code == ErrorCode::kBadJson || e->code == ErrorCode::kInternal)) return;
  // The line is a JSON object nested at most kMaxJsonDepth deep: parse it independently.
  const json doc = json::parse(line, nullptr, /*allow_exceptions=*/false);
  FUZZ_CHECK(doc.is_object(), "accepted as JSON but not a JSON object here: {}", printable(line));
  const std::optional<json>& req = e ? e->req : std::get<Request>(r).req;
  const auto it = doc.find("req");
  FUZZ_CHECK((it == doc.end() && !req) || (it != doc.end() && req && *it == *req),
             "req is not echoed verbatim: {}", printable(line));
  check_secrets_not_echoed(doc, line);
}

// The framing of docs/protocol.md, applied to the whole stream at once.
std::vector<std::string> split_at_once(std::string_view s, std::size_t max_line, bool check) {
  std::vector<std::string> out;
  bool first = true;
  for (;;) {
    const auto nl = s.find('\n');
    if (nl == std::string_view::npos) {
      // A line that cannot fit even before its '\n' arrives is refused; a shorter unfinished one is dropped
      // at EOF.
      if (s.size() > max_line + 1) out.emplace_back(kTooLong);
      return out;
    }
    std::string_view line = s.substr(0, nl);
    s.remove_prefix(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > max_line) {
      out.emplace_back(kTooLong);
      return out;
    }
    if (line.empty()) continue;
    const ParseResult r = control::parse_request(line);
    std::string encoded = encode(r);
    if (check) {
      check_result(r, line);
      if (first && line.back() != '\r') {
        // "a trailing \r or \n is tolerated" (protocol.hpp)
        const std::string with_nl = std::string(line) + "\n";
        const std::string with_crlf = std::string(line) + "\r\n";
        FUZZ_CHECK(encode(control::parse_request(with_nl)) == encoded &&
                       encode(control::parse_request(with_crlf)) == encoded,
                   "a trailing newline changes the answer to {}", printable(line));
      }
    }
    first = false;
    out.push_back(std::move(encoded));
  }
}

// The server's own framing (LineSplitter, which Connection::feed drives) fed in reads of arbitrary sizes; it
// must agree with split_at_once's reading of docs/protocol.md.
class ChunkedSplitter {
 public:
  explicit ChunkedSplitter(std::size_t max_line) : splitter_(max_line) {}

  void feed(std::string_view data) {
    const auto fed = splitter_.feed(data, [this](std::string_view line) {
      out_.push_back(encode(control::parse_request(line)));
      return true;
    });
    if (fed.stop == control::LineSplitter::Stop::kTooLong && !refused_) {
      refused_ = true;
      out_.emplace_back(kTooLong);
    }
  }

  std::vector<std::string> finish() {
    splitter_.drop_partial();
    return std::move(out_);
  }

 private:
  control::LineSplitter splitter_;
  bool refused_ = false;
  std::vector<std::string> out_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const Input in = decode(data, size);

  const std::vector<std::string> at_once = split_at_once(in.stream, in.max_line, /*check=*/true);

  ChunkedSplitter splitter(in.max_line);
  std::string_view rest = in.stream;
  for (std::size_t i = 0; !rest.empty(); ++i) {
    const std::size_t n = std::min(rest.size(), in.reads[i % in.reads.size()]);
    splitter.feed(rest.substr(0, n));
    rest.remove_prefix(n);
  }
  const std::vector<std::string> chunked = splitter.finish();

  if (chunked != at_once) {
    std::string detail =
        fmt::format("max_line {}, {} vs {} answers\n", in.max_line, at_once.size(), chunked.size());
    for (std::size_t i = 0; i < std::max(at_once.size(), chunked.size()); ++i) {
      detail += fmt::format("  [{}] at once: {}\n      chunked: {}\n", i,
                            i < at_once.size() ? printable(at_once[i]) : "-",
                            i < chunked.size() ? printable(chunked[i]) : "-");
    }
    FUZZ_CHECK(chunked == at_once, "chunked and one-shot framing disagree: {}stream: {}", detail,
               printable(in.stream));
  }
  return 0;
}
