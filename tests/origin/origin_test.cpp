// SPDX-License-Identifier: Apache-2.0
// The origin over real sockets: OriginThread on 127.0.0.1, port 0, and a blocking client (test_client.hpp).
#include "fetchd/origin/origin.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sys/resource.h>

#include <chrono>
#include <functional>
#include <thread>
#include <vector>

#include "fetchd/origin/body.hpp"
#include "fetchd/uv/error.hpp"
#include "fetchd/uv/handle.hpp"
#include "fetchd/uv/loop.hpp"
#include "test_client.hpp"

namespace fetchd::origin {
namespace {

using test::Client;
using test::ClientResponse;
using test::request;
using namespace std::chrono_literals;

std::string expected_body(std::uint64_t seed, std::uint64_t offset, std::size_t n) {
  std::string out(n, '\0');
  fill_body(seed, offset, std::as_writable_bytes(std::span(out.data(), n)));
  return out;
}

std::string sha256_hex(const std::string& bytes) {
  Sha256 digest{};
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest.data(), &len, EVP_sha256(), nullptr);
  return to_hex(digest);
}

class OriginServer : public ::testing::Test {
 protected:
  ClientResponse get(const std::string& target, const std::string& headers = {}) {
    Client c(origin_.port());
    c.send(request(target, headers));
    return c.read_response();
  }

  OriginThread origin_;
};

TEST_F(OriginServer, ServesDeterministicBytes) {
  auto r = get("/bytes/100000/f7.bin?seed=7");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-length"), "100000");
  EXPECT_EQ(r.header("etag"), body_etag(100000, 7));
  EXPECT_EQ(r.header("last-modified"), kBodyLastModified);
  EXPECT_EQ(r.header("accept-ranges"), "bytes");
  EXPECT_EQ(r.header("content-type"), "application/octet-stream");
  ASSERT_EQ(r.body.size(), 100000u);
  EXPECT_TRUE(r.body == expected_body(7, 0, 100000));
  EXPECT_EQ(sha256_hex(r.body), body_sha256_hex(100000, 7));
  // The name segments only serve the client; the body depends on (n, seed) alone.
  EXPECT_TRUE(get("/bytes/100000/other/name.dat?seed=7").body == r.body);
  EXPECT_EQ(get("/bytes/0").body, "");
}

TEST_F(OriginServer, StreamsLargeBody) {
  const std::uint64_t n = 48ull << 20;
  auto r = get("/bytes/" + std::to_string(n) + "?seed=11");
  ASSERT_EQ(r.body.size(), n);
  EXPECT_EQ(sha256_hex(r.body), body_sha256_hex(n, 11));
  // The server counts after its last write callback, which may run after the client has read everything.
  EXPECT_TRUE(origin_.wait_for([&](const OriginStats& s) { return s.requests_in_flight == 0; }, 20s));
  EXPECT_GE(origin_.stats().bytes_sent, n);
}

TEST_F(OriginServer, Ranges) {
  const std::string target = "/bytes/10000?seed=3";
  const std::string whole = expected_body(3, 0, 10000);
  Client c(origin_.port());
  struct Case {
    const char* range;
    int status;
    const char* content_range;
    std::size_t first;
    std::size_t length;
  };
  const Case cases[] = {
      {"bytes=100-199", 206, "bytes 100-199/10000", 100, 100},
      {"bytes=9000-", 206, "bytes 9000-9999/10000", 9000, 1000},
      {"bytes=-10", 206, "bytes 9990-9999/10000", 9990, 10},
      {"bytes=9995-20000", 206, "bytes 9995-9999/10000", 9995, 5},
      {"bytes=3-3", 206, "bytes 3-3/10000", 3, 1},
      {"bytes=0-1,5-9", 200, "", 0, 10000},
  };
  for (const auto& tc : cases) {
    c.send(request(target, std::string("Range: ") + tc.range + "\r\n"));
    auto r = c.read_response();
    EXPECT_EQ(r.status, tc.status) << tc.range;
    EXPECT_EQ(r.header("content-range"), tc.content_range) << tc.range;
    EXPECT_EQ(r.header("content-length"), std::to_string(tc.length)) << tc.range;
    EXPECT_TRUE(r.body == whole.substr(tc.first, tc.length)) << tc.range;
  }
  c.send(request(target, "Range: bytes=10000-\r\n"));
  auto unsatisfiable = c.read_response();
  EXPECT_EQ(unsatisfiable.status, 416);
  EXPECT_EQ(unsatisfiable.header("content-range"), "bytes */10000");
  // A stale validator gets the whole current body instead of a splice.
  c.send(request(target, "Range: bytes=10-\r\nIf-Range: \"stale\"\r\n"));
  auto stale = c.read_response();
  EXPECT_EQ(stale.status, 200);
  EXPECT_TRUE(stale.body == whole);
  c.send(request(target, "Range: bytes=10-\r\nIf-Range: " + body_etag(10000, 3) + "\r\n"));
  EXPECT_EQ(c.read_response().status, 206);
  EXPECT_EQ(origin_.stats().connections_total, 1u) << "all on one keep-alive connection";
}

TEST_F(OriginServer, KeepAliveServesTwoRequestsOnOneConnection) {
  Client c(origin_.port());
  c.send(request("/bytes/10?seed=1"));
  EXPECT_TRUE(c.read_response().body == expected_body(1, 0, 10));
  c.send(request("/bytes/20?seed=2"));
  EXPECT_TRUE(c.read_response().body == expected_body(2, 0, 20));
  auto stats = origin_.stats();
  EXPECT_EQ(stats.connections_total, 1u);
  EXPECT_EQ(stats.requests_total, 2u);
  EXPECT_EQ(stats.connections, 1u);
}

TEST_F(OriginServer, PipelinedRequestsAreAnsweredInOrder) {
  Client c(origin_.port());
  c.send(request("/bytes/10?seed=1") + request("/bytes/20?seed=2", {}, "HEAD") + request("/status/404") +
         request("/bytes/300000?seed=3") + request("/bytes/30?seed=4"));
  EXPECT_TRUE(c.read_response().body == expected_body(1, 0, 10));
  auto head = c.read_response(true);
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.header("content-length"), "20");
  EXPECT_EQ(c.read_response().body, "not found\n");
  EXPECT_TRUE(c.read_response().body == expected_body(3, 0, 300000));
  EXPECT_TRUE(c.read_response().body == expected_body(4, 0, 30));
}

