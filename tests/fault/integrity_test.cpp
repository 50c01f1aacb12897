// SPDX-License-Identifier: Apache-2.0
// Integrity before publish, for every strategy: the job's own sha512, and the server's RFC 9530 digests
// (Content-Digest of the bytes sent, Repr-Digest of the whole file). A digest the server sends that the body
// does not match is corruption on the way, so it is retried; a checksum the job gave that a body downloaded in
// one go does not match is final. Neither leaves a file.

#include <openssl/evp.h>

#include <cstddef>
#include <vector>

#include "fault_support.hpp"
#include "fetchd/origin/body.hpp"

namespace fetchd::fault {
namespace {

using core::ErrorCategory;

std::string body_sha512_hex(std::uint64_t size, std::uint64_t seed) {
  std::vector<std::byte> body(size);
  origin::fill_body(seed, 0, body);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EXPECT_EQ(EVP_Digest(body.data(), body.size(), digest, &len, EVP_sha512(), nullptr), 1);
  return origin::to_hex({digest, len});
}

class IntegrityFault : public FaultTest {};

TEST_P(IntegrityFault, ServerDigestsThatMatchPublishTheFile) {
  Runner r(config_);
  auto id = r.add(request("/bytes/300000/d.bin?seed=21&digest=both", "d.bin"));
  ASSERT_TRUE(r.run());
  ASSERT_TRUE(done_after(r.outcome(id), 1));
  EXPECT_EQ(file_sha256(out("d.bin")), origin::body_sha256_hex(300000, 21));
}

TEST_P(IntegrityFault, ServerDigestsThatDoNotMatchAreRetriedThenFailWithoutAFile) {
  config_.defaults.retry.retries = 1;
  Runner r(config_);
  auto id = r.add(request("/bytes/300000/w.bin?seed=22&digest=wrong", "w.bin"));
  ASSERT_TRUE(r.run());
  EXPECT_TRUE(failed_with(r.outcome(id), ErrorCategory::kChecksum, {"Digest sha-256 mismatch"}, 2));
  EXPECT_EQ(requests_.count("/bytes/300000/w.bin"), 2u);
  expect_no_file("w.bin");
}

TEST_P(IntegrityFault, Sha512IsVerifiedBeforePublishAndAMismatchIsFinal) {
  config_.defaults.retry.retries = 3;
  Runner r(config_);
  auto good = request("/bytes/200000/g.bin?seed=23", "g.bin");
  good.sha512 = body_sha512_hex(200000, 23);
  auto bad = request("/bytes/200000/b.bin?seed=24", "b.bin");
  bad.sha512 = body_sha512_hex(200000, 25);  // another body's
  auto good_id = r.add(good);
  auto bad_id = r.add(bad);
  ASSERT_TRUE(r.run());
  ASSERT_TRUE(done_after(r.outcome(good_id), 1));
  EXPECT_EQ(file_sha256(out("g.bin")), origin::body_sha256_hex(200000, 23));
  EXPECT_TRUE(failed_with(r.outcome(bad_id), ErrorCategory::kChecksum, {"sha512 mismatch", *bad.sha512}, 1));
  expect_no_file("b.bin");
}

INSTANTIATE_TEST_SUITE_P(AllStrategies, IntegrityFault, ::testing::ValuesIn(all_strategies()), param_name);

}  // namespace
}  // namespace fetchd::fault
