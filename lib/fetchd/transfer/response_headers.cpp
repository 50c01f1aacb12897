// SPDX-License-Identifier: Apache-2.0
#include "fetchd/transfer/response_headers.hpp"

#include <curl/curl.h>
#include <fmt/format.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <charconv>

namespace fetchd::transfer {

namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Any token of a comma-separated list equals `token`, case-insensitively.
bool list_contains(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    auto comma = list.find(',');
    if (iequals(trim(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

std::optional<StatusLine> parse_status_line(std::string_view line) {
  line = trim(line);
  if (line.substr(0, 5) != "HTTP/") return std::nullopt;
  auto space = line.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  std::string_view rest = line.substr(space + 1);
  std::string_view code = rest.substr(0, 3);
  if (code.size() != 3 || !all_digits(code) || (rest.size() > 3 && rest[3] != ' ')) return std::nullopt;
  StatusLine out;
  out.status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
  if (rest.size() > 3) out.reason = std::string(trim(rest.substr(4)));
  return out;
}

std::optional<std::chrono::seconds> parse_retry_after(std::string_view value, std::time_t now) {
  value = trim(value);
  if (value.empty()) return std::nullopt;
  if (value.front() == '-' && all_digits(value.substr(1))) return std::chrono::seconds(0);
  if (all_digits(value)) {
    std::uint64_t n = 0;
    auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec == std::errc::result_out_of_range || n > static_cast<std::uint64_t>(kMaxRetryAfter.count())) {
      return kMaxRetryAfter;
    }
    return std::chrono::seconds(static_cast<std::int64_t>(n));
  }
  std::string date(value);
  std::time_t when = curl_getdate(date.c_str(), nullptr);
  if (when == -1) return std::nullopt;
  if (when <= now) return std::chrono::seconds(0);
  return std::min(std::chrono::seconds(when - now), kMaxRetryAfter);
}

std::optional<std::uint64_t> parse_content_length(std::string_view value) {
  std::optional<std::uint64_t> out;
  while (true) {
    auto comma = value.find(',');
    std::string_view item = trim(value.substr(0, comma));
    if (!all_digits(item)) return std::nullopt;
    std::uint64_t n = 0;
    auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), n);
    if (ec != std::errc()) return std::nullopt;
    if (out && *out != n) return std::nullopt;
    out = n;
    if (comma == std::string_view::npos) return out;
    value.remove_prefix(comma + 1);
  }
}

std::optional<ContentRange> parse_content_range(std::string_view value) {
  value = trim(value);
  if (value.size() < 6 || !iequals(value.substr(0, 6), "bytes ")) return std::nullopt;
  value = trim(value.substr(6));
  auto slash = value.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto number = [](std::string_view s) -> std::optional<std::uint64_t> {
    std::uint64_t n = 0;
    if (!all_digits(s)) return std::nullopt;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec != std::errc()) return std::nullopt;
    return n;
  };
  ContentRange out;
  std::string_view range = value.substr(0, slash);
  std::string_view total = value.substr(slash + 1);
  if (total != "*") {
    out.total = number(total);
    if (!out.total) return std::nullopt;
  }
  if (range == "*") {
    if (!out.total) return std::nullopt;
    out.satisfied = false;
    return out;
  }
  auto dash = range.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  auto first = number(range.substr(0, dash));
  auto last = number(range.substr(dash + 1));
  if (!first || !last || *last < *first || (out.total && *last >= *out.total)) return std::nullopt;
  out.first = *first;
  out.last = *last;
  return out;
}

std::optional<std::string> parse_digest_sha256(std::string_view value) {
  while (!value.empty()) {
    auto comma = value.find(',');
    std::string_view member = trim(value.substr(0, comma));
    value = comma == std::string_view::npos ? std::string_view{} : value.substr(comma + 1);
    auto eq = member.find('=');
    if (eq == std::string_view::npos || !iequals(trim(member.substr(0, eq)), "sha-256")) continue;
    std::string_view b64 = trim(member.substr(eq + 1));
    // A byte sequence (RFC 8941 3.3.5): ":" base64 ":". sha-256 is 32 bytes: 44 base64 characters.
    if (b64.size() != 46 || b64.front() != ':' || b64.back() != ':') return std::nullopt;
    b64 = b64.substr(1, 44);
    unsigned char raw[34];  // EVP_DecodeBlock writes 3 bytes per 4 characters, padding included
    std::string in(b64);
    if (EVP_DecodeBlock(raw, reinterpret_cast<const unsigned char*>(in.data()), 44) != 33 || in[43] != '=' ||
        in[42] == '=') {
      return std::nullopt;
    }
    static constexpr char kHex[] = "0123456789abcdef";
    std::string hex;
    for (int i = 0; i < 32; ++i) {
      hex.push_back(kHex[raw[i] >> 4]);
      hex.push_back(kHex[raw[i] & 15]);
    }
    return hex;
  }
  return std::string();
}

bool ResponseHeaders::on_line(std::string_view line, std::time_t now) {
  if (auto status_line = parse_status_line(line)) {
    *this = ResponseHeaders{};
    status = status_line->status;
    reason = std::move(status_line->reason);
    return true;
  }
  if (status == 0 || complete) return true;  // before any status line, or trailers after the header block
  std::string_view text = trim(line);
  if (text.empty()) {
    complete = true;
    return true;
  }
  auto colon = text.find(':');
  if (colon == std::string_view::npos) return true;  // obs-fold continuation or junk: nothing we use
  std::string_view name = trim(text.substr(0, colon));
  std::string_view value = trim(text.substr(colon + 1));
  if (iequals(name, "Content-Length")) {
    auto n = parse_content_length(value);
    if (!n) {
      error = "invalid Content-Length";
      return false;
    }
    if (content_length && *content_length != *n) {
      error = "conflicting Content-Length headers";
      return false;
    }
    content_length = n;
  } else if (iequals(name, "Transfer-Encoding")) {
    chunked = chunked || list_contains(value, "chunked");
  } else if (iequals(name, "Retry-After")) {
    retry_after = parse_retry_after(value, now);
  } else if (iequals(name, "ETag")) {
    etag = std::string(value);
  } else if (iequals(name, "Last-Modified")) {
    last_modified = std::string(value);
  } else if (iequals(name, "Location")) {
    location = std::string(value);
  } else if (iequals(name, "Content-Range")) {
    content_range = parse_content_range(value);
    if (!content_range) {
      error = "invalid Content-Range";
      return false;
    }
  } else if (iequals(name, "Content-Digest") || iequals(name, "Repr-Digest")) {
    auto hex = parse_digest_sha256(value);
    if (!hex) {
      error = fmt::format("invalid sha-256 member in {}", name);
      return false;
    }
    (iequals(name, "Content-Digest") ? content_digest_sha256 : repr_digest_sha256) = std::move(*hex);
  }
  return true;
}

}  // namespace fetchd::transfer
