// SPDX-License-Identifier: Apache-2.0
#include "fetchd/control/line_splitter.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace fetchd::control {
namespace {

struct Collect {
  std::vector<std::string> lines;
  LineSplitter::OnLine all() {
    return [this](std::string_view l) {
      lines.emplace_back(l);
      return true;
    };
  }
};

TEST(LineSplitter, LinesSplitAcrossReadsAreJoinedAndCrlfAndEmptyLinesHandled) {
  LineSplitter s(100);
  Collect c;
  EXPECT_EQ(s.feed("{\"op\":", c.all()).stop, LineSplitter::Stop::kEnd);
  EXPECT_TRUE(c.lines.empty());
  EXPECT_EQ(s.feed("\"ping\"}\r\n\n\r\nsecond\nthi", c.all()).stop, LineSplitter::Stop::kEnd);
  EXPECT_EQ(s.feed("rd\n", c.all()).stop, LineSplitter::Stop::kEnd);
  EXPECT_EQ(c.lines, (std::vector<std::string>{"{\"op\":\"ping\"}", "second", "third"}));
}

TEST(LineSplitter, StoppingReturnsTheBytesAfterThatLine) {
  LineSplitter s(100);
  std::vector<std::string> seen;
  const auto fed = s.feed("a\nb\nc", [&](std::string_view l) {
    seen.emplace_back(l);
    return false;
  });
  EXPECT_EQ(fed.stop, LineSplitter::Stop::kStopped);
  EXPECT_EQ(fed.rest, "b\nc");
  EXPECT_EQ(seen, std::vector<std::string>{"a"});
}

TEST(LineSplitter, ALineOverTheLimitIsRefusedBeforeItsEndArrivesAndEverythingAfter) {
  LineSplitter s(8);
  Collect c;
  EXPECT_EQ(s.feed("12345678\r\n", c.all()).stop, LineSplitter::Stop::kEnd);  // exactly max_line, CRLF
  EXPECT_EQ(s.feed("123456", c.all()).stop, LineSplitter::Stop::kEnd);
  EXPECT_EQ(s.feed("7890", c.all()).stop, LineSplitter::Stop::kTooLong);  // 10 > 8 + 1 without a '\n'
  EXPECT_TRUE(s.too_long());
  EXPECT_EQ(s.feed("ok\n", c.all()).stop, LineSplitter::Stop::kTooLong);
  EXPECT_EQ(c.lines, std::vector<std::string>{"12345678"});
}

TEST(LineSplitter, AnUnfinishedLineDroppedAtEofIsNotARequest) {
  LineSplitter s(100);
  Collect c;
  s.feed("half a li", c.all());
  s.drop_partial();
  s.feed("ne\n", c.all());
  EXPECT_EQ(c.lines, std::vector<std::string>{"ne"});
}

}  // namespace
}  // namespace fetchd::control
