// SPDX-License-Identifier: Apache-2.0
#include "fetchd/origin/body.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <chrono>
#include <random>
#include <vector>

namespace fetchd::origin {
namespace {

std::vector<std::byte> body(std::uint64_t seed, std::uint64_t offset, std::size_t n) {
  std::vector<std::byte> out(n);
  fill_body(seed, offset, out);
  return out;
}

std::string hex(const std::vector<std::byte>& bytes) {
  return to_hex(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
}

// Independent of body.cpp's chunking: one EVP call over one buffer.
std::string sha256_of(const std::vector<std::byte>& bytes) {
  Sha256 digest{};
  unsigned int len = 0;
  EXPECT_EQ(EVP_Digest(bytes.data(), bytes.size(), digest.data(), &len, EVP_sha256(), nullptr), 1);
  return to_hex(digest);
}

// Pinned values (computed by an independent Python implementation of the definition in body.hpp): the body
// definition is a contract with bench results and test fixtures, so changing it must be deliberate.
TEST(Body, MatchesPinnedDefinition) {
  EXPECT_EQ(hex(body(0, 0, 16)), "afcd1d7b39a820e2f465b9a16a9e786e");
  EXPECT_EQ(hex(body(123, 0, 16)), "2b41de62d49bdcb47cb76ff0e93c02fa");
  EXPECT_EQ(body_sha256_hex(1000, 123), "de6be806f582ea6eebf265beca0f73d2356be50b9137d99d7825aec9ab4ef849");
  EXPECT_EQ(body_sha256_hex(1 << 20, 7), "796057759e9f4a8da1723b35b4bea2056e6192743a80555ece2fb5e90fbf838d");
  EXPECT_EQ(body_sha256_hex(0, 99), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Body, RandomAccessEqualsSequential) {
  const std::size_t n = 10'000;
  const auto whole = body(42, 0, n);
  std::mt19937_64 rng(1);
  for (int i = 0; i < 500; ++i) {
    std::size_t a = rng() % n;
    std::size_t len = rng() % (n - a + 1);
    auto part = body(42, a, len);
    ASSERT_TRUE(std::equal(part.begin(), part.end(), whole.begin() + static_cast<std::ptrdiff_t>(a)))
        << "offset " << a << " length " << len;
  }
  EXPECT_EQ(body(42, 0, n), whole) << "deterministic";
}

TEST(Body, SeedsDiffer) {
  EXPECT_NE(body(1, 0, 64), body(2, 0, 64));
}

TEST(Body, Sha256HelperMatchesFill) {
  for (std::uint64_t n : {1ull, 7ull, 8ull, 4095ull, 262'144ull, 262'145ull, 1'000'003ull}) {
    EXPECT_EQ(body_sha256_hex(n, n * 31), sha256_of(body(n * 31, 0, n))) << n;
  }
}

TEST(Body, FillIsFast) {
  // A generous floor (ASan builds included) that still catches an accidental per-byte slow path.
  std::vector<std::byte> buf(16 << 20);
  auto start = std::chrono::steady_clock::now();
  for (std::uint64_t i = 0; i < 8; ++i) fill_body(9, i * buf.size(), buf);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  double gb_per_s = 8.0 * static_cast<double>(buf.size()) / seconds / 1e9;
  RecordProperty("fill_gb_per_s", std::to_string(gb_per_s));
  EXPECT_GT(gb_per_s, 0.2);
}

TEST(Body, Etag) {
  EXPECT_EQ(body_etag(4096, 123), "\"1000-7b\"");
  EXPECT_NE(body_etag(4096, 1), body_etag(4096, 2));
}

}  // namespace
}  // namespace fetchd::origin
