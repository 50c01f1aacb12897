// SPDX-License-Identifier: Apache-2.0
// The fault modes over real sockets (docs/origin.md): raw reads show exactly which bytes arrive and how the
// connection ends. Receive timeouts (test_client.hpp) and wait_for limits are failsafes, never the
// synchronisation itself.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <thread>
#include <vector>

#include "fetchd/origin/body.hpp"
#include "fetchd/origin/origin.hpp"
#include "fetchd/origin/request_counter.hpp"
#include "test_client.hpp"

namespace fetchd::origin {
namespace {

using test::Client;
using test::request;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::string expected_body(std::uint64_t seed, std::uint64_t offset, std::size_t n) {
  std::string out(n, '\0');
  fill_body(seed, offset, std::as_writable_bytes(std::span(out.data(), n)));
  return out;
}

Sha256 sha256(const std::string& bytes) {
  Sha256 digest{};
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest.data(), &len, EVP_sha256(), nullptr);
  return digest;
}

bool has_line(const std::string& head, const std::string& line) {
  return head.find("\r\n" + line + "\r\n") != std::string::npos;
}

std::size_t count_of(const std::string& haystack, const std::string& needle) {
  std::size_t n = 0;
  for (auto pos = haystack.find(needle); pos != std::string::npos; pos = haystack.find(needle, pos + 1)) ++n;
  return n;
}

// Decodes a chunked body held whole in raw; throws on any framing error. rest: what followed it.
std::string dechunk(const std::string& raw, std::string* rest = nullptr) {
  std::string out;
  std::size_t pos = 0;
  for (;;) {
    const auto eol = raw.find("\r\n", pos);
    if (eol == std::string::npos) throw std::runtime_error("no chunk size line");
    const std::size_t size = std::stoul(raw.substr(pos, eol - pos), nullptr, 16);
    pos = eol + 2;
    if (size == 0) {
      if (raw.compare(pos, 2, "\r\n") != 0) throw std::runtime_error("no empty trailer");
      if (rest) *rest = raw.substr(pos + 2);
      return out;
    }
    out += raw.substr(pos, size);
    pos += size;
    if (raw.compare(pos, 2, "\r\n") != 0) throw std::runtime_error("no CRLF after chunk data");
    pos += 2;
  }
}

class OriginServerFault : public ::testing::Test {
 protected:
  OriginServerFault() : origin_(options()) {}

  OriginOptions options() {
    OriginOptions o;
    o.on_request = counter_.hook();
    return o;
  }
  // The server still answers a plain request at once: nothing above blocked its loop.
  void expect_serving() {
    Client c(origin_.port());
    c.send(request("/bytes/100?seed=1"));
    EXPECT_TRUE(c.read_response().body == expected_body(1, 0, 100));
  }

