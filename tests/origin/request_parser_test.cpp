// SPDX-License-Identifier: Apache-2.0
#include "fetchd/origin/request_parser.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace fetchd::origin {
namespace {

using State = RequestParser::State;

struct Parsed {
  State state;
  Request request;
  int error_status;
  std::size_t end;  // offset in the input right after this request

  bool operator==(const Parsed& o) const {
    if (state != o.state || error_status != o.error_status || end != o.end) return false;
    const Request& a = request;
    const Request& b = o.request;
    if (a.method != b.method || a.target != b.target || a.minor_version != b.minor_version ||
        a.keep_alive != b.keep_alive || a.content_length != b.content_length ||
        a.headers.size() != b.headers.size()) {
      return false;
    }
    for (std::size_t i = 0; i < a.headers.size(); ++i) {
      if (a.headers[i].name != b.headers[i].name || a.headers[i].value != b.headers[i].value) return false;
    }
    return true;
  }
};

// Feeds input in pieces of at most `step` bytes (0: all at once) and collects every request (and a final
// error).
std::vector<Parsed> parse_all(std::string_view input, std::size_t step, std::size_t max_head = 64 * 1024) {
  RequestParser parser(max_head);
  std::vector<Parsed> out;
  std::size_t pos = 0;
  while (pos < input.size()) {
    std::size_t n = step == 0 ? input.size() - pos : std::min(step, input.size() - pos);
    std::string_view piece = input.substr(pos, n);
    while (!piece.empty()) {
      std::size_t used = parser.feed(piece);
      piece.remove_prefix(used);
      pos += used;
      if (parser.state() == State::kComplete) {
        out.push_back({State::kComplete, parser.request(), 0, pos});
        parser.reset();
      } else if (parser.state() == State::kError) {
        out.push_back({State::kError, {}, parser.error_status(), pos});
        return out;
      } else {
        EXPECT_TRUE(piece.empty()) << "an incomplete parser must consume everything it is given";
        break;
      }
    }
    if (step == 0 && parser.state() == State::kIncomplete) break;
  }
  return out;
}

RequestParser parse_one(std::string_view input) {
  RequestParser parser;
  parser.feed(input);
  return parser;
}

TEST(RequestParser, ParsesSimpleGet) {
  auto p = parse_one("GET /bytes/10?seed=3 HTTP/1.1\r\nHost: example\r\nUser-Agent:  x y \r\n\r\n");
  ASSERT_EQ(p.state(), State::kComplete);
  const Request& r = p.request();
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.target, "/bytes/10?seed=3");
  EXPECT_EQ(r.minor_version, 1);
  EXPECT_TRUE(r.keep_alive);
  ASSERT_NE(r.header("user-agent"), nullptr);
  EXPECT_EQ(*r.header("user-agent"), "x y");
  EXPECT_EQ(*r.header("host"), "example");
  EXPECT_EQ(r.header("range"), nullptr);
}

TEST(RequestParser, StopsAfterOneRequest) {
  const std::string first = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
  const std::string input = first + "GET /b HTTP/1.1\r\nHost: h\r\n\r\n";
  RequestParser parser;
  EXPECT_EQ(parser.feed(input), first.size());
  EXPECT_EQ(parser.state(), State::kComplete);
  EXPECT_EQ(parser.feed(input.substr(first.size())), 0u) << "consumes nothing until reset";
  parser.reset();
  EXPECT_EQ(parser.feed(input.substr(first.size())), input.size() - first.size());
  EXPECT_EQ(parser.request().target, "/b");
}

TEST(RequestParser, ByteByByteEqualsOneShot) {
  const std::string input =
      "\r\nGET /bytes/1 HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\n\r\n"
      "HEAD /status/404 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
      "POST /x HTTP/1.1\nHost: h\nContent-Length: 5\n\nhelloGET /after-body HTTP/1.1\r\nHost: h\r\n"
      "X-Empty:\r\nX-Tabs:\t a\tb \t\r\nConnection: foo, close\r\n\r\n"
      "GET /last HTTP/1.1\r\nHost: h\r\n\r\n";
  const auto one_shot = parse_all(input, 0);
  ASSERT_EQ(one_shot.size(), 5u);
  EXPECT_EQ(one_shot[0].request.target, "/bytes/1");
  EXPECT_EQ(*one_shot[0].request.header("range"), "bytes=0-1");
  EXPECT_EQ(one_shot[1].request.method, "HEAD");
  EXPECT_EQ(one_shot[1].request.minor_version, 0);
  EXPECT_TRUE(one_shot[1].request.keep_alive);
  EXPECT_EQ(one_shot[2].request.method, "POST");
  EXPECT_EQ(one_shot[2].request.content_length, 5u);
  EXPECT_EQ(one_shot[3].request.target, "/after-body");
  EXPECT_EQ(*one_shot[3].request.header("x-empty"), "");
  EXPECT_EQ(*one_shot[3].request.header("x-tabs"), "a\tb");
  EXPECT_FALSE(one_shot[3].request.keep_alive);
  EXPECT_EQ(one_shot[4].end, input.size());
  for (std::size_t step : {1u, 2u, 3u, 7u, 64u}) {
    EXPECT_EQ(parse_all(input, step), one_shot) << "step " << step;
  }
}