TEST_F(OriginServer, ManyPipelinedRequestsWithBoundedBuffering) {
  // More than the server buffers while busy (64 KiB), sent from another thread while this one reads.
  constexpr int kCount = 3000;
  std::string batch;
  for (int i = 0; i < kCount; ++i) batch += request("/bytes/100?seed=" + std::to_string(i));
  ASSERT_GT(batch.size(), 128u * 1024);
  Client c(origin_.port());
  std::thread sender([&] { c.send(batch); });
  int good = 0;
  for (int i = 0; i < kCount; ++i)
    good += c.read_response().body == expected_body(static_cast<std::uint64_t>(i), 0, 100);
  sender.join();
  EXPECT_EQ(good, kCount);
  EXPECT_EQ(origin_.stats().requests_total, static_cast<std::uint64_t>(kCount));
}

TEST_F(OriginServer, HeadHasNoBody) {
  Client c(origin_.port());
  c.send(request("/bytes/5000?seed=9", {}, "HEAD"));
  auto head = c.read_response(true);
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.header("content-length"), "5000");
  EXPECT_EQ(head.header("etag"), body_etag(5000, 9));
  // If the HEAD response had carried body bytes, they would now be read as the next status line.
  c.send(request("/bytes/3?seed=9"));
  auto next = c.read_response();
  EXPECT_EQ(next.status, 200);
  EXPECT_TRUE(next.body == expected_body(9, 0, 3));
}

TEST_F(OriginServer, StatusCodes) {
  Client c(origin_.port());
  const std::pair<int, const char*> cases[] = {
      {200, "ok\n"},
      {201, "created\n"},
      {301, "moved permanently\n"},
      {404, "not found\n"},
      {410, "gone\n"},
      {429, "too many requests\n"},
      {500, "internal server error\n"},
      {503, "service unavailable\n"},
      {299, "status 299\n"},
  };
  for (const auto& [code, text] : cases) {
    c.send(request("/status/" + std::to_string(code)));
    auto r = c.read_response();
    EXPECT_EQ(r.status, code);
    EXPECT_EQ(r.body, text);
  }
  c.send(request("/status/204"));
  auto no_content = c.read_response();
  EXPECT_EQ(no_content.status, 204);
  EXPECT_FALSE(no_content.has("content-length"));
  c.send(request("/nowhere"));
  auto unknown = c.read_response();
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.body, "not found\n");
  c.send(request("/bytes/1", "Content-Length: 3\r\n", "POST") + "abc");
  EXPECT_EQ(c.read_response().status, 405);
  c.send(request("/bytes/1?seed=5"));
  EXPECT_EQ(c.read_response().status, 200) << "the connection survives all of the above";
}

