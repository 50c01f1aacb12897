// SPDX-License-Identifier: Apache-2.0
#pragma once
// What a transfer's header callback learned about the current HTTP response. curl shows the headers of every
// response of a redirect chain (and of 1xx interim responses), so each status line starts afresh: only the
// last response's fields remain. Internal to the transfer component; public for its tests. Thread: the thread
// driving the transfer.

#include <chrono>
#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

namespace fetchd::transfer {

// Content-Range (RFC 9110 14.4): "bytes first-last/total" (total may be "*"), or "bytes */total" on a 416.
struct ContentRange {
  bool satisfied = true;  // false for "bytes */total"
  std::uint64_t first = 0;
  std::uint64_t last = 0;
  std::optional<std::uint64_t> total;
};
std::optional<ContentRange> parse_content_range(std::string_view value);

// The sha-256 member of a Content-Digest or Repr-Digest field (RFC 9530: a structured-field dictionary,
// "sha-256=:<base64>:, sha-512=:...:"), as lowercase hex. "" when the field has no sha-256 member; nullopt
// when that member is malformed.
std::optional<std::string> parse_digest_sha256(std::string_view value);

struct ResponseHeaders {
  long status = 0;  // 0 until a status line was seen
  std::string reason;
  std::optional<std::uint64_t> content_length;
  bool chunked = false;  // Transfer-Encoding: chunked; Content-Length then says nothing about the body
  std::optional<std::chrono::seconds> retry_after;
  std::string etag;           // kept for resume (If-Range)
  std::string last_modified;  // kept for resume (If-Range)
  std::string location;
  std::optional<ContentRange> content_range;
  std::string content_digest_sha256;  // RFC 9530 Content-Digest: of this response's content (lowercase hex)
  std::string repr_digest_sha256;     // RFC 9530 Repr-Digest: of the whole representation (lowercase hex)
  bool complete = false;  // the blank line ending the header block was seen
  std::string error;      // a malformed header that must stop the transfer

  // One header line as curl hands it over (CR LF included). now: for Retry-After given as an HTTP date.
  // Returns false when the response is malformed (error says why); the caller aborts the transfer.
  bool on_line(std::string_view line, std::time_t now);
};

// "HTTP/1.1 404 Not Found" -> 404 and "Not Found"; "HTTP/2 200" -> 200 and "". nullopt when not a status
// line.
struct StatusLine {
  long status = 0;
  std::string reason;
};
std::optional<StatusLine> parse_status_line(std::string_view line);

// Retry-After (RFC 9110 10.2.3): delay-seconds or an HTTP-date, as seconds from now. Past dates and negative
// numbers give 0; huge numbers saturate at kMaxRetryAfter (the scheduler clamps to its own maximum). nullopt
// for garbage.
inline constexpr std::chrono::seconds kMaxRetryAfter{std::int64_t{1} << 31};
std::optional<std::chrono::seconds> parse_retry_after(std::string_view value, std::time_t now);

// Content-Length: digits, or a comma-separated list of identical values (RFC 9110 8.6). nullopt when invalid.
std::optional<std::uint64_t> parse_content_length(std::string_view value);

}  // namespace fetchd::transfer