TEST(RequestParser, KeepAliveRules) {
  EXPECT_TRUE(parse_one("GET / HTTP/1.1\r\nHost: h\r\n\r\n").request().keep_alive);
  EXPECT_FALSE(parse_one("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").request().keep_alive);
  EXPECT_FALSE(parse_one("GET / HTTP/1.1\r\nHost: h\r\nConnection: CLOSE\r\n\r\n").request().keep_alive);
  EXPECT_FALSE(parse_one("GET / HTTP/1.0\r\n\r\n").request().keep_alive);
  EXPECT_TRUE(parse_one("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").request().keep_alive);
  EXPECT_FALSE(parse_one("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").request().keep_alive);
}

TEST(RequestParser, RefusesMalformedInput) {
  struct Case {
    const char* input;
    int status;
  };
  const Case cases[] = {
      {"GET\r\n\r\n", 400},
      {" GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400},
      {"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"GET / HTTX/1.1\r\nHost: h\r\n\r\n", 400},
      {"GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400},
      {"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505},
      {"GET / HTTP/1.1\rHost: h\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\x7f\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\n\rX", 400},
      {"GET / HTTP/1.1\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10485760\r\n\r\n", 413},
  };
  for (const auto& c : cases) {
    for (std::size_t step : {0u, 1u}) {
      auto parsed = parse_all(c.input, step);
      ASSERT_FALSE(parsed.empty()) << c.input;
      EXPECT_EQ(parsed.back().state, State::kError) << c.input;
      EXPECT_EQ(parsed.back().error_status, c.status) << c.input;
    }
  }
}

TEST(RequestParser, IdenticalContentLengthsAreAccepted) {
  auto p = parse_one("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok");
  EXPECT_EQ(p.state(), State::kComplete);
}

TEST(RequestParser, OversizeHeadGives431) {
  const std::string big = "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + std::string(2000, 'a') + "\r\n\r\n";
  for (std::size_t step : {0u, 1u}) {
    auto parsed = parse_all(big, step, 1024);
    ASSERT_EQ(parsed.size(), 1u);
    EXPECT_EQ(parsed[0].state, State::kError);
    EXPECT_EQ(parsed[0].error_status, 431);
    EXPECT_LE(parsed[0].end, 1025u) << "stops reading at the limit";
  }
  // The same head fits the default 64 KiB limit; a 70 KiB one does not.
  EXPECT_EQ(parse_one(big).state(), State::kComplete);
  auto huge = parse_one("GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + std::string(70 * 1024, 'a') + "\r\n\r\n");
  EXPECT_EQ(huge.state(), State::kError);
  EXPECT_EQ(huge.error_status(), 431);
  std::string many = "GET / HTTP/1.1\r\nHost: h\r\n";
  for (int i = 0; i < 200; ++i) many += "a:b\r\n";
  EXPECT_EQ(parse_one(many + "\r\n").error_status(), 431);
}

TEST(RequestParser, BodyIsSkippedAcrossFeeds) {
  RequestParser parser;
  const std::string head = "PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n";
  EXPECT_EQ(parser.feed(head + "01234"), head.size() + 5);
  EXPECT_EQ(parser.state(), State::kIncomplete);
  EXPECT_EQ(parser.feed("56789GET"), 5u);
  EXPECT_EQ(parser.state(), State::kComplete);
  EXPECT_EQ(parser.request().method, "PUT");
}

TEST(RequestParser, ResetClearsEverything) {
  RequestParser parser;
  parser.feed("GET /one HTTP/1.1\r\nHost: h\r\nConnection: close\r\nX: 1\r\n\r\n");
  ASSERT_EQ(parser.state(), State::kComplete);
  parser.reset();
  parser.feed("GET /two HTTP/1.1\r\nHost: h\r\n\r\n");
  ASSERT_EQ(parser.state(), State::kComplete);
  EXPECT_EQ(parser.request().target, "/two");
  EXPECT_TRUE(parser.request().keep_alive);
  EXPECT_EQ(parser.request().headers.size(), 1u);
}

}  // namespace
}  // namespace fetchd::origin