  RequestCounter counter_;
  OriginThread origin_;
};

// Fault case 1: the head declares the full size, exactly k body bytes follow, then EOF (FIN, not RST).
TEST_F(OriginServerFault, CloseAfterSendsKBytesThenEof) {
  for (const std::uint64_t k : {0u, 1u, 500u, 300000u}) {
    Client c(origin_.port());
    c.send(request(fmt::format("/bytes/1000000?seed=2&close_after={}", k)));
    const std::string head = c.read_raw_head();
    EXPECT_TRUE(has_line(head, "Content-Length: 1000000")) << head;
    EXPECT_EQ(head.find("Connection: close"), std::string::npos) << "nothing announces the break";
    std::string body;
    EXPECT_EQ(c.read_to_end(body), 0) << "EOF, not an error";
    EXPECT_EQ(body.size(), k);
    EXPECT_TRUE(body == expected_body(2, 0, k));
  }
  // Counted on the wire: with chunked framing the k bytes include the framing.
  Client c(origin_.port());
  c.send(request("/bytes/100?framing=chunked&chunk_size=10&close_after=7"));
  c.read_raw_head();
  std::string body;
  EXPECT_EQ(c.read_to_end(body), 0);
  EXPECT_TRUE(body == "a\r\n" + expected_body(0, 0, 4));
  expect_serving();
}

// Fault case 2: exactly k bytes, then ECONNRESET.
TEST_F(OriginServerFault, ResetAfterSendsKBytesThenRst) {
  for (const std::uint64_t k : {0u, 1000u, 200000u}) {
    Client c(origin_.port());
    c.send(request(fmt::format("/bytes/1MiB?seed=3&reset_after={}", k)));
    const std::string head = c.read_raw_head();
    EXPECT_TRUE(has_line(head, "Content-Length: 1048576"));
    std::string body;
    EXPECT_EQ(c.read_to_end(body), ECONNRESET) << "k=" << k;
    EXPECT_EQ(body.size(), k);
    EXPECT_TRUE(body == expected_body(3, 0, k));
  }
  EXPECT_TRUE(origin_.wait_for([](const OriginStats& s) { return s.requests_in_flight == 0; }, 20s));
  expect_serving();
}

// Fault case 5: the head, then nothing, for as long as the client stays; other clients are served meanwhile.
TEST_F(OriginServerFault, StallKeepsTheConnectionOpenAndSilent) {
  Client stalled(origin_.port());
  stalled.send(request("/bytes/1000?stall=1"));
  const std::string head = stalled.read_raw_head();
  EXPECT_TRUE(has_line(head, "Content-Length: 1000"));
  Client after_bytes(origin_.port());
  after_bytes.send(request("/bytes/1000?seed=4&stall_after=10"));
  after_bytes.read_raw_head();
  EXPECT_TRUE(after_bytes.read_exactly(10) == expected_body(4, 0, 10));
  Client short_route(origin_.port());
  short_route.send(request("/stall"));
  EXPECT_TRUE(has_line(short_route.read_raw_head(), "Content-Length: 1048576"));

  ASSERT_TRUE(origin_.wait_for([](const OriginStats& s) { return s.requests_in_flight == 3; }, 20s));
  expect_serving();
  EXPECT_TRUE(stalled.quiet_for(300ms));
  EXPECT_TRUE(after_bytes.quiet_for(10ms));
  EXPECT_EQ(origin_.stats().requests_in_flight, 3u) << "stalled responses stay in flight";

  // The client closes: the server notices and lets go at once (not after some timeout of its own).
  stalled.close();
  EXPECT_TRUE(origin_.wait_for([](const OriginStats& s) { return s.requests_in_flight == 2; }, 20s));
  // Stopping the server ends the others.
  EXPECT_EQ(origin_.stop(), 0);
  EXPECT_TRUE(after_bytes.closed_by_server());
  EXPECT_TRUE(short_route.closed_by_server());
}

// Fault case 6: one piece per interval, by timer; the first goes with the head.
TEST_F(OriginServerFault, TrickleSendsOnePiecePerInterval) {
  Client c(origin_.port());
  const auto start = Clock::now();
  c.send(request("/bytes/5?seed=6&trickle=1/100ms"));
  c.read_raw_head();
  // Written together with the head, so it is already here.
  EXPECT_FALSE(c.quiet_for(0ms)) << "the first byte goes with the head";
  std::string body;
  std::vector<Clock::duration> arrivals;
  while (body.size() < 5) {
    body += c.read_exactly(1);
    arrivals.push_back(Clock::now() - start);
  }
  EXPECT_TRUE(body == expected_body(6, 0, 5));
  // Byte i is sent i intervals after the first, which went after the request: timers fire late, never early
  // (but for libuv's whole-millisecond clock).
  for (std::size_t i = 1; i < arrivals.size(); ++i) EXPECT_GE(arrivals[i], i * 100ms - 2ms) << "byte " << i;
  // The connection then carries on normally.
  c.send(request("/bytes/3?seed=1"));
  EXPECT_TRUE(c.read_response().body == expected_body(1, 0, 3));
}

// Fault case 6, second half, and 7: endless, trickling "just above a rate", close-delimited or chunked.
TEST_F(OriginServerFault, EndlessTrickle) {
  Client c(origin_.port());
  const auto start = Clock::now();
  c.send(request("/endless?seed=7&trickle=1000/50ms"));
  const std::string head = c.read_raw_head();
  EXPECT_EQ(head.find("Content-Length"), std::string::npos);
  EXPECT_TRUE(has_line(head, "Connection: close"));
  EXPECT_TRUE(c.read_exactly(5000) == expected_body(7, 0, 5000));
  // 5 pieces: 4 intervals at least (less a little: libuv's clock has whole milliseconds).
  EXPECT_GE(Clock::now() - start, 4 * 50ms - 5ms);
  expect_serving();
  c.close();
  EXPECT_TRUE(origin_.wait_for([](const OriginStats& s) { return s.connections == 0; }, 20s))
      << "the server notices the client's close while trickling";
}

TEST_F(OriginServerFault, EndlessBodiesAreGeneratedOnTheFly) {
  constexpr std::size_t kRead = 20 << 20;
  {
    Client c(origin_.port());
    c.send(request("/endless/e.bin?seed=8"));
    c.read_raw_head();
    EXPECT_TRUE(c.read_exactly(kRead) == expected_body(8, 0, kRead));
  }
  {
    Client c(origin_.port());
    c.send(request("/endless?seed=9&framing=chunked&chunk_size=64KiB"));
    EXPECT_TRUE(has_line(c.read_raw_head(), "Transfer-Encoding: chunked"));
    const std::size_t chunk = 64 * 1024;
    std::string payload;
    for (std::size_t i = 0; i < 64; ++i) {
      ASSERT_EQ(c.read_exactly(7), "10000\r\n") << "chunk " << i;
      payload += c.read_exactly(chunk);
      ASSERT_EQ(c.read_exactly(2), "\r\n") << "chunk " << i;
    }
    EXPECT_TRUE(payload == expected_body(9, 0, 64 * chunk));
  }
  // A client that stops reading holds the server to what the socket buffers take, not an ever-growing queue.
  Client idle(origin_.port());
  idle.send(request("/endless"));
  idle.read_raw_head();
  ASSERT_TRUE(origin_.wait_for([](const OriginStats& s) { return s.requests_in_flight == 1; }, 20s));
  expect_serving();
  EXPECT_EQ(origin_.stop(), 0);
  EXPECT_LT(origin_.stats().bytes_sent, 3 * static_cast<std::uint64_t>(kRead) + (64 << 20));
}

// Fault case 3: exact chunked framing, then the three broken variants.
TEST_F(OriginServerFault, ChunkedFramingAndBrokenChunks) {
  const std::string payload = expected_body(3, 0, 40000);
  std::string expected;
  for (std::size_t pos = 0; pos < payload.size(); pos += 16384) {
    const auto n = std::min<std::size_t>(16384, payload.size() - pos);
    expected += fmt::format("{:x}\r\n", n) + payload.substr(pos, n) + "\r\n";
  }
  const std::string complete = expected + "0\r\n\r\n";
  {
    Client c(origin_.port());
    c.send(request("/bytes/40000?seed=3&framing=chunked&chunk_size=16KiB"));
    const std::string head = c.read_raw_head();
    EXPECT_TRUE(has_line(head, "Transfer-Encoding: chunked"));
    EXPECT_EQ(head.find("Content-Length"), std::string::npos);
    EXPECT_TRUE(c.read_exactly(complete.size()) == complete);
    EXPECT_TRUE(dechunk(complete) == payload);
    c.send(request("/bytes/2?seed=1"));
    EXPECT_TRUE(c.read_response().body == expected_body(1, 0, 2))
        << "keep-alive after a complete chunked body";
  }
  struct Case {
    const char* fault;
    std::string wire;
  };
  std::string bad_size = complete;
  bad_size.replace(0, 4, "zz");
  std::string overflow = complete;
  overflow.replace(0, 4, "FFFFFFFFFFFFFFFFFF");
  const Case cases[] = {{"no_end", expected}, {"bad_size", bad_size}, {"overflow", overflow}};
  for (const auto& tc : cases) {
    Client c(origin_.port());
    c.send(request(std::string("/bytes/40000?seed=3&chunk_size=16KiB&chunk_fault=") + tc.fault));
    const std::string head = c.read_raw_head();
    EXPECT_TRUE(has_line(head, "Transfer-Encoding: chunked")) << tc.fault;
    std::string wire;
    EXPECT_EQ(c.read_to_end(wire), 0) << tc.fault << ": then the server closes";
    EXPECT_TRUE(wire == tc.wire) << tc.fault;
  }
  EXPECT_THROW(dechunk(expected), std::exception) << "no last chunk";
}

// Fault cases 4 and 8: Content-Length lines as asked, the real body, then EOF.
TEST_F(OriginServerFault, ContentLengthFaults) {
  struct Case {
    const char* query;
    std::vector<std::string> lines;
    std::size_t body;
  };
  const Case cases[] = {
      {"/bytes/10?seed=1&cl=10&cl=20", {"Content-Length: 10", "Content-Length: 20"}, 10},
      {"/bytes/10?seed=1&cl=-1", {"Content-Length: -1"}, 10},
      {"/bytes/12?seed=1&cl=12abc", {"Content-Length: 12abc"}, 12},
      {"/bytes/100?seed=1&declare=10GiB", {"Content-Length: 10737418240"}, 100},
  };
  for (const auto& tc : cases) {
    Client c(origin_.port());
    c.send(request(tc.query));
    const std::string head = c.read_raw_head();
    EXPECT_EQ(count_of(head, "Content-Length:"), tc.lines.size()) << tc.query;
    for (const auto& line : tc.lines) EXPECT_TRUE(has_line(head, line)) << tc.query << "\n" << head;
    std::string body;
    EXPECT_EQ(c.read_to_end(body), 0) << tc.query;
    EXPECT_TRUE(body == expected_body(1, 0, tc.body)) << tc.query;
  }
  // Case 8 without declare: the head of a huge body arrives at once; nothing is buffered for it.
  Client c(origin_.port());
  c.send(request("/bytes/100GiB?close_after=0"));
  EXPECT_TRUE(has_line(c.read_raw_head(), "Content-Length: 107374182400"));
  std::string body;
  EXPECT_EQ(c.read_to_end(body), 0);
  EXPECT_EQ(body, "");
}

// Fault case 9: one 100 KiB header line; more than 300 KiB of headers in 1 KiB lines.
TEST_F(OriginServerFault, HugeHeaders) {
  Client c(origin_.port());
  c.send(request("/bytes/10?seed=1&big_header=100KiB"));
  std::string head = c.read_raw_head();
  EXPECT_TRUE(has_line(head, "X-Big: " + std::string(100 * 1024, 'a')));
  EXPECT_TRUE(c.read_exactly(10) == expected_body(1, 0, 10));

  c.send(request("/bytes/10?seed=1&header_fill=301KiB"));
  head = c.read_raw_head();
  EXPECT_EQ(count_of(head, "\r\nX-Fill-"), 301u);
  EXPECT_GT(head.size(), 301u * 1024);
  EXPECT_TRUE(has_line(head, "X-Fill-000300: " + std::string(1024 - 17, 'a')));
  EXPECT_TRUE(c.read_exactly(10) == expected_body(1, 0, 10));
  c.send(request("/bytes/3?seed=1"));
  EXPECT_TRUE(c.read_response().body == expected_body(1, 0, 3)) << "same connection, normal again";
}

// Fault case 10: the loop never ends, and the server counts every hop.
TEST_F(OriginServerFault, RedirectLoopAndCounts) {
  Client c(origin_.port());
  std::string target = "/loop/a?t=case10";
  constexpr int kHops = 21;  // e.g. max_redirects 20, plus the first request
  for (int i = 0; i < kHops; ++i) {
    c.send(request(target));
    auto r = c.read_response();
    ASSERT_EQ(r.status, 302);
    EXPECT_EQ(r.header("location"), i % 2 == 0 ? "/loop/b?t=case10" : "/loop/a?t=case10");
    target = r.header("location");
  }
  EXPECT_EQ(counter_.prefix("/loop/"), static_cast<std::uint64_t>(kHops));
  EXPECT_EQ(counter_.path("/loop/a"), 11u);
  EXPECT_EQ(counter_.target("/loop/b?t=case10"), 10u);
  c.send(request("/redirect-to?url=file%3A%2F%2F%2Fetc%2Fpasswd&status=301"));
  auto away = c.read_response();
  EXPECT_EQ(away.status, 301);
  EXPECT_EQ(away.header("location"), "file:///etc/passwd");
}

// Fault case 15: Retry-After as given, in any form.
TEST_F(OriginServerFault, RetryAfter) {
  Client c(origin_.port());
  const std::pair<const char*, const char*> cases[] = {
      {"120", "120"},
      {"Wed%2C%2021%20Oct%202015%2007%3A28%3A00%20GMT", "Wed, 21 Oct 2015 07:28:00 GMT"},
      {"31536000", "31536000"},
      {"-5", "-5"},
      {"soon%21", "soon!"},
  };
  for (const auto& [query, value] : cases) {
    c.send(request(std::string("/status/503?retry_after=") + query));
    auto r = c.read_response();
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(r.header("retry-after"), value);
  }
  c.send(request("/status/429?retry_after=1"));
  EXPECT_EQ(c.read_response().header("retry-after"), "1");
}

// Fault cases 19 and 20: a server that ignores Range, one that answers another range, a changed validator.
TEST_F(OriginServerFault, RangeFaultsAndValidators) {
  const std::string whole = expected_body(5, 0, 1000);
  Client c(origin_.port());
  c.send(request("/bytes/1000?seed=5&range=ignore", "Range: bytes=100-\r\n"));
  auto ignored = c.read_response();
  EXPECT_EQ(ignored.status, 200);
  EXPECT_FALSE(ignored.has("content-range"));
  EXPECT_TRUE(ignored.body == whole);

  c.send(request("/bytes/1000?seed=5&range=wrong", "Range: bytes=100-\r\n"));
  auto wrong = c.read_response();
  EXPECT_EQ(wrong.status, 206);
  EXPECT_EQ(wrong.header("content-range"), "bytes 99-999/1000");
  EXPECT_TRUE(wrong.body == whole.substr(99)) << "true to its Content-Range, not to the request";

  // "The content changed": a new ETag at the same URL (via etag=, or rewrite below) defeats If-Range.
  const std::string etag = body_etag(1000, 5);
  c.send(request("/bytes/1000?seed=5", "Range: bytes=100-\r\nIf-Range: " + etag + "\r\n"));
  EXPECT_EQ(c.read_response().status, 206);
  c.send(request("/bytes/1000?seed=5&etag=%22changed%22", "Range: bytes=100-\r\nIf-Range: " + etag + "\r\n"));
  auto changed = c.read_response();
  EXPECT_EQ(changed.status, 200);
  EXPECT_EQ(changed.header("etag"), "\"changed\"");
}

// A test can make one URL serve a fault first and the healthy body afterwards.
TEST(OriginServerRewrite, FaultFirstThenHealthy) {
  std::atomic<int> seen{0};
  OriginOptions options;
  options.rewrite = [&seen](std::string_view target) {
    return seen++ == 0 ? std::string(target) + "&close_after=100" : std::string(target);
  };
  RequestCounter counter;
  options.on_request = counter.hook();
  OriginThread origin(options);
  const std::string whole = expected_body(2, 0, 1000);
  {
    Client c(origin.port());
    c.send(request("/bytes/1000?seed=2"));
    c.read_raw_head();
    std::string partial;
    EXPECT_EQ(c.read_to_end(partial), 0);
    EXPECT_TRUE(partial == whole.substr(0, 100));
  }
  Client c(origin.port());
  c.send(request("/bytes/1000?seed=2", "Range: bytes=100-\r\nIf-Range: " + body_etag(1000, 2) + "\r\n"));
  auto rest = c.read_response();
  EXPECT_EQ(rest.status, 206);
  EXPECT_TRUE(whole.substr(0, 100) + rest.body == whole);
  EXPECT_EQ(counter.target("/bytes/1000?seed=2"), 2u) << "on_request sees the target as sent";
}

// RFC 9530 digests: computed from the generated bytes; for a 206 Content-Digest covers the part.
TEST_F(OriginServerFault, Digests) {
  const std::string whole = expected_body(3, 0, 1000);
  Client c(origin_.port());
  c.send(request("/bytes/1000?seed=3&digest=both"));
  auto full = c.read_response();
  EXPECT_EQ(full.header("content-digest"), sha256_field(sha256(whole)));
  EXPECT_EQ(full.header("repr-digest"), sha256_field(sha256(whole)));

  c.send(request("/bytes/1000?seed=3&digest=both", "Range: bytes=100-199\r\n"));
  auto part = c.read_response();
  EXPECT_EQ(part.status, 206);
  EXPECT_EQ(part.header("content-digest"), sha256_field(sha256(whole.substr(100, 100))));
  EXPECT_EQ(part.header("repr-digest"), sha256_field(sha256(whole)));

  c.send(request("/bytes/1000?seed=3&digest=content"));
  auto content = c.read_response();
  EXPECT_TRUE(content.has("content-digest"));
  EXPECT_FALSE(content.has("repr-digest"));
  c.send(request("/bytes/1000?seed=3&digest=repr", {}, "HEAD"));
  EXPECT_EQ(c.read_response(true).header("repr-digest"), sha256_field(sha256(whole)));

  c.send(request("/bytes/1000?seed=3&digest=wrong"));
  auto wrong = c.read_response();
  EXPECT_TRUE(wrong.body == whole);
  EXPECT_NE(wrong.header("content-digest"), sha256_field(sha256(whole)));
  EXPECT_NE(wrong.header("repr-digest"), sha256_field(sha256(whole)));
  EXPECT_TRUE(wrong.header("content-digest").starts_with("sha-256=:"));

  // Larger than one hashing turn: computed in slices between other work, still exact.
  const std::uint64_t n = 6 << 20;
  c.send(request(fmt::format("/bytes/{}?seed=4&digest=both", n), "Range: bytes=1000000-\r\n"));
  auto big = c.read_response();
  EXPECT_EQ(big.status, 206);
  EXPECT_EQ(big.header("repr-digest"), sha256_field(body_sha256(n, 4)));
  EXPECT_EQ(big.header("content-digest"), sha256_field(sha256(big.body)));
  EXPECT_TRUE(big.body == expected_body(4, 1000000, n - 1000000));
}

// Fault case 25: Content-Disposition exactly as asked.
TEST_F(OriginServerFault, ContentDisposition) {
  Client c(origin_.port());
  const std::pair<const char*, const char*> cases[] = {
      {"attachment%3B%20filename%3D%22..%2F..%2Fx%22", "attachment; filename=\"../../x\""},
      {"attachment%3B%20filename*%3DUTF-8''..%252F..%252Fx", "attachment; filename*=UTF-8''..%2F..%2Fx"},
      {"inline%3B%20filename%3D%2Fetc%2Fpasswd", "inline; filename=/etc/passwd"},
  };
  for (const auto& [query, value] : cases) {
    c.send(request(std::string("/bytes/4?cd=") + query));
    auto r = c.read_response();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.header("content-disposition"), value);
  }
  c.send(request("/bytes/4?cd=" + std::string(1000, 'n')));
  EXPECT_EQ(c.read_response().header("content-disposition").size(), 1000u);
}

