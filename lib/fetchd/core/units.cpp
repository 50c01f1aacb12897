// SPDX-License-Identifier: Apache-2.0
#include "fetchd/core/units.hpp"

#include <array>
#include <cctype>
#include <cmath>
#include <limits>

#include <fmt/format.h>

namespace fetchd::core {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

void set(std::string* error, std::string msg) {
  if (error) *error = std::move(msg);
}

// Reads an unsigned decimal with an optional fraction from the front of s. Returns the digit count consumed.
std::size_t read_number(std::string_view s, long double& value, bool& has_fraction) {
  std::size_t i = 0;
  long double v = 0;
  bool digits = false;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
    v = v * 10 + (s[i] - '0');
    ++i;
    digits = true;
  }
  has_fraction = false;
  if (i < s.size() && s[i] == '.') {
    long double scale = 0.1L;
    std::size_t j = i + 1;
    bool frac_digits = false;
    while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) {
      v += (s[j] - '0') * scale;
      scale /= 10;
      ++j;
      frac_digits = true;
    }
    if (!frac_digits) return 0;
    has_fraction = true;
    i = j;
    digits = true;
  }
  if (!digits) return 0;
  value = v;
  return i;
}

}  // namespace

std::optional<std::uint64_t> parse_size(std::string_view text, std::string* error) {
  std::string_view s = trim(text);
  if (s.empty()) {
    set(error, "empty size");
    return std::nullopt;
  }
  if (s.front() == '-') {
    set(error, fmt::format("size '{}' is negative", text));
    return std::nullopt;
  }
  long double value = 0;
  bool fraction = false;
  std::size_t n = read_number(s, value, fraction);
  if (n == 0) {
    set(error, fmt::format("size '{}' does not start with a number (expected e.g. 4096, 64KiB, 1.5MB)", text));
    return std::nullopt;
  }
  std::string unit = lower(trim(s.substr(n)));
  struct Unit {
    const char* name;
    long double factor;
  };
  static constexpr std::array<Unit, 14> kUnits{{{"", 1},
                                                {"b", 1},
                                                {"k", 1e3L},
                                                {"kb", 1e3L},
                                                {"kib", 1024.0L},
                                                {"m", 1e6L},
                                                {"mb", 1e6L},
                                                {"mib", 1048576.0L},
                                                {"g", 1e9L},
                                                {"gb", 1e9L},
                                                {"gib", 1073741824.0L},
                                                {"tb", 1e12L},
                                                {"t", 1e12L},
                                                {"tib", 1099511627776.0L}}};
  for (const auto& u : kUnits) {
    if (unit == u.name) {
      if (fraction && u.factor == 1) {
        set(error, fmt::format("size '{}' has a fraction of a byte", text));
        return std::nullopt;
      }
      long double bytes = value * u.factor;
      if (bytes > static_cast<long double>(std::numeric_limits<std::int64_t>::max())) {
        set(error, fmt::format("size '{}' is too large", text));
        return std::nullopt;
      }
      return static_cast<std::uint64_t>(std::llround(bytes));
    }
  }
  set(error, fmt::format("size '{}' has unknown unit '{}' (use B, KB, KiB, MB, MiB, GB, GiB, TB, TiB)", text,
                         s.substr(n)));
  return std::nullopt;
}

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text, std::string* error) {
  std::string_view s = trim(text);
  if (s.empty()) {
    set(error, "empty duration");
    return std::nullopt;
  }
  if (s.front() == '-') {
    set(error, fmt::format("duration '{}' is negative", text));
    return std::nullopt;
  }
  long double total_ms = 0;
  bool first = true;
  while (!s.empty()) {
    long double value = 0;
    bool fraction = false;
    std::size_t n = read_number(s, value, fraction);
    if (n == 0) {
      set(error, fmt::format("duration '{}' is malformed (expected e.g. 30s, 2m, 250ms, 1h30m)", text));
      return std::nullopt;
    }
    s.remove_prefix(n);
    std::size_t u = 0;
    while (u < s.size() && std::isalpha(static_cast<unsigned char>(s[u]))) ++u;
    std::string unit = lower(s.substr(0, u));
    s.remove_prefix(u);
    long double factor = 0;
    if (unit.empty()) {
      if (!first || !s.empty()) {
        set(error, fmt::format("duration '{}' is missing a unit", text));
        return std::nullopt;
      }
      factor = 1000;
    } else if (unit == "ms") {
      factor = 1;
    } else if (unit == "s" || unit == "sec") {
      factor = 1000;
    } else if (unit == "m" || unit == "min") {
      factor = 60'000;
    } else if (unit == "h") {
      factor = 3'600'000;
    } else if (unit == "d") {
      factor = 86'400'000;
    } else {
      set(error, fmt::format("duration '{}' has unknown unit '{}' (use ms, s, m, h, d)", text, unit));
      return std::nullopt;
    }
    total_ms += value * factor;
    first = false;
    s = trim(s);
  }
  if (total_ms > static_cast<long double>(std::numeric_limits<std::int64_t>::max() / 2)) {
    set(error, fmt::format("duration '{}' is too large", text));
    return std::nullopt;
  }
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(total_ms)));
}

std::string format_size(std::uint64_t bytes) {
  static constexpr std::array<const char*, 5> kNames{"B", "KiB", "MiB", "GiB", "TiB"};
  std::size_t i = 0;
  std::uint64_t v = bytes;
  while (i + 1 < kNames.size() && v >= 1024 && v % 1024 == 0) {
    v /= 1024;
    ++i;
  }
  if (i == 0 && bytes >= 1024) {
    // Not an exact multiple: print with one decimal in the largest fitting unit.
    double d = static_cast<double>(bytes);
    std::size_t j = 0;
    while (j + 1 < kNames.size() && d >= 1024) {
      d /= 1024;
      ++j;
    }
    return fmt::format("{:.1f}{}", d, kNames[j]);
  }
  return fmt::format("{}{}", v, kNames[i]);
}

std::string format_duration(std::chrono::milliseconds d) {
  auto ms = d.count();
  if (ms == 0) return "0s";
  if (ms % 1000 != 0) return fmt::format("{}ms", ms);
  auto s = ms / 1000;
  std::string out;
  if (s >= 86400 && s % 86400 == 0) return fmt::format("{}d", s / 86400);
  if (s >= 3600) {
    out += fmt::format("{}h", s / 3600);
    s %= 3600;
  }
  if (s >= 60) {
    out += fmt::format("{}m", s / 60);
    s %= 60;
  }
  if (s > 0) out += fmt::format("{}s", s);
  return out;
}

}  // namespace fetchd::core
