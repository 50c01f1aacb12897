// SPDX-License-Identifier: Apache-2.0
// The wire bytes of bodies (framing, broken framing, endless) and the sliced body digests.
#include "fetchd/origin/body_stream.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <vector>

#include "fetchd/origin/body.hpp"

namespace fetchd::origin {
namespace {

std::string generated(std::uint64_t seed, std::uint64_t offset, std::size_t n) {
  std::string out(n, '\0');
  fill_body(seed, offset, std::as_writable_bytes(std::span(out.data(), n)));
  return out;
}

Response generated_plan(std::uint64_t seed, std::uint64_t offset, std::uint64_t length) {
  Response r;
  r.body = Response::Body::kGenerated;
  r.seed = seed;
  r.offset = offset;
  r.length = length;
  r.repr_size = offset + length;
  return r;
}

// Reads the whole stream in pieces of `piece` bytes (the last may be shorter), checking that read() only
// comes up short at the end.
std::string drain(const Response& r, std::size_t piece, bool empty = false) {
  BodyStream stream;
  stream.start(r, empty);
  std::string out;
  std::vector<std::pair<std::size_t, std::uint64_t>> bounds;  // (bytes read, size_bound() there)
  std::vector<char> buf(piece);
  for (int guard = 0; !stream.done(); ++guard) {
    if (guard > 10'000'000) throw std::runtime_error("stream does not end");
    const std::uint64_t bound = stream.size_bound();
    const std::size_t before = out.size();
    const std::size_t n = stream.read(buf);
    out.append(buf.data(), n);
    bounds.emplace_back(before, bound);
    if (n < piece) {
      EXPECT_TRUE(stream.done()) << "short read before the end";
    }
  }
  EXPECT_EQ(stream.read(buf), 0u) << "nothing after done()";
  EXPECT_EQ(stream.size_bound(), 0u);
  for (const auto& [at, bound] : bounds) EXPECT_GE(bound, out.size() - at) << "size_bound() at byte " << at;
  return out;
}

// The chunked encoding of payload in chunks of chunk bytes, written out independently of BodyStream.
std::string chunked(const std::string& payload, std::size_t chunk, bool terminate = true) {
  std::string out;
  for (std::size_t pos = 0; pos < payload.size(); pos += chunk) {
    const std::size_t n = std::min(chunk, payload.size() - pos);
    out += fmt::format("{:x}\r\n", n) + payload.substr(pos, n) + "\r\n";
  }
  if (terminate) out += "0\r\n\r\n";
  return out;
}

TEST(BodyStream, LengthFramingIsThePayload) {
  const auto plan = generated_plan(7, 100, 5000);
  const std::string expected = generated(7, 100, 5000);
  for (std::size_t piece : {1u, 7u, 4096u, 5000u, 100000u})
    EXPECT_TRUE(drain(plan, piece) == expected) << piece;
  Response text;
  text.set_text(404, "not found\n");
  EXPECT_EQ(drain(text, 3), "not found\n");
  EXPECT_EQ(drain(generated_plan(1, 0, 0), 16), "");
  EXPECT_EQ(drain(plan, 16, /*empty=*/true), "") << "HEAD";
  BodyStream fresh;
  fresh.start(plan, false);
  EXPECT_EQ(fresh.size_bound(), 5000u) << "exact for a Content-Length body: no oversized buffers";
}

TEST(BodyStream, ChunkedFramingIsExact) {
  auto plan = generated_plan(3, 0, 40000);
  plan.framing = Response::Framing::kChunked;
  plan.chunk_size = 16384;
  const std::string payload = generated(3, 0, 40000);
  const std::string expected = chunked(payload, 16384);
  ASSERT_EQ(expected.substr(0, 6), "4000\r\n");
  ASSERT_TRUE(expected.ends_with("\r\n1c40\r\n" + payload.substr(32768) + "\r\n0\r\n\r\n"));
  for (std::size_t piece : {1u, 5u, 6u, 16390u, 1u << 20})
    EXPECT_TRUE(drain(plan, piece) == expected) << piece;

  plan.length = 0;
  EXPECT_EQ(drain(plan, 64), "0\r\n\r\n") << "an empty chunked body still has its last chunk";
  EXPECT_EQ(drain(plan, 64, /*empty=*/true), "") << "HEAD: no body, no framing";

  Response text;
  text.set_text(200, "hello");
  text.framing = Response::Framing::kChunked;
  text.chunk_size = 2;
  EXPECT_EQ(drain(text, 1), "2\r\nhe\r\n2\r\nll\r\n1\r\no\r\n0\r\n\r\n");
}

TEST(BodyStream, BrokenChunking) {
  auto plan = generated_plan(5, 0, 10);
  plan.framing = Response::Framing::kChunked;
  plan.chunk_size = 4;
  const std::string payload = generated(5, 0, 10);

  plan.chunk_fault = Response::ChunkFault::kNoEnd;
  EXPECT_TRUE(drain(plan, 3) == chunked(payload, 4, /*terminate=*/false));
  EXPECT_TRUE(drain(plan, 3).ends_with(payload.substr(8) + "\r\n"));

  plan.chunk_fault = Response::ChunkFault::kBadSize;
  std::string expected = chunked(payload, 4);
  expected.replace(0, 1, "zz");  // "4\r\n" -> "zz\r\n"
  EXPECT_TRUE(drain(plan, 3) == expected);

  plan.chunk_fault = Response::ChunkFault::kOverflowSize;
  expected = chunked(payload, 4);
  expected.replace(0, 1, "FFFFFFFFFFFFFFFFFF");
  EXPECT_TRUE(drain(plan, 1000) == expected);
}

TEST(BodyStream, EndlessNeverEndsAndBuffersNothing) {
  auto plan = generated_plan(9, 0, Response::kEndless);
  plan.framing = Response::Framing::kClose;
  BodyStream stream;
  stream.start(plan, false);
  std::vector<char> buf(1 << 20);
  std::uint64_t offset = 0;
  for (int i = 0; i < 64; ++i) {  // 64 MiB
    ASSERT_EQ(stream.read(buf), buf.size());
    if (i == 0 || i == 63) {
      EXPECT_TRUE(std::string(buf.data(), 4096) == generated(9, offset, 4096));
    }
    offset += buf.size();
  }
  EXPECT_FALSE(stream.done());
  EXPECT_GE(stream.size_bound(), 1u << 30);

  plan.framing = Response::Framing::kChunked;
  plan.chunk_size = 3;
  stream.start(plan, false);
  std::vector<char> small(3 * 8);
  ASSERT_EQ(stream.read(small), small.size());
  const std::string payload = generated(9, 0, 9);
  EXPECT_EQ(std::string(small.data(), small.size()), "3\r\n" + payload.substr(0, 3) + "\r\n3\r\n" +
                                                         payload.substr(3, 3) + "\r\n3\r\n" +
                                                         payload.substr(6, 3) + "\r\n");
  EXPECT_FALSE(stream.done());
}

std::string sha256_of(const std::string& bytes) {
  Sha256 digest{};
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest.data(), &len, EVP_sha256(), nullptr);
  return to_hex(digest);
}

std::vector<std::byte> scratch(std::size_t n) {
  return std::vector<std::byte>(n);
}

TEST(BodyDigest, WholeAndPartInSlices) {
  const std::uint64_t size = 100000;
  const std::string whole = generated(4, 0, size);
  struct Case {
    bool whole;
    std::uint64_t first;
    std::uint64_t length;
    bool part;
  };
  const Case cases[] = {
      {true, 0, size, true}, {true, 100, 999, true}, {false, 100, 999, true},
      {true, 0, 0, false},   {false, 0, size, true}, {true, size - 1, 1, true},
  };
  for (const auto& c : cases) {
    for (std::size_t slice : {1000u, 4096u, 1u << 20}) {
      BodyDigest digest(4, size, c.whole, c.first, c.length, c.part);
      auto buf = scratch(slice);
      int steps = 0;
      while (!digest.step(buf)) ++steps;
      EXPECT_TRUE(digest.done());
      if (slice == 1000 && c.whole) {
        EXPECT_GT(steps, 1) << "a large body takes several steps";
      }
      if (c.whole) {
        EXPECT_EQ(to_hex(digest.whole()), body_sha256_hex(size, 4));
      }
      if (c.part) {
        EXPECT_EQ(to_hex(digest.part()), sha256_of(whole.substr(c.first, c.length)));
      }
    }
  }
  BodyDigest empty(4, 0, true, 0, 0, true);
  EXPECT_TRUE(empty.done()) << "nothing to hash";
  EXPECT_EQ(to_hex(empty.whole()), body_sha256_hex(0, 4));
}

TEST(BodyDigest, FieldFormat) {
  // RFC 9530 Appendix D: SHA-256 of {"hello": "world"}.
  const std::string body = "{\"hello\": \"world\"}";
  Sha256 digest{};
  unsigned int len = 0;
  EVP_Digest(body.data(), body.size(), digest.data(), &len, EVP_sha256(), nullptr);
  EXPECT_EQ(sha256_field(digest), "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:");
  const std::uint8_t bytes[] = {'f', 'o', 'o', 'b'};
  EXPECT_EQ(to_base64(std::span(bytes, 0)), "");
  EXPECT_EQ(to_base64(std::span(bytes, 1)), "Zg==");
  EXPECT_EQ(to_base64(std::span(bytes, 4)), "Zm9vYg==");
}

}  // namespace
}  // namespace fetchd::origin
