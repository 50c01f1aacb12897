// SPDX-License-Identifier: Apache-2.0
#include "fetchd/origin/http.hpp"

#include <algorithm>
#include <charconv>

#include "fetchd/core/text.hpp"

namespace fetchd::origin {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// All of s must be decimal digits (at least one).
std::optional<std::uint64_t> parse_u64(std::string_view s) {
  std::uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace

RangeDecision evaluate_range(std::string_view value, std::uint64_t size) {
  using Kind = RangeDecision::Kind;
  value = trim(value);
  auto eq = value.find('=');
  if (eq == std::string_view::npos) return {};
  auto unit = trim(value.substr(0, eq));
  if (unit.size() != 5 || (unit[0] | 0x20) != 'b' || (unit[1] | 0x20) != 'y' || (unit[2] | 0x20) != 't' ||
      (unit[3] | 0x20) != 'e' || (unit[4] | 0x20) != 's') {
    return {};  // unknown unit: ignore the header
  }
  auto spec = trim(value.substr(eq + 1));
  // Several ranges may be answered with the whole body (RFC 9110 §14.2: a server MAY ignore Range).
  if (spec.find(',') != std::string_view::npos) return {};
  auto dash = spec.find('-');
  if (dash == std::string_view::npos) return {};
  auto first_text = trim(spec.substr(0, dash));
  auto last_text = trim(spec.substr(dash + 1));

  if (first_text.empty()) {  // suffix: the last N bytes
    auto suffix = parse_u64(last_text);
    if (!suffix) return {};
    if (*suffix == 0 || size == 0) return {Kind::kUnsatisfiable, 0, 0};
    std::uint64_t n = std::min(*suffix, size);
    return {Kind::kPartial, size - n, size - 1};
  }
  auto first = parse_u64(first_text);
  if (!first) return {};
  std::uint64_t last = size == 0 ? 0 : size - 1;
  if (!last_text.empty()) {
    auto parsed = parse_u64(last_text);
    if (!parsed || *parsed < *first) return {};  // syntactically invalid: ignore
    last = std::min(*parsed, last);
  }
  if (*first >= size) return {Kind::kUnsatisfiable, 0, 0};
  return {Kind::kPartial, *first, last};
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 416:
      return "Range Not Satisfiable";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "";
  }
}

Target split_target(std::string_view target) {
  auto q = target.find('?');
  if (q == std::string_view::npos) return {target, {}};
  return {target.substr(0, q), target.substr(q + 1)};
}

namespace {

// Calls f(decoded value) for each key=value pair named key, in order, until f returns false.
template <typename F>
void for_each_param(std::string_view query, std::string_view key, F&& f) {
  while (!query.empty()) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    auto eq = pair.find('=');
    auto name = pair.substr(0, eq);
    if (name == key &&
        !f(core::percent_decode(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1)))) {
      return;
    }
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
  }
}

}  // namespace

std::optional<std::string> query_param(std::string_view query, std::string_view key) {
  std::optional<std::string> out;
  for_each_param(query, key, [&](std::string value) {
    out = std::move(value);
    return false;
  });
  return out;
}

std::vector<std::string> query_params(std::string_view query, std::string_view key) {
  std::vector<std::string> out;
  for_each_param(query, key, [&](std::string value) {
    out.push_back(std::move(value));
    return true;
  });
  return out;
}

}  // namespace fetchd::origin