// All of them at once on one server: stalled, trickling, endless-unread and hashing connections do not hold
// up a plain request.
TEST_F(OriginServerFault, FaultsDoNotHoldUpOtherConnections) {
  std::vector<Client> faulty;
  for (const char* target :
       {"/stall", "/bytes/10?trickle=1/1h", "/endless", "/bytes/1?latency=1h",
        "/bytes/64MiB?digest=repr&latency=1h", "/endless?framing=chunked&trickle=1/10ms"}) {
    faulty.emplace_back(origin_.port());
    faulty.back().send(request(target));
  }
  ASSERT_TRUE(origin_.wait_for([](const OriginStats& s) { return s.requests_in_flight == 6; }, 20s));
  for (int i = 0; i < 20; ++i) expect_serving();
  EXPECT_EQ(origin_.stop(), 0);
  for (auto& c : faulty) {
    std::string ignored;
    try {
      c.read_to_end(ignored);
    } catch (const std::exception& e) {
      ADD_FAILURE() << e.what();
    }
  }
}

TEST(RequestCounter, CountsTargetsPathsAndPrefixes) {
  RequestCounter counter;
  auto hook = counter.hook();
  for (const char* t : {"/loop/a?t=1", "/loop/b?t=1", "/loop/a?t=1", "/loop/a", "/loop/ab", "/bytes/1"})
    hook(t);
  EXPECT_EQ(counter.total(), 6u);
  EXPECT_EQ(counter.target("/loop/a?t=1"), 2u);
  EXPECT_EQ(counter.path("/loop/a"), 3u) << "any query, but not /loop/ab";
  EXPECT_EQ(counter.prefix("/loop/"), 5u);
  EXPECT_EQ(counter.prefix("/nothing"), 0u);
  EXPECT_TRUE(counter.wait_for([](const RequestCounts& c) { return c.total == 6; }, 1ms));
  std::thread later([&] { hook("/x"); });
  EXPECT_TRUE(counter.wait_for([](const RequestCounts& c) { return c.target("/x") == 1; }, 20s));
  later.join();
  counter.reset();
  EXPECT_EQ(counter.total(), 0u);
  hook("/after-reset");
  EXPECT_EQ(counter.total(), 1u) << "the hook shares the counts";
}

}  // namespace
}  // namespace fetchd::origin
