// SPDX-License-Identifier: Apache-2.0
// The pure parts of the server: Range evaluation, query helpers, routes and response heads.
#include "fetchd/origin/route.hpp"

#include <gtest/gtest.h>

#include "fetchd/origin/body.hpp"
#include "fetchd/origin/http.hpp"

namespace fetchd::origin {
namespace {

using Kind = RangeDecision::Kind;

TEST(Http, EvaluateRange) {
  struct Case {
    const char* value;
    std::uint64_t size;
    Kind kind;
    std::uint64_t first;
    std::uint64_t last;
  };
  const Case cases[] = {
      {"bytes=0-99", 1000, Kind::kPartial, 0, 99},
      {"bytes=10-10", 1000, Kind::kPartial, 10, 10},
      {"bytes=500-", 1000, Kind::kPartial, 500, 999},
      {"bytes=-100", 1000, Kind::kPartial, 900, 999},
      {"bytes=-5000", 1000, Kind::kPartial, 0, 999},
      {"bytes=900-5000", 1000, Kind::kPartial, 900, 999},
      {"Bytes = 1-2", 1000, Kind::kPartial, 1, 2},
      {"bytes=1000-", 1000, Kind::kUnsatisfiable, 0, 0},
      {"bytes=1000-2000", 1000, Kind::kUnsatisfiable, 0, 0},
      {"bytes=-0", 1000, Kind::kUnsatisfiable, 0, 0},
      {"bytes=0-", 0, Kind::kUnsatisfiable, 0, 0},
      {"bytes=-1", 0, Kind::kUnsatisfiable, 0, 0},
      {"bytes=5-1", 1000, Kind::kFull, 0, 0},
      {"bytes=0-1,5-6", 1000, Kind::kFull, 0, 0},
      {"items=0-1", 1000, Kind::kFull, 0, 0},
      {"bytes=a-b", 1000, Kind::kFull, 0, 0},
      {"bytes=-", 1000, Kind::kFull, 0, 0},
      {"bytes 0-1", 1000, Kind::kFull, 0, 0},
  };
  for (const auto& c : cases) {
    auto d = evaluate_range(c.value, c.size);
    EXPECT_EQ(d.kind, c.kind) << c.value;
    if (c.kind == Kind::kPartial) {
      EXPECT_EQ(d.first, c.first) << c.value;
      EXPECT_EQ(d.last, c.last) << c.value;
    }
  }
}

TEST(Http, Query) {
  EXPECT_EQ(query_param("seed=1&latency=2s", "latency"), "2s");
  EXPECT_EQ(query_param("seed=1&seed=2", "seed"), "1");
  EXPECT_EQ(query_param("a=%41%2f%zz", "a"), "A/%zz");
  EXPECT_EQ(query_param("flag&x=1", "flag"), "");
  EXPECT_EQ(query_param("x=1", "seed"), std::nullopt);
  EXPECT_EQ(query_param("", "seed"), std::nullopt);
  auto t = split_target("/bytes/1?seed=2");
  EXPECT_EQ(t.path, "/bytes/1");
  EXPECT_EQ(t.query, "seed=2");
  EXPECT_EQ(split_target("/x").query, "");
}

Request get(std::string target, std::vector<Header> headers = {}, std::string method = "GET") {
  Request r;
  r.method = std::move(method);
  r.target = std::move(target);
  r.headers = std::move(headers);
  return r;
}

Response route_of(const Request& r, OriginOptions options = {}) {
  Response out;
  route(r, options, out);
  return out;
}

std::string head_of(const Response& r, int minor = 1, bool keep_alive = true) {
  std::string out;
  append_head(r, minor, keep_alive, out);
  return out;
}

TEST(Route, Bytes) {
  auto r = route_of(get("/bytes/4096/f123.bin?seed=123"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, Response::Body::kGenerated);
  EXPECT_EQ(r.seed, 123u);
  EXPECT_EQ(r.offset, 0u);
  EXPECT_EQ(r.length, 4096u);
  const std::string head = head_of(r);
  EXPECT_EQ(head.rfind("HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n", 0), 0u) << head;
  EXPECT_NE(head.find("ETag: " + body_etag(4096, 123) + "\r\n"), std::string::npos);
  EXPECT_NE(head.find("Last-Modified: Sat, 01 Jan 2022 00:00:00 GMT\r\n"), std::string::npos);
  EXPECT_NE(head.find("Accept-Ranges: bytes\r\n"), std::string::npos);
  EXPECT_TRUE(head.ends_with("\r\n\r\n"));
  EXPECT_EQ(route_of(get("/bytes/4KiB")).length, 4096u);
  EXPECT_EQ(route_of(get("/bytes/10")).seed, 0u);
  EXPECT_EQ(route_of(get("/bytes/x")).status, 400);
  EXPECT_EQ(route_of(get("/bytes/")).status, 400);
  EXPECT_EQ(route_of(get("/bytes/1?seed=-1")).status, 400);
}

TEST(Route, BytesRangeAndIfRange) {
  auto partial = route_of(get("/bytes/1000?seed=5", {{"range", "bytes=10-19"}}));
  EXPECT_EQ(partial.status, 206);
  EXPECT_EQ(partial.offset, 10u);
  EXPECT_EQ(partial.length, 10u);
  EXPECT_NE(head_of(partial).find("Content-Range: bytes 10-19/1000\r\n"), std::string::npos);

  auto unsatisfiable = route_of(get("/bytes/1000", {{"range", "bytes=1000-"}}));
  EXPECT_EQ(unsatisfiable.status, 416);
  EXPECT_NE(head_of(unsatisfiable).find("Content-Range: bytes */1000\r\n"), std::string::npos);

  const std::string etag = body_etag(1000, 5);
  EXPECT_EQ(route_of(get("/bytes/1000?seed=5", {{"range", "bytes=1-"}, {"if-range", etag}})).status, 206);
  EXPECT_EQ(route_of(get("/bytes/1000?seed=5",
                         {{"range", "bytes=1-"}, {"if-range", std::string(kBodyLastModified)}}))
                .status,
            206);
  EXPECT_EQ(route_of(get("/bytes/1000?seed=5", {{"range", "bytes=1-"}, {"if-range", "\"other\""}})).status,
            200);
  EXPECT_EQ(route_of(get("/bytes/1000?seed=5", {{"range", "bytes=1-"}, {"if-range", "W/" + etag}})).status,
            200);
}

TEST(Route, Status) {
  auto r = route_of(get("/status/404"));
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.text, "not found\n");
  EXPECT_EQ(route_of(get("/status/503")).text, "service unavailable\n");
  EXPECT_EQ(route_of(get("/status/299")).text, "status 299\n");
  auto no_content = route_of(get("/status/204"));
  EXPECT_EQ(no_content.status, 204);
  EXPECT_EQ(head_of(no_content).find("Content-Length"), std::string::npos);
  EXPECT_EQ(route_of(get("/status/99")).status, 400);
  EXPECT_EQ(route_of(get("/status/600")).status, 400);
  EXPECT_EQ(route_of(get("/status/abc")).status, 400);
}

TEST(Route, UnknownPathMethodAndLatency) {
  EXPECT_EQ(route_of(get("/nope")).status, 404);
  EXPECT_EQ(route_of(get("/bytes")).status, 404);
  auto post = route_of(get("/bytes/1", {}, "POST"));
  EXPECT_EQ(post.status, 405);
  EXPECT_NE(head_of(post).find("Allow: GET, HEAD\r\n"), std::string::npos);
  EXPECT_EQ(route_of(get("/bytes/1", {}, "HEAD")).status, 200);

  OriginOptions slow;
  slow.latency = std::chrono::milliseconds(50);
  EXPECT_EQ(route_of(get("/bytes/1"), slow).latency, std::chrono::milliseconds(50));
  EXPECT_EQ(route_of(get("/bytes/1?latency=1.5s"), slow).latency, std::chrono::milliseconds(1500));
  EXPECT_EQ(route_of(get("/bytes/1?latency=0"), slow).latency, std::chrono::milliseconds(0));
  EXPECT_EQ(route_of(get("/nope?latency=250ms")).latency, std::chrono::milliseconds(250));
  EXPECT_EQ(route_of(get("/bytes/1?latency=soon")).status, 400);
}

TEST(Route, RedirectChain) {
  auto first = route_of(get("/redirect/3?to=/bytes/10/r.bin%3Fseed%3D4"));
  EXPECT_EQ(first.status, 302);
  const std::string head = head_of(first);
  EXPECT_NE(head.find("Location: /redirect/2?to=/bytes/10/r.bin%3Fseed%3D4\r\n"), std::string::npos) << head;
  // Each hop's Location decodes back to the same target, and the last one is the target itself.
  auto last = route_of(get("/redirect/1?to=/bytes/10/r.bin%3Fseed%3D4"));
  EXPECT_EQ(last.status, 302);
  EXPECT_NE(head_of(last).find("Location: /bytes/10/r.bin?seed=4\r\n"), std::string::npos);
  EXPECT_NE(head_of(route_of(get("/redirect/2?to=/a%20b%26c"))).find("Location: /redirect/1?to=/a%20b%26c\r\n"),
            std::string::npos);
  EXPECT_EQ(route_of(get("/redirect/0?to=/x")).status, 400);
  EXPECT_EQ(route_of(get("/redirect/x?to=/x")).status, 400);
  EXPECT_EQ(route_of(get("/redirect/1")).status, 400);
  EXPECT_EQ(route_of(get("/redirect/1?to=http://elsewhere/")).status, 400);  // same origin only
  EXPECT_EQ(route_of(get("/redirect/1?to=//elsewhere/")).status, 400);
  EXPECT_EQ(route_of(get("/redirect/1?to=/x%0d%0aSet-Cookie:%20a=b")).status, 400);  // no header splitting
}

TEST(Route, RedirectTo) {
  auto r = route_of(get("/redirect-to?url=file%3A%2F%2F%2Fetc%2Fpasswd"));
  EXPECT_EQ(r.status, 302);
  EXPECT_NE(head_of(r).find("Location: file:///etc/passwd\r\n"), std::string::npos);
  EXPECT_EQ(route_of(get("/redirect-to")).status, 400);
  EXPECT_EQ(route_of(get("/redirect-to?url=")).status, 400);
  EXPECT_EQ(route_of(get("/redirect-tox?url=/")).status, 404);
}

TEST(Route, HeadConnectionHeaders) {
  auto r = route_of(get("/bytes/1"));
  EXPECT_NE(head_of(r, 1, false).find("Connection: close\r\n"), std::string::npos);
  EXPECT_NE(head_of(r, 0, true).find("Connection: keep-alive\r\n"), std::string::npos);
  EXPECT_EQ(head_of(r, 1, true).find("Connection:"), std::string::npos);
  Response error;
  error_response(431, "request head too large", error);
  EXPECT_TRUE(error.close);
  EXPECT_EQ(error.text, "request head too large\n");
  EXPECT_EQ(head_of(error, 1, false).rfind("HTTP/1.1 431 Request Header Fields Too Large\r\n", 0), 0u);
}

}  // namespace
}  // namespace fetchd::origin
