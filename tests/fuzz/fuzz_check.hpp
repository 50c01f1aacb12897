// SPDX-License-Identifier: Apache-2.0
#pragma once
// What the fuzz targets share: FUZZ_CHECK, an invariant that aborts (libFuzzer then saves the input as a
// crash artifact), and a printable form of arbitrary bytes for its message. Single-threaded, like libFuzzer.

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace fetchd::fuzz {

[[noreturn]] inline void fail(const char* file, int line, const char* condition, const std::string& detail) {
  std::fprintf(stderr, "\n%s:%d: fuzz invariant failed: %s\n%s\n", file, line, condition, detail.c_str());
  std::fflush(stderr);
  std::abort();
}

// Bytes as a C string literal body, cut at 512 bytes: messages must stay readable whatever the input.
inline std::string printable(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size() && i < 512; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\\' || c == '"') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > 512) out += fmt::format("...({} bytes)", s.size());
  return "\"" + out + "\"";
}

// FETCHD_FUZZ_IGNORE=<id>[,<id>...] names open findings (docs/fuzzing.md, "Findings") whose inputs a target
// then lets pass, so that a long run can look past a bug that is known but not fixed yet. Never set in CI.
inline bool ignored(std::string_view id) {
  static const std::string list = [] {
    const char* v = std::getenv("FETCHD_FUZZ_IGNORE");
    return "," + std::string(v ? v : "") + ",";
  }();
  return list.find("," + std::string(id) + ",") != std::string::npos;
}

// Valid UTF-8 (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF), checked independently of the
// code under test.
inline bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = 0;
    unsigned char lo = 0x80;
    unsigned char hi = 0xbf;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      lo = c == 0xe0 ? 0xa0 : 0x80;
      hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      lo = c == 0xf0 ? 0x90 : 0x80;
      hi = c == 0xf4 ? 0x8f : 0xbf;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    const auto c1 = static_cast<unsigned char>(s[i + 1]);
    if (c1 < lo || c1 > hi) return false;
    for (std::size_t k = 2; k < len; ++k) {
      const auto ck = static_cast<unsigned char>(s[i + k]);
      if (ck < 0x80 || ck > 0xbf) return false;
    }
    i += len;
  }
  return true;
}

}  // namespace fetchd::fuzz

// Aborts with the condition, file:line and a formatted detail (fmt syntax) when `cond` is false.
#define FUZZ_CHECK(cond, ...)                                                                 \
  do {                                                                                        \
    if (!(cond)) ::fetchd::fuzz::fail(__FILE__, __LINE__, #cond, ::fmt::format(__VA_ARGS__)); \
  } while (0)
