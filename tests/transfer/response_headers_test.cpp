// SPDX-License-Identifier: Apache-2.0
#include "fetchd/transfer/response_headers.hpp"

#include <gtest/gtest.h>

#include <ctime>

namespace fetchd::transfer {
namespace {

using std::chrono::seconds;

// 2015-10-21 07:28:00 UTC
constexpr std::time_t kNow = 1445412480;

TEST(StatusLine, Parses) {
  auto s = parse_status_line("HTTP/1.1 404 Not Found\r\n");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->status, 404);
  EXPECT_EQ(s->reason, "Not Found");
  s = parse_status_line("HTTP/2 200 \r\n");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->status, 200);
  EXPECT_EQ(s->reason, "");
  s = parse_status_line("HTTP/1.0 503\r\n");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->status, 503);
  EXPECT_FALSE(parse_status_line("Content-Length: 5\r\n"));
  EXPECT_FALSE(parse_status_line("HTTP/1.1 20 OK\r\n"));
  EXPECT_FALSE(parse_status_line("HTTP/1.1 2000 OK\r\n"));
  EXPECT_FALSE(parse_status_line("\r\n"));
}

TEST(RetryAfter, Seconds) {
  EXPECT_EQ(parse_retry_after("7", kNow), seconds(7));
  EXPECT_EQ(parse_retry_after(" 120 ", kNow), seconds(120));
  EXPECT_EQ(parse_retry_after("0", kNow), seconds(0));
  EXPECT_EQ(parse_retry_after("-5", kNow), seconds(0));
  EXPECT_EQ(parse_retry_after("31536000", kNow), seconds(31536000)) << "a year passes; the scheduler clamps";
  EXPECT_EQ(parse_retry_after("99999999999999999999999", kNow), kMaxRetryAfter);
}

TEST(RetryAfter, HttpDate) {
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", kNow), seconds(30));
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", kNow), seconds(0)) << "past dates clamp to 0";
  EXPECT_EQ(parse_retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", kNow), seconds(60)) << "RFC 850 form";
}

TEST(RetryAfter, Garbage) {
  EXPECT_FALSE(parse_retry_after("", kNow));
  EXPECT_FALSE(parse_retry_after("soon", kNow));
  EXPECT_FALSE(parse_retry_after("-", kNow));
}

TEST(ContentLength, Parses) {
  EXPECT_EQ(parse_content_length("0"), 0u);
  EXPECT_EQ(parse_content_length(" 1234 "), 1234u);
  EXPECT_EQ(parse_content_length("5, 5,5"), 5u);
  EXPECT_EQ(parse_content_length("18446744073709551615"), 18446744073709551615u);
  EXPECT_FALSE(parse_content_length("5, 6"));
  EXPECT_FALSE(parse_content_length("-1"));
  EXPECT_FALSE(parse_content_length("12abc"));
  EXPECT_FALSE(parse_content_length(""));
  EXPECT_FALSE(parse_content_length("18446744073709551616"));
}

TEST(ResponseHeaders, EveryStatusLineStartsAfresh) {
  ResponseHeaders h;
  ASSERT_TRUE(h.on_line("HTTP/1.1 301 Moved Permanently\r\n", kNow));
  ASSERT_TRUE(h.on_line("location: /next\r\n", kNow));
  ASSERT_TRUE(h.on_line("CONTENT-LENGTH: 10\r\n", kNow));
  ASSERT_TRUE(h.on_line("Retry-After: 99\r\n", kNow));
  ASSERT_TRUE(h.on_line("ETag: \"r\"\r\n", kNow));
  ASSERT_TRUE(h.on_line("\r\n", kNow));
  EXPECT_EQ(h.status, 301);
  EXPECT_EQ(h.location, "/next");
  EXPECT_EQ(h.content_length, 10u);
  EXPECT_EQ(h.retry_after, seconds(99));
  EXPECT_TRUE(h.complete);

  ASSERT_TRUE(h.on_line("HTTP/1.1 200 OK\r\n", kNow));
  ASSERT_TRUE(h.on_line("etag: \"abc\"\r\n", kNow));
  ASSERT_TRUE(h.on_line("Last-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\n", kNow));
  ASSERT_TRUE(h.on_line("Transfer-Encoding: gzip, Chunked\r\n", kNow));
  ASSERT_TRUE(h.on_line("\r\n", kNow));
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.reason, "OK");
  EXPECT_EQ(h.location, "");
  EXPECT_FALSE(h.content_length);
  EXPECT_FALSE(h.retry_after);
  EXPECT_EQ(h.etag, "\"abc\"");
  EXPECT_EQ(h.last_modified, "Wed, 21 Oct 2015 07:28:00 GMT");
  EXPECT_TRUE(h.chunked);

  // Trailers after the header block change nothing.
  ASSERT_TRUE(h.on_line("ETag: \"trailer\"\r\n", kNow));
  EXPECT_EQ(h.etag, "\"abc\"");
}

