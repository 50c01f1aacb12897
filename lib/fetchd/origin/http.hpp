// SPDX-License-Identifier: Apache-2.0
#pragma once
// Small pure HTTP helpers for the origin: Range evaluation (RFC 9110 §14), reason phrases, target and query
// splitting. Thread: any.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fetchd::origin {

struct RangeDecision {
  enum class Kind {
    kFull,           // no usable single range (absent, malformed, other unit, several ranges): answer 200
    kPartial,        // answer 206 with bytes [first, last]
    kUnsatisfiable,  // answer 416 with Content-Range: bytes */size
  };
  Kind kind = Kind::kFull;
  std::uint64_t first = 0;
  std::uint64_t last = 0;  // inclusive
};

// Evaluates a Range header value ("bytes=a-b", "bytes=a-", "bytes=-suffix") against a body of size bytes.
RangeDecision evaluate_range(std::string_view value, std::uint64_t size);

// "Not Found" for 404; "" for codes without a registered phrase.
std::string_view reason_phrase(int status);

struct Target {
  std::string_view path;
  std::string_view query;  // without the '?'
};
Target split_target(std::string_view target);

// The first value of key in a query string ("a=1&b=2"), percent-decoded; nullopt when absent. "key" without
// "=" yields an empty value.
std::optional<std::string> query_param(std::string_view query, std::string_view key);
// Every value of key, in order, percent-decoded (a fault mode that repeats a header takes one per value).
std::vector<std::string> query_params(std::string_view query, std::string_view key);

}  // namespace fetchd::origin
