// SPDX-License-Identifier: Apache-2.0
#include "fetchd/origin/request_parser.hpp"

#include <algorithm>
#include <charconv>

namespace fetchd::origin {

namespace {

constexpr std::size_t kMaxMethodLength = 32;
constexpr std::size_t kMaxVersionLength = 8;  // "HTTP/1.1"
// Bounds the per-connection memory of a head made of many tiny header lines.
constexpr std::size_t kMaxHeaders = 128;

// RFC 9110 §5.6.2 token characters.
bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

char to_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return to_lower(x) == to_lower(y); });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

const std::string* Request::header(std::string_view lower_name) const {
  for (const auto& h : headers) {
    if (h.name == lower_name) return &h.value;
  }
  return nullptr;
}

void Request::clear() {
  method.clear();
  target.clear();
  minor_version = 1;
  keep_alive = true;
  content_length = 0;
  headers.clear();
}

void RequestParser::reset() {
  state_ = State::kIncomplete;
  step_ = Step::kStart;
  head_bytes_ = 0;
  body_left_ = 0;
  saw_content_length_ = false;
  connection_close_ = false;
  connection_keep_alive_ = false;
  version_.clear();
  request_.clear();
  error_status_ = 0;
  error_reason_ = "";
}

std::size_t RequestParser::feed(std::string_view input) {
  std::size_t i = 0;
  while (i < input.size() && state_ == State::kIncomplete) {
    if (step_ == Step::kBody) {
      auto n = static_cast<std::size_t>(std::min<std::uint64_t>(body_left_, input.size() - i));
      i += n;
      body_left_ -= n;
      if (body_left_ == 0) state_ = State::kComplete;
      continue;
    }
    if (!step(input[i++])) break;
  }
  return i;
}

bool RequestParser::fail(int status, const char* reason) {
  state_ = State::kError;
  error_status_ = status;
  error_reason_ = reason;
  return false;
}

bool RequestParser::step(char c) {
  if (++head_bytes_ > max_head_bytes_) return fail(431, "request head too large");
  const auto uc = static_cast<unsigned char>(c);
  switch (step_) {
    case Step::kStart:
      // RFC 9112 §2.2: ignore empty lines before the request line.
      if (c == '\r' || c == '\n') return true;
      step_ = Step::kMethod;
      [[fallthrough]];
    case Step::kMethod:
      if (is_tchar(c)) {
        if (request_.method.size() >= kMaxMethodLength) return fail(400, "method too long");
        request_.method.push_back(c);
        return true;
      }
      if (c == ' ' && !request_.method.empty()) {
        step_ = Step::kTarget;
        return true;
      }
      return fail(400, "malformed request line");
    case Step::kTarget:
      if (c == ' ') {
        if (request_.target.empty()) return fail(400, "malformed request line");
        step_ = Step::kVersion;
        return true;
      }
      if (uc <= 0x20 || uc >= 0x7f) return fail(400, "invalid character in request target");
      request_.target.push_back(c);
      return true;
    case Step::kVersion:
      if (c == '\r') {
        step_ = Step::kRequestLineLf;
        return true;
      }
      if (c == '\n') return finish_request_line();
      if (version_.size() >= kMaxVersionLength) return fail(400, "malformed HTTP version");
      version_.push_back(c);
      return true;
    case Step::kRequestLineLf:
      if (c != '\n') return fail(400, "bare CR in request line");
      return finish_request_line();
    case Step::kLineStart:
      if (c == '\r') {
        step_ = Step::kHeadEndLf;
        return true;
      }
      if (c == '\n') return finish_head();
      if (c == ' ' || c == '\t') return fail(400, "obsolete header line folding");
      if (!is_tchar(c)) return fail(400, "malformed header name");
      if (request_.headers.size() >= kMaxHeaders) return fail(431, "too many header fields");
      request_.headers.emplace_back();
      request_.headers.back().name.push_back(to_lower(c));
      step_ = Step::kName;
      return true;
    case Step::kName:
      if (is_tchar(c)) {
        request_.headers.back().name.push_back(to_lower(c));
        return true;
      }
      if (c == ':') {
        step_ = Step::kValue;
        return true;
      }
      return fail(400, "malformed header name");  // includes whitespace before the colon (RFC 9112 §5.1)
    case Step::kValue: {
      if (c == '\r') {
        step_ = Step::kValueLf;
        return true;
      }
      if (c == '\n') return finish_header();
      if (c != '\t' && (uc < 0x20 || uc == 0x7f)) return fail(400, "invalid character in header value");
      auto& value = request_.headers.back().value;
      if (value.empty() && (c == ' ' || c == '\t')) return true;  // leading whitespace
      value.push_back(c);
      return true;
    }
    case Step::kValueLf:
      if (c != '\n') return fail(400, "bare CR in header");
      return finish_header();
    case Step::kHeadEndLf:
      if (c != '\n') return fail(400, "bare CR in header");
      return finish_head();
    case Step::kBody:
      break;  // handled in feed()
  }
  return fail(400, "parser state");
}

bool RequestParser::finish_request_line() {
  const std::string_view v = version_;
  if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || v[6] != '.' || v[5] < '0' || v[5] > '9' || v[7] < '0' ||
      v[7] > '9') {
    return fail(400, "malformed HTTP version");
  }
  if (v[5] != '1') return fail(505, "only HTTP/1.x is supported");
  request_.minor_version = v[7] - '0';
  if (request_.target.front() != '/') return fail(400, "request target must be in origin-form");
  step_ = Step::kLineStart;
  return true;
}

bool RequestParser::finish_header() {
  step_ = Step::kLineStart;
  Header& h = request_.headers.back();
  const auto trimmed_size = trim(h.value).size();  // leading whitespace was never stored
  h.value.resize(trimmed_size);

  if (h.name == "content-length") {
    std::uint64_t n = 0;
    const char* first = h.value.data();
    const char* last = first + h.value.size();
    auto [ptr, ec] = std::from_chars(first, last, n);
    if (h.value.empty() || ec != std::errc() || ptr != last) return fail(400, "invalid Content-Length");
    if (saw_content_length_ && n != request_.content_length) return fail(400, "conflicting Content-Length");
    saw_content_length_ = true;
    request_.content_length = n;
  } else if (h.name == "transfer-encoding") {
    return fail(501, "Transfer-Encoding in requests is not supported");
  } else if (h.name == "connection") {
    std::string_view rest = h.value;
    while (!rest.empty()) {
      auto comma = rest.find(',');
      auto token = trim(rest.substr(0, comma));
      if (iequals(token, "close")) connection_close_ = true;
      if (iequals(token, "keep-alive")) connection_keep_alive_ = true;
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    }
  }
  return true;
}

bool RequestParser::finish_head() {
  // RFC 9112 §3.2: an HTTP/1.1 request without exactly one Host is answered with 400.
  if (request_.minor_version >= 1) {
    auto hosts = std::count_if(request_.headers.begin(), request_.headers.end(),
                               [](const Header& h) { return h.name == "host"; });
    if (hosts != 1) return fail(400, hosts == 0 ? "missing Host header" : "duplicate Host header");
  }
  request_.keep_alive = !connection_close_ && (request_.minor_version >= 1 || connection_keep_alive_);
  if (request_.content_length > kMaxDiscardedBody) return fail(413, "request body too large");
  if (request_.content_length > 0) {
    step_ = Step::kBody;
    body_left_ = request_.content_length;
    return true;
  }
  state_ = State::kComplete;
  return false;
}

}  // namespace fetchd::origin
