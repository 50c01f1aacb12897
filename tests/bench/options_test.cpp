// SPDX-License-Identifier: Apache-2.0
#include "fetchd/bench/options.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace fetchd::bench {
namespace {

TEST(AvailableStrategies, AreKnownAndIncludeEventLoop) {
  auto available = available_strategies();
  ASSERT_FALSE(available.empty());
  EXPECT_NE(std::ranges::find(available, "event-loop"), available.end());
  for (auto name : available) {
    EXPECT_NE(std::ranges::find(kKnownStrategies, name), std::end(kKnownStrategies)) << name;
  }
}

TEST(SplitList, TrimsItems) {
  auto items = split_list(" a, b ,c");
  ASSERT_TRUE(items);
  EXPECT_EQ(*items, (std::vector<std::string>{"a", "b", "c"}));
}

TEST(SplitList, RefusesEmptyItems) {
  for (std::string_view text : {"", "  ", "a,,b", "a,", ",a", "a, ,b"}) {
    std::string error;
    EXPECT_FALSE(split_list(text, &error)) << text;
    EXPECT_FALSE(error.empty()) << text;
  }
}

TEST(ParseConcurrencyList, KeepsOrderAndRepeats) {
  auto values = parse_concurrency_list("1, 10,1000,10");
  ASSERT_TRUE(values);
  EXPECT_EQ(*values, (std::vector<int>{1, 10, 1000, 10}));
}

TEST(ParseConcurrencyList, RefusesZeroNegativeJunkAndHuge) {
  struct Case {
    std::string_view text;
    std::string_view message_part;
  };
  for (auto [text, part] :
       {Case{"0", "at least 1"}, Case{"8,0", "at least 1"}, Case{"-1", "at least 1"},
        Case{"x", "not a whole number"}, Case{"10x", "not a whole number"}, Case{"1.5", "not a whole number"},
        Case{"100001", "too large"}, Case{"99999999999999", "too large"}, Case{"", "empty"}}) {
    std::string error;
    EXPECT_FALSE(parse_concurrency_list(text, &error)) << text;
    EXPECT_NE(error.find(part), std::string::npos) << text << ": " << error;
  }
  EXPECT_TRUE(parse_concurrency_list(std::to_string(kMaxConcurrency)));
}

TEST(ParseStrategyList, AllMeansEveryAvailableStrategy) {
  auto names = parse_strategy_list("all");
  ASSERT_TRUE(names);
  auto available = available_strategies();
  EXPECT_TRUE(std::ranges::equal(*names, available));
}

TEST(ParseStrategyList, AcceptsAvailableNames) {
  auto names = parse_strategy_list("event-loop");
  ASSERT_TRUE(names);
  EXPECT_EQ(*names, (std::vector<std::string>{"event-loop"}));
}

TEST(ParseStrategyList, RefusesUnknownNames) {
  std::string error;
  EXPECT_FALSE(parse_strategy_list("event-loop,warp-drive", &error));
  EXPECT_NE(error.find("unknown strategy 'warp-drive'"), std::string::npos) << error;
  EXPECT_NE(error.find("event-loop"), std::string::npos) << error;  // lists the known ones
}

TEST(ParseStrategyList, RefusesKnownButUnavailableNames) {
  auto available = available_strategies();
  auto missing = std::ranges::find_if(kKnownStrategies, [&](std::string_view name) {
    return std::ranges::find(available, name) == available.end();
  });
  if (missing == std::end(kKnownStrategies)) GTEST_SKIP() << "every known strategy is available";
  std::string error;
  EXPECT_FALSE(parse_strategy_list(std::string(*missing), &error));
  EXPECT_NE(error.find("not available in this build"), std::string::npos) << error;
}

TEST(ParseStrategyList, RefusesAllMixedWithNames) {
  std::string error;
  EXPECT_FALSE(parse_strategy_list("all,event-loop", &error));
  EXPECT_NE(error.find("'all'"), std::string::npos) << error;
}

}  // namespace
}  // namespace fetchd::bench