TEST_F(OriginServer, HonoursConnectionClose) {
  {
    Client c(origin_.port());
    c.send(request("/bytes/10", "Connection: close\r\n"));
    auto r = c.read_response();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.header("connection"), "close");
    EXPECT_TRUE(c.closed_by_server());
  }
  // The server half-closed first and drained until our close; only then is the connection gone.
  EXPECT_TRUE(origin_.wait_for([&](const OriginStats& s) { return s.connections == 0; }, 20s));

  Client old(origin_.port());
  old.send("GET /bytes/4 HTTP/1.0\r\n\r\n");
  EXPECT_EQ(old.read_response().body.size(), 4u);
  EXPECT_TRUE(old.closed_by_server());
}

TEST_F(OriginServer, AnswersEverythingAskedBeforeTheClientHalfCloses) {
  Client c(origin_.port());
  c.send(request("/bytes/10?seed=1&latency=50ms") + request("/bytes/20?seed=2"));
  c.shutdown_write();
  EXPECT_TRUE(c.read_response().body == expected_body(1, 0, 10));
  EXPECT_TRUE(c.read_response().body == expected_body(2, 0, 20));
  EXPECT_TRUE(c.closed_by_server());
}

TEST_F(OriginServer, MalformedRequestGets400AndClose) {
  Client c(origin_.port());
  c.send("GET / HTTP/1.1\r\nHost : bad\r\n\r\n");
  auto r = c.read_response();
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.header("connection"), "close");
  EXPECT_TRUE(c.closed_by_server());

  Client missing_host(origin_.port());
  missing_host.send("GET /bytes/1 HTTP/1.1\r\n\r\n");
  EXPECT_EQ(missing_host.read_response().status, 400);
}

TEST_F(OriginServer, OversizeHeadGets431AndClose) {
  Client c(origin_.port());
  c.send(request("/bytes/1", "X-Big: " + std::string(100 * 1024, 'a') + "\r\n"));
  auto r = c.read_response();
  EXPECT_EQ(r.status, 431);
  EXPECT_TRUE(c.closed_by_server());
  EXPECT_EQ(get("/bytes/1").status, 200) << "the server carries on";
}

TEST_F(OriginServer, LatencyPerRequest) {
  Client c(origin_.port());
  const auto start = std::chrono::steady_clock::now();
  c.send(request("/bytes/10?latency=300ms"));
  EXPECT_EQ(c.read_response().status, 200);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 300ms);
}

TEST(OriginServerOptions, DefaultLatencyAndOverride) {
  OriginOptions options;
  options.latency = 250ms;
  OriginThread origin(options);
  Client c(origin.port());
  auto start = std::chrono::steady_clock::now();
  c.send(request("/status/200"));
  EXPECT_EQ(c.read_response().status, 200);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 250ms);
  start = std::chrono::steady_clock::now();
  c.send(request("/status/200?latency=400ms"));
  EXPECT_EQ(c.read_response().status, 200);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 400ms);
  EXPECT_EQ(origin.stop(), 0);
}

TEST_F(OriginServer, CountsParallelConnections) {
  rlimit limit{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  // Both ends of each connection live in this process.
  const std::size_t n = std::min<std::size_t>(500, (limit.rlim_cur - 64) / 2);
  std::vector<Client> clients;
  clients.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    clients.emplace_back(origin_.port());
    clients.back().send(request("/bytes/1"));
  }
  for (auto& c : clients) ASSERT_EQ(c.read_response().status, 200);
  // Each answer proves its connection was accepted, and none was closed yet.
  auto stats = origin_.stats();
  EXPECT_EQ(stats.connections, n);
  EXPECT_EQ(stats.max_connections, n);
  EXPECT_EQ(stats.connections_total, n);
  EXPECT_EQ(stats.requests_total, n);

  clients.clear();
  ASSERT_TRUE(origin_.wait_for([&](const OriginStats& s) { return s.connections == 0; }, 20s));
  EXPECT_EQ(origin_.stats().max_connections, n);
  origin_.reset_max();
  EXPECT_EQ(origin_.stats().max_connections, 0u);
  Client a(origin_.port());
  Client b(origin_.port());
  a.send(request("/bytes/1"));
  b.send(request("/bytes/1"));
  a.read_response();
  b.read_response();
  EXPECT_EQ(origin_.stats().max_connections, 2u);
}