TEST(ResponseHeaders, MalformedContentLengthStopsTheTransfer) {
  ResponseHeaders conflicting;
  ASSERT_TRUE(conflicting.on_line("HTTP/1.1 200 OK\r\n", kNow));
  ASSERT_TRUE(conflicting.on_line("Content-Length: 5\r\n", kNow));
  EXPECT_TRUE(conflicting.on_line("Content-Length: 5\r\n", kNow)) << "a repeated identical value is fine";
  EXPECT_FALSE(conflicting.on_line("Content-Length: 6\r\n", kNow));
  EXPECT_NE(conflicting.error.find("conflicting"), std::string::npos);

  ResponseHeaders junk;
  ASSERT_TRUE(junk.on_line("HTTP/1.1 200 OK\r\n", kNow));
  EXPECT_FALSE(junk.on_line("Content-Length: -1\r\n", kNow));
  EXPECT_NE(junk.error.find("invalid"), std::string::npos);
}


TEST(ContentRange, ParsesSatisfiedAndUnsatisfied) {
  auto r = parse_content_range("bytes 100-199/1000");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->satisfied);
  EXPECT_EQ(r->first, 100u);
  EXPECT_EQ(r->last, 199u);
  EXPECT_EQ(r->total, std::optional<std::uint64_t>(1000));
  r = parse_content_range("bytes 0-9/*");
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->total);
  r = parse_content_range("bytes */1000");
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->satisfied);
  EXPECT_EQ(r->total, std::optional<std::uint64_t>(1000));
  for (const char* bad : {"bytes 5-4/10", "bytes 0-10/10", "bytes */*", "items 0-1/2", "bytes 0-1", "bytes a-b/3",
                          "bytes 0-99999999999999999999999/1"}) {
    EXPECT_FALSE(parse_content_range(bad)) << bad;
  }
}

TEST(Digest, Sha256MemberOfAStructuredDictionary) {
  // sha-256 of "hello world", base64
  const std::string hex = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
  EXPECT_EQ(parse_digest_sha256("sha-256=:uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=:"), hex);
  EXPECT_EQ(parse_digest_sha256("sha-512=:AAAA:, SHA-256=:uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=:"), hex);
  EXPECT_EQ(parse_digest_sha256("sha-512=:AAAA:"), std::string());  // no sha-256 member: nothing to check
  EXPECT_FALSE(parse_digest_sha256("sha-256=uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek="));  // not a byte sequence
  EXPECT_FALSE(parse_digest_sha256("sha-256=:short:"));
}

TEST(ResponseHeaders, KeepsRangeAndDigestsAndRejectsBadOnes) {
  ResponseHeaders h;
  ASSERT_TRUE(h.on_line("HTTP/1.1 206 Partial Content\r\n", kNow));
  ASSERT_TRUE(h.on_line("Content-Range: bytes 10-19/20\r\n", kNow));
  ASSERT_TRUE(h.on_line("Repr-Digest: sha-256=:uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=:\r\n", kNow));
  ASSERT_TRUE(h.content_range);
  EXPECT_EQ(h.content_range->first, 10u);
  EXPECT_EQ(h.repr_digest_sha256.size(), 64u);
  EXPECT_TRUE(h.content_digest_sha256.empty());
  ResponseHeaders bad;
  ASSERT_TRUE(bad.on_line("HTTP/1.1 206 Partial Content\r\n", kNow));
  EXPECT_FALSE(bad.on_line("Content-Range: bytes 19-10/20\r\n", kNow));
  EXPECT_EQ(bad.error, "invalid Content-Range");
}

}  // namespace
}  // namespace fetchd::transfer
