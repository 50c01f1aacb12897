// SPDX-License-Identifier: Apache-2.0
#include "fetchd/core/units.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

namespace fetchd::core {
namespace {

using std::chrono::milliseconds;

TEST(ParseSize, BareNumbersAreBytes) {
  EXPECT_EQ(parse_size("0"), 0u);
  EXPECT_EQ(parse_size("4096"), 4096u);
  EXPECT_EQ(parse_size(" 12 "), 12u);
}

TEST(ParseSize, DecimalAndBinaryUnits) {
  EXPECT_EQ(parse_size("1B"), 1u);
  EXPECT_EQ(parse_size("1K"), 1000u);
  EXPECT_EQ(parse_size("1KB"), 1000u);
  EXPECT_EQ(parse_size("1KiB"), 1024u);
  EXPECT_EQ(parse_size("64kib"), 64u * 1024);
  EXPECT_EQ(parse_size("2MB"), 2'000'000u);
  EXPECT_EQ(parse_size("2MiB"), 2u * 1024 * 1024);
  EXPECT_EQ(parse_size("1GiB"), 1024u * 1024 * 1024);
  EXPECT_EQ(parse_size("1TB"), 1'000'000'000'000u);
  EXPECT_EQ(parse_size("1 TiB"), std::uint64_t{1} << 40);
}

TEST(ParseSize, FractionsNeedAUnit) {
  EXPECT_EQ(parse_size("1.5MiB"), 1572864u);
  EXPECT_EQ(parse_size("0.5KiB"), 512u);
  std::string error;
  EXPECT_FALSE(parse_size("1.5", &error));
  EXPECT_NE(error.find("fraction"), std::string::npos) << error;
  EXPECT_FALSE(parse_size("1.", &error));
}

TEST(ParseSize, RejectsGarbageWithAReason) {
  std::string error;
  EXPECT_FALSE(parse_size("", &error));
  EXPECT_EQ(error, "empty size");
  EXPECT_FALSE(parse_size("-1", &error));
  EXPECT_NE(error.find("negative"), std::string::npos) << error;
  EXPECT_FALSE(parse_size("abc", &error));
  EXPECT_NE(error.find("'abc'"), std::string::npos) << error;
  EXPECT_FALSE(parse_size("12 apples", &error));
  EXPECT_NE(error.find("unknown unit"), std::string::npos) << error;
  EXPECT_FALSE(parse_size("1e3", &error));
  EXPECT_FALSE(parse_size("100000000TiB", &error));
  EXPECT_NE(error.find("too large"), std::string::npos) << error;
  EXPECT_FALSE(parse_size("99999999999999999999", &error));
  EXPECT_FALSE(parse_size("nullptr"));  // no error pointer is fine
}

TEST(ParseDuration, UnitsAndSequences) {
  EXPECT_EQ(parse_duration("250ms"), milliseconds(250));
  EXPECT_EQ(parse_duration("30s"), milliseconds(30'000));
  EXPECT_EQ(parse_duration("30"), milliseconds(30'000));  // bare number: seconds
  EXPECT_EQ(parse_duration("2m"), milliseconds(120'000));
  EXPECT_EQ(parse_duration("1h30m"), milliseconds(5'400'000));
  EXPECT_EQ(parse_duration("1h 30m"), milliseconds(5'400'000));
  EXPECT_EQ(parse_duration("1d"), milliseconds(86'400'000));
  EXPECT_EQ(parse_duration("1.5s"), milliseconds(1500));
  EXPECT_EQ(parse_duration("0"), milliseconds(0));
  EXPECT_EQ(parse_duration("2min"), milliseconds(120'000));
}

TEST(ParseDuration, RejectsGarbageWithAReason) {
  std::string error;
  EXPECT_FALSE(parse_duration("", &error));
  EXPECT_FALSE(parse_duration("-5s", &error));
  EXPECT_NE(error.find("negative"), std::string::npos) << error;
  EXPECT_FALSE(parse_duration("5x", &error));
  EXPECT_NE(error.find("unknown unit 'x'"), std::string::npos) << error;
  EXPECT_FALSE(parse_duration("1h30", &error));
  EXPECT_NE(error.find("missing a unit"), std::string::npos) << error;
  EXPECT_FALSE(parse_duration("soon", &error));
  EXPECT_NE(error.find("malformed"), std::string::npos) << error;
  EXPECT_FALSE(parse_duration("99999999999999999d", &error));
  EXPECT_NE(error.find("too large"), std::string::npos) << error;
}

TEST(FormatSize, ExactUnitsWhenPossible) {
  EXPECT_EQ(format_size(0), "0B");
  EXPECT_EQ(format_size(100), "100B");
  EXPECT_EQ(format_size(1024), "1KiB");
  EXPECT_EQ(format_size(64 * 1024), "64KiB");
  EXPECT_EQ(format_size(3u * 1024 * 1024), "3MiB");
  EXPECT_EQ(format_size(std::uint64_t{1} << 40), "1TiB");
  EXPECT_EQ(format_size(std::uint64_t{2048} << 40), "2048TiB");
  // Not a whole number of units: one decimal, which is lossy (callers that need exactness check the round
  // trip).
  EXPECT_EQ(format_size(1536), "1.5KiB");
  EXPECT_EQ(format_size(1500), "1.5KiB");
}

TEST(FormatSize, ExactOutputParsesBack) {
  for (std::uint64_t v : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{1023}, std::uint64_t{1024},
                          std::uint64_t{5} << 20, std::uint64_t{7} << 30}) {
    EXPECT_EQ(parse_size(format_size(v)), v) << v;
  }
}

TEST(FormatDuration, HumanAndParsesBack) {
  EXPECT_EQ(format_duration(milliseconds(0)), "0s");
  EXPECT_EQ(format_duration(milliseconds(250)), "250ms");
  EXPECT_EQ(format_duration(milliseconds(1500)), "1500ms");
  EXPECT_EQ(format_duration(milliseconds(30'000)), "30s");
  EXPECT_EQ(format_duration(milliseconds(300'000)), "5m");
  EXPECT_EQ(format_duration(milliseconds(5'400'000)), "1h30m");
  EXPECT_EQ(format_duration(milliseconds(3'661'000)), "1h1m1s");
  EXPECT_EQ(format_duration(milliseconds(86'400'000)), "1d");
  EXPECT_EQ(format_duration(milliseconds(90'000'000)), "25h");
  for (long long ms : {0LL, 1LL, 999LL, 1000LL, 61'000LL, 5'400'000LL, 86'400'000LL, 90'061'000LL}) {
    EXPECT_EQ(parse_duration(format_duration(milliseconds(ms))), milliseconds(ms)) << ms;
  }
}

}  // namespace
}  // namespace fetchd::core
