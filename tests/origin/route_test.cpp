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
  EXPECT_NE(
      head_of(route_of(get("/redirect/2?to=/a%20b%26c"))).find("Location: /redirect/1?to=/a%20b%26c\r\n"),
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

bool has_line(const std::string& head, const std::string& line) {
  return head.find("\r\n" + line + "\r\n") != std::string::npos;
}

TEST(Http, QueryParamsRepeated) {
  EXPECT_EQ(query_params("cl=1&x=2&cl=%2D3&cl", "cl"), (std::vector<std::string>{"1", "-3", ""}));
  EXPECT_TRUE(query_params("x=1", "cl").empty());
}

TEST(RouteFault, CutsAndStall) {
  auto close = route_of(get("/bytes/1000?close_after=100"));
  EXPECT_EQ(close.cut, Response::Cut::kClose);
  EXPECT_EQ(close.cut_after, 100u);
  EXPECT_EQ(close.length, 1000u) << "the full size is still declared";
  EXPECT_NE(head_of(close).find("Content-Length: 1000\r\n"), std::string::npos);
  EXPECT_FALSE(close.close) << "the break is the fault; the head promises nothing";

  auto reset = route_of(get("/bytes/1KiB?reset_after=1KiB"));
  EXPECT_EQ(reset.cut, Response::Cut::kReset);
  EXPECT_EQ(reset.cut_after, 1024u);

  for (const char* target :
       {"/bytes/10?stall", "/bytes/10?stall=1", "/bytes/10?stall_after=0", "/stall", "/stall/x.bin"}) {
    auto stall = route_of(get(target));
    EXPECT_EQ(stall.cut, Response::Cut::kStall) << target;
    EXPECT_EQ(stall.cut_after, 0u) << target;
  }
  EXPECT_EQ(route_of(get("/stall")).length, 1024u * 1024);
  EXPECT_EQ(route_of(get("/bytes/10?stall_after=5")).cut_after, 5u);
  EXPECT_EQ(route_of(get("/status/503?close_after=3")).cut, Response::Cut::kClose) << "any route";

  EXPECT_EQ(route_of(get("/bytes/10?close_after=x")).status, 400);
  EXPECT_EQ(route_of(get("/bytes/10?stall=2")).status, 400);
  EXPECT_EQ(route_of(get("/bytes/10?close_after=1&reset_after=2")).status, 400);
  EXPECT_EQ(route_of(get("/stallx")).status, 404);
}

TEST(RouteFault, Trickle) {
  auto r = route_of(get("/bytes/5?trickle=1/2s"));
  EXPECT_EQ(r.trickle_bytes, 1u);
  EXPECT_EQ(r.trickle_interval, std::chrono::milliseconds(2000));
  auto fast = route_of(get("/endless?trickle=1100/1s"));
  EXPECT_EQ(fast.trickle_bytes, 1100u);
  EXPECT_EQ(fast.trickle_interval, std::chrono::milliseconds(1000));
  EXPECT_EQ(route_of(get("/bytes/5?trickle=1KiB/250ms")).trickle_bytes, 1024u);
  for (const char* bad : {"1", "0/1s", "1/0", "x/1s", "1/soon", "/1s"})
    EXPECT_EQ(route_of(get(std::string("/bytes/5?trickle=") + bad)).status, 400) << bad;
}

TEST(RouteFault, EndlessAndFraming) {
  auto endless = route_of(get("/endless/e.bin?seed=4"));
  EXPECT_EQ(endless.status, 200);
  EXPECT_EQ(endless.body, Response::Body::kGenerated);
  EXPECT_EQ(endless.seed, 4u);
  EXPECT_EQ(endless.body_size(), Response::kEndless);
  EXPECT_EQ(endless.framing, Response::Framing::kClose);
  EXPECT_TRUE(endless.close);
  std::string head = head_of(endless, 1, false);
  EXPECT_EQ(head.find("Content-Length"), std::string::npos);
  EXPECT_EQ(head.find("Transfer-Encoding"), std::string::npos);
  EXPECT_NE(head.find("Connection: close\r\n"), std::string::npos);

  auto chunked = route_of(get("/endless?framing=chunked&chunk_size=1KiB"));
  EXPECT_EQ(chunked.framing, Response::Framing::kChunked);
  EXPECT_EQ(chunked.chunk_size, 1024u);
  EXPECT_FALSE(chunked.close);
  head = head_of(chunked);
  EXPECT_NE(head.find("Transfer-Encoding: chunked\r\n"), std::string::npos);
  EXPECT_EQ(head.find("Content-Length"), std::string::npos);
  EXPECT_EQ(route_of(get("/endless?framing=length")).status, 400);
  EXPECT_EQ(route_of(get("/endlessly")).status, 404);

  EXPECT_EQ(route_of(get("/bytes/10?framing=close")).framing, Response::Framing::kClose);
  EXPECT_TRUE(route_of(get("/bytes/10?framing=close")).close);
  EXPECT_EQ(route_of(get("/bytes/10?framing=chunked")).framing, Response::Framing::kChunked);
  EXPECT_EQ(route_of(get("/bytes/10?framing=morse")).status, 400);
  EXPECT_EQ(route_of(get("/bytes/10?chunk_size=0")).status, 400);
  EXPECT_EQ(route_of(get("/status/204?framing=chunked")).framing, Response::Framing::kLength)
      << "no body, no framing";

  const std::pair<const char*, Response::ChunkFault> faults[] = {
      {"no_end", Response::ChunkFault::kNoEnd},
      {"bad_size", Response::ChunkFault::kBadSize},
      {"overflow", Response::ChunkFault::kOverflowSize},
  };
  for (const auto& [name, fault] : faults) {
    auto r = route_of(get(std::string("/bytes/100?chunk_fault=") + name));
    EXPECT_EQ(r.chunk_fault, fault) << name;
    EXPECT_EQ(r.framing, Response::Framing::kChunked) << name;
    EXPECT_TRUE(r.close) << name;
  }
  EXPECT_EQ(route_of(get("/bytes/100?chunk_fault=no_end&framing=close")).status, 400);
  EXPECT_EQ(route_of(get("/bytes/100?chunk_fault=other")).status, 400);
}

TEST(RouteFault, ContentLengthFaults) {
  auto conflict = route_of(get("/bytes/10?cl=10&cl=20"));
  EXPECT_TRUE(conflict.close);
  std::string head = head_of(conflict, 1, false);
  EXPECT_NE(head.find("\r\nContent-Length: 10\r\n"), std::string::npos);
  EXPECT_NE(head.find("\r\nContent-Length: 20\r\n"), std::string::npos);
  EXPECT_EQ(head.find("Content-Length: 10\r\n"), head.rfind("Content-Length: 10\r\n"))
      << "only the given ones";
  EXPECT_EQ(conflict.body_size(), 10u) << "the real body still follows";
  EXPECT_TRUE(has_line(head_of(route_of(get("/bytes/12?cl=-1"))), "Content-Length: -1"));
  EXPECT_TRUE(has_line(head_of(route_of(get("/bytes/12?cl=12abc"))), "Content-Length: 12abc"));
  auto declared = route_of(get("/bytes/100?declare=10GiB"));
  head = head_of(declared, 1, false);
  EXPECT_TRUE(has_line(head, "Content-Length: 10737418240")) << head;
  EXPECT_EQ(head.find("Content-Length: 100\r\n"), std::string::npos);
  EXPECT_EQ(declared.body_size(), 100u);
  EXPECT_EQ(route_of(get("/bytes/1?cl=1%0d%0aX-Evil:%201")).status, 400) << "no header splitting";
  EXPECT_EQ(route_of(get("/bytes/1?declare=lots")).status, 400);
}

TEST(RouteFault, HugeHeaders) {
  auto big = route_of(get("/bytes/1?big_header=100KiB"));
  const std::string line = "X-Big: " + std::string(100 * 1024, 'a');
  EXPECT_TRUE(has_line(head_of(big), line));

  auto fill = route_of(get("/bytes/1?header_fill=300KiB"));
  std::size_t lines = 0;
  for (std::size_t pos = 0; (pos = fill.headers.find("X-Fill-", pos)) != std::string::npos; ++pos) {
    const auto end = fill.headers.find("\r\n", pos);
    EXPECT_EQ(end + 2 - pos, 1024u);
    ++lines;
  }
  EXPECT_EQ(lines, 300u);
  EXPECT_NE(fill.headers.find("X-Fill-000299: aaa"), std::string::npos);
  EXPECT_GE(head_of(fill).size(), 300u * 1024);
  EXPECT_EQ(route_of(get("/bytes/1?header_fill=1")).headers.find("X-Fill-000001"), std::string::npos)
      << "rounded up to one whole line";
  EXPECT_EQ(route_of(get("/bytes/1?header_fill=9MiB")).status, 400);
  EXPECT_EQ(route_of(get("/bytes/1?big_header=5MiB&header_fill=5MiB")).status, 400);

  // A request after a huge one on the same Response does not keep the megabytes.
  Response reused;
  route(get("/bytes/1?header_fill=4MiB"), {}, reused);
  route(get("/bytes/1"), {}, reused);
  EXPECT_LE(reused.headers.capacity(), 64u * 1024);
}

TEST(RouteFault, LoopAndRedirectStatus) {
  auto a = route_of(get("/loop/a"));
  EXPECT_EQ(a.status, 302);
  EXPECT_TRUE(has_line(head_of(a), "Location: /loop/b"));
  auto b = route_of(get("/loop/b?t=case10&status=301"));
  EXPECT_EQ(b.status, 301);
  EXPECT_TRUE(has_line(head_of(b), "Location: /loop/a?t=case10&status=301")) << "the query goes round too";
  EXPECT_EQ(route_of(get("/loop/c")).status, 404);
  EXPECT_EQ(route_of(get("/loop/a?status=200")).status, 400);
  auto to = route_of(get("/redirect-to?url=ftp%3A%2F%2Fx%2F&status=307"));
  EXPECT_EQ(to.status, 307);
  EXPECT_TRUE(has_line(head_of(to), "Location: ftp://x/"));
}

TEST(RouteFault, RetryAfterAndContentDisposition) {
  auto date = route_of(get("/status/503?retry_after=Wed%2C%2021%20Oct%202015%2007%3A28%3A00%20GMT"));
  EXPECT_EQ(date.status, 503);
  EXPECT_TRUE(has_line(head_of(date), "Retry-After: Wed, 21 Oct 2015 07:28:00 GMT"));
  for (const char* value : {"120", "-5", "31536000", "soon"}) {
    EXPECT_TRUE(has_line(head_of(route_of(get(std::string("/status/429?retry_after=") + value))),
                         std::string("Retry-After: ") + value))
        << value;
  }
  EXPECT_EQ(route_of(get("/status/503?retry_after=1%0aX:%201")).status, 400);

  auto cd = route_of(get("/bytes/10?cd=attachment%3B%20filename%3D%22..%2F..%2Fx%22"));
  EXPECT_TRUE(has_line(head_of(cd), "Content-Disposition: attachment; filename=\"../../x\""));
  auto nul = route_of(get("/bytes/10?cd=attachment%3B%20filename%3Da%00b"));
  EXPECT_TRUE(has_line(head_of(nul), std::string("Content-Disposition: attachment; filename=a\0b", 45)))
      << "a NUL is passed on: clients must cope";
  EXPECT_EQ(route_of(get("/bytes/10?cd=a%0d%0ab")).status, 400);
}

TEST(RouteFault, RangeModesAndValidators) {
  auto ignored = route_of(get("/bytes/1000?range=ignore", {{"range", "bytes=10-"}}));
  EXPECT_EQ(ignored.status, 200);
  EXPECT_EQ(ignored.length, 1000u);
  EXPECT_TRUE(has_line(head_of(ignored), "Accept-Ranges: bytes"));

  auto wrong = route_of(get("/bytes/1000?range=wrong", {{"range", "bytes=10-"}}));
  EXPECT_EQ(wrong.status, 206);
  EXPECT_EQ(wrong.offset, 9u);
  EXPECT_EQ(wrong.length, 991u);
  EXPECT_TRUE(has_line(head_of(wrong), "Content-Range: bytes 9-999/1000"));
  auto wrong_zero = route_of(get("/bytes/1000?range=wrong", {{"range", "bytes=0-99"}}));
  EXPECT_TRUE(has_line(head_of(wrong_zero), "Content-Range: bytes 1-99/1000"));
  EXPECT_TRUE(has_line(head_of(route_of(get("/bytes/1000?range=wrong", {{"range", "bytes=0-0"}}))),
                       "Content-Range: bytes 1-1/1000"));
  EXPECT_EQ(route_of(get("/bytes/1?range=wrong", {{"range", "bytes=0-"}})).status, 200);
  EXPECT_EQ(route_of(get("/bytes/1000?range=honour", {{"range", "bytes=10-"}})).status, 206);
  EXPECT_EQ(route_of(get("/bytes/1000?range=maybe")).status, 400);

  // The default ETag is strong and changes with the seed (i.e. with the content).
  const std::string etag = body_etag(1000, 5);
  EXPECT_FALSE(etag.starts_with("W/"));
  EXPECT_NE(etag, body_etag(1000, 6));
  auto v2 =
      route_of(get("/bytes/1000?seed=5&etag=%22v2%22", {{"range", "bytes=1-"}, {"if-range", "\"v2\""}}));
  EXPECT_EQ(v2.status, 206);
  EXPECT_TRUE(has_line(head_of(v2), "ETag: \"v2\""));
  EXPECT_EQ(
      route_of(get("/bytes/1000?seed=5&etag=%22v2%22", {{"range", "bytes=1-"}, {"if-range", etag}})).status,
      200)
      << "the old validator no longer matches: the whole new body";
  auto none =
      route_of(get("/bytes/1000?etag=none&last_modified=none", {{"range", "bytes=1-"}, {"if-range", etag}}));
  EXPECT_EQ(none.status, 200);
  EXPECT_EQ(head_of(none).find("ETag"), std::string::npos);
  EXPECT_EQ(head_of(none).find("Last-Modified"), std::string::npos);
  auto lm = route_of(get("/bytes/1000?last_modified=Sun%2C%2002%20Jan%202022%2000%3A00%3A00%20GMT"));
  EXPECT_TRUE(has_line(head_of(lm), "Last-Modified: Sun, 02 Jan 2022 00:00:00 GMT"));

  // if_range=ignore: the Range is served whatever If-Range says, with this response's own validators.
  auto spliced = route_of(get("/bytes/1000?seed=6&if_range=ignore", {{"range", "bytes=10-"}, {"if-range", etag}}));
  EXPECT_EQ(spliced.status, 206);
  EXPECT_EQ(spliced.offset, 10u);
  EXPECT_TRUE(has_line(head_of(spliced), "ETag: " + body_etag(1000, 6)));
  EXPECT_EQ(route_of(get("/bytes/1000?seed=6&if_range=honour", {{"range", "bytes=10-"}, {"if-range", etag}})).status,
            200);
  EXPECT_EQ(route_of(get("/bytes/1000?if_range=sometimes")).status, 400);
}

TEST(RouteFault, DigestPlan) {
  auto both = route_of(get("/bytes/1000?digest=both", {{"range", "bytes=10-19"}}));
  EXPECT_TRUE(both.content_digest);
  EXPECT_TRUE(both.repr_digest);
  EXPECT_FALSE(both.wrong_digest);
  EXPECT_EQ(both.repr_size, 1000u);
  EXPECT_EQ(both.offset, 10u);
  EXPECT_EQ(both.length, 10u);
  EXPECT_TRUE(route_of(get("/bytes/1?digest=content")).content_digest);
  EXPECT_FALSE(route_of(get("/bytes/1?digest=content")).repr_digest);
  EXPECT_TRUE(route_of(get("/bytes/1?digest=repr")).repr_digest);
  EXPECT_TRUE(route_of(get("/bytes/1?digest=wrong")).wrong_digest);
  EXPECT_EQ(route_of(get("/bytes/1?digest=md5")).status, 400);
  EXPECT_FALSE(route_of(get("/bytes/1")).wants_digest());

  Sha256 content{};
  Sha256 repr{};
  content[0] = 1;
  repr[0] = 2;
  add_digest_headers(both, content, repr);
  EXPECT_TRUE(has_line(head_of(both), "Content-Digest: " + sha256_field(content)));
  EXPECT_TRUE(has_line(head_of(both), "Repr-Digest: " + sha256_field(repr)));
  auto wrong = route_of(get("/bytes/1?digest=wrong"));
  add_digest_headers(wrong, content, content);
  EXPECT_EQ(head_of(wrong).find(sha256_field(content)), std::string::npos);
}

}  // namespace
}  // namespace fetchd::origin
