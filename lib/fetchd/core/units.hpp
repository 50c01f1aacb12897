// SPDX-License-Identifier: Apache-2.0
#pragma once
// Human sizes ("64KiB", "1.5MB", "4096") and durations ("30s", "2m", "250ms", "1h30m"): the one place they are
// parsed and printed. Parsers return std::nullopt with a reason instead of throwing.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fetchd::core {

struct ParseError {
  std::string message;
};

// Bytes. Suffixes: B, K/KB (1000), KiB (1024), M/MB, MiB, G/GB, GiB, T/TB, TiB; case-insensitive "b".
// A bare number is bytes. Fractions allowed with a suffix ("1.5MiB"). Rejects negatives and overflow.
std::optional<std::uint64_t> parse_size(std::string_view text, std::string* error = nullptr);

// Durations: sequences of <number><unit>, units ms, s, m, h, d ("1h30m", "250ms", "1.5s"). A bare number is
// seconds. Rejects negatives and overflow.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text, std::string* error = nullptr);

std::string format_size(std::uint64_t bytes);              // "64KiB", "1.5MiB", exact when possible
std::string format_duration(std::chrono::milliseconds d);  // "30s", "2m", "1h30m", "250ms"

}  // namespace fetchd::core
