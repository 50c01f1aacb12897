// SPDX-License-Identifier: Apache-2.0
#include "fetchd/core/digest.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>

namespace fetchd::core {
namespace {

TEST(Digest, KnownVectorsStreamedAndWhole) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Digest d;
  ASSERT_TRUE(d.update("hello ", 6));
  EXPECT_EQ(d.hex(), sha256_hex("hello ")) << "hex() looks without ending the stream";
  ASSERT_TRUE(d.update("world", 5));
  EXPECT_EQ(d.hex(), "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
  EXPECT_EQ(d.raw().size(), 32u);
  ASSERT_TRUE(d.reset());
  EXPECT_EQ(d.hex(), sha256_hex(""));

  Digest d512(DigestKind::kSha512);
  ASSERT_TRUE(d512.update("abc", 3));
  EXPECT_EQ(d512.hex(),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd"
            "454d4423643ce80e2a9ac94fa54ca49f");
  Digest moved = std::move(d512);
  EXPECT_EQ(moved.raw().size(), 64u);
}

TEST(Digest, ToHex) {
  EXPECT_EQ(to_hex(std::string("\x00\x01\xab\xff", 4)), "0001abff");
  EXPECT_EQ(to_hex(""), "");
}

}  // namespace
}  // namespace fetchd::core
