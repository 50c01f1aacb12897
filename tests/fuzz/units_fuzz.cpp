// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: human sizes and durations (core/units.hpp, docs/fuzzing.md). The input is parsed as a
// size and as a duration; its first 8 bytes are also a number to print. Checked:
//   - a refusal comes with a reason; an accepted size is at most INT64_MAX ("rejects overflow");
//   - format_size prints every size up to INT64_MAX in a form parse_size reads back: exactly when it has no
//     fraction ("exact when possible"), else within half a unit of the last digit (except just under
//     INT64_MAX, where the rounded form is over the limit);
//   - format_duration prints every duration parse_duration accepts (0 .. INT64_MAX/2 ms) so that it reads
//     back exactly.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>

#include "fetchd/core/units.hpp"
#include "fuzz_check.hpp"

namespace {

using namespace fetchd;
using fuzz::printable;
using std::chrono::milliseconds;

constexpr std::uint64_t kMaxSize = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
constexpr std::int64_t kMaxDurationMs = std::numeric_limits<std::int64_t>::max() / 2;

void check_size_round_trip(std::uint64_t bytes, std::string_view input) {
  const std::string text = core::format_size(bytes);
  std::string why;
  const auto back = core::parse_size(text, &why);
  // Rounding to one decimal can print a size just under INT64_MAX as one just over it ("8388608.0TiB" for
  // INT64_MAX), which parse_size then refuses as too large; config's exact_size() falls back to bytes there.
  if (!back && text.find('.') != std::string::npos && bytes > kMaxSize - kMaxSize / 20) return;
  FUZZ_CHECK(back.has_value(), "format_size({}) = {} does not parse: {} (input {})", bytes, printable(text),
             why, printable(input));
  if (text.find('.') == std::string::npos) {
    FUZZ_CHECK(*back == bytes, "format_size({}) = {} reads back as {} (input {})", bytes, printable(text),
               *back, printable(input));
    return;
  }
  // One decimal of the unit: off by at most 0.05 units, and the unit is at most bytes.
  const std::uint64_t diff = *back > bytes ? *back - bytes : bytes - *back;
  FUZZ_CHECK(diff <= bytes / 20 + 1, "format_size({}) = {} reads back as {} (input {})", bytes,
             printable(text), *back, printable(input));
}

void check_duration_round_trip(milliseconds d, std::string_view input) {
  const std::string text = core::format_duration(d);
  std::string why;
  const auto back = core::parse_duration(text, &why);
  FUZZ_CHECK(back.has_value() && *back == d, "format_duration({}ms) = {} reads back as {} ({}) (input {})",
             d.count(), printable(text), back ? std::to_string(back->count()) + "ms" : "nothing", why,
             printable(input));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  std::string why;
  if (const auto bytes = core::parse_size(input, &why)) {
    FUZZ_CHECK(*bytes <= kMaxSize, "parse_size({}) = {}, over INT64_MAX", printable(input), *bytes);
    check_size_round_trip(*bytes, input);
  } else {
    FUZZ_CHECK(!why.empty(), "parse_size refused {} without a reason", printable(input));
  }

  why.clear();
  if (const auto d = core::parse_duration(input, &why)) {
    FUZZ_CHECK(d->count() >= 0 && d->count() <= kMaxDurationMs, "parse_duration({}) = {}ms", printable(input),
               d->count());
    check_duration_round_trip(*d, input);
  } else {
    FUZZ_CHECK(!why.empty(), "parse_duration refused {} without a reason", printable(input));
  }

  if (size >= 8) {
    std::uint64_t raw = 0;
    std::memcpy(&raw, data, sizeof raw);
    check_size_round_trip(raw % (kMaxSize + 1), input);
    check_duration_round_trip(milliseconds(static_cast<std::int64_t>(raw % (kMaxDurationMs + 1))), input);
  }
  return 0;
}