TEST_F(OriginServer, CountsRequestsInFlightAndStopsCleanlyWhileDelayed) {
  constexpr std::size_t kClients = 16;
  std::vector<Client> clients;
  for (std::size_t i = 0; i < kClients; ++i) {
    clients.emplace_back(origin_.port());
    clients.back().send(request("/bytes/10?latency=1h"));
  }
  ASSERT_TRUE(origin_.wait_for([&](const OriginStats& s) { return s.requests_in_flight == kClients; }, 20s));
  EXPECT_EQ(origin_.stats().max_requests_in_flight, kClients);
  EXPECT_EQ(origin_.stop(), 0) << "shutdown closes delayed requests and the loop";
  auto stats = origin_.stats();
  EXPECT_EQ(stats.requests_in_flight, 0u);
  EXPECT_EQ(stats.connections, 0u);
  for (auto& c : clients) EXPECT_TRUE(c.closed_by_server());
}

TEST_F(OriginServer, StopsCleanlyWhileStreaming) {
  Client idle(origin_.port());
  Client reader(origin_.port());
  reader.send(request("/bytes/100GiB"));
  EXPECT_EQ(reader.read_response(true).header("content-length"), std::to_string(100ull << 30));
  // The client reads nothing more: the server must wait for it instead of buffering the body.
  ASSERT_TRUE(origin_.wait_for([&](const OriginStats& s) { return s.bytes_sent > 0; }, 20s));
  EXPECT_EQ(origin_.stats().requests_in_flight, 1u);
  EXPECT_EQ(origin_.stop(), 0);
  EXPECT_EQ(origin_.stop(), 0) << "idempotent";
  EXPECT_EQ(origin_.stats().connections, 0u);
}

TEST(OriginServerOptions, Ipv6Loopback) {
  OriginOptions options;
  options.host = "::1";
  std::unique_ptr<OriginThread> origin;
  try {
    origin = std::make_unique<OriginThread>(options);
  } catch (const uv::Error& e) {
    GTEST_SKIP() << "no IPv6 loopback: " << e.what();
  }
  EXPECT_EQ(origin->url("/x"), "http://[::1]:" + std::to_string(origin->port()) + "/x");
  Client c(origin->port(), "::1");
  c.send(request("/bytes/5?seed=1"));
  EXPECT_TRUE(c.read_response().body == expected_body(1, 0, 5));
}

TEST(OriginServerOptions, StartupErrorsThrow) {
  OriginThread first;
  OriginOptions same_port;
  same_port.port = first.port();
  EXPECT_THROW(OriginThread{same_port}, uv::Error);
  OriginOptions bad_host;
  bad_host.host = "localhost";
  EXPECT_THROW(OriginThread{bad_host}, uv::Error);
  EXPECT_EQ(first.url("/a"), "http://127.0.0.1:" + std::to_string(first.port()) + "/a");
}

// Origin used directly on a caller's loop (as `fetchd origin` does), stopped from another thread via
// uv_async.
TEST(OriginOnLoop, ServesAndClosesTheLoop) {
  uv::Loop loop;
  {
    Origin origin(loop.get(), OriginOptions{});
    const auto port = origin.port();
    uv::Async done(loop.get(), [&] {
      origin.close();
      done.close();
    });
    std::string body;
    std::thread client([&] {
      Client c(port);
      c.send(request("/bytes/64?seed=8"));
      body = c.read_response().body;
      done.send();
    });
    loop.run();
    client.join();
    EXPECT_TRUE(body == expected_body(8, 0, 64));
    EXPECT_EQ(origin.stats().requests_total, 1u);
  }
  EXPECT_EQ(loop.close(), 0);
}

}  // namespace
}  // namespace fetchd::origin
