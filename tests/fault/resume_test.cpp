// SPDX-License-Identifier: Apache-2.0
// Fault cases 19 and 20 (resume), for every strategy. The first answer breaks off (close_after) and leaves a
// .part with a resume record; what the second attempt asks for is read off the RecordingProxy, and what it
// got is checked against the origin's deterministic bodies.

#include <fmt/format.h>

#include "fault_support.hpp"
#include "fetchd/origin/body.hpp"

namespace fetchd::fault {
namespace {

using core::ErrorCategory;

constexpr std::uint64_t kSize = 300000;
constexpr std::uint64_t kCut = 120000;
constexpr const char* kLastModified = "Sat, 01 Jan 2022 00:00:00 GMT";

class ResumeFault : public FaultTest {
 protected:
  // A job for `target` (through the proxy) whose answers are `answers` in turn.
  core::JobId add_planned(Runner& r, const std::string& target, std::vector<std::string> answers,
                          const std::string& dest, std::optional<std::string> sha = {}) {
    rewrite_.plan(target, std::move(answers));
    auto req = request(target, dest, /*via_proxy=*/true);
    req.sha256 = std::move(sha);
    return r.add(req);
  }
};

TEST_P(ResumeFault, Case19_StrongEtagResumesWithRangeAndIfRange) {
  config_.defaults.retry.retries = 1;
  const std::string target = fmt::format("/bytes/{}/e.bin?seed=5", kSize);
  Runner r(config_);
  // The healthy answer also sends Repr-Digest (the whole file's SHA-256): the resumed file must match it.
  auto id = add_planned(r, target, {fmt::format("{}&close_after={}", target, kCut), target + "&digest=repr"},
                        "e.bin", origin::body_sha256_hex(kSize, 5));
  ASSERT_TRUE(r.run());
  const Outcome& o = r.outcome(id);
  ASSERT_TRUE(done_after(o, 2));
  EXPECT_EQ(o.log[0].result.category, ErrorCategory::kPartial);
  EXPECT_EQ(o.last.resumed_from, kCut);
  auto heads = proxy_->heads_for("/bytes/");
  ASSERT_EQ(heads.size(), 2u);
  EXPECT_EQ(heads[1].header("Range").value_or("<none>"), fmt::format("bytes={}-", kCut));
  EXPECT_EQ(heads[1].header("If-Range").value_or("<none>"), origin::body_etag(kSize, 5));
  EXPECT_EQ(file_sha256(out("e.bin")), origin::body_sha256_hex(kSize, 5));
  EXPECT_EQ(count_regular_files(out()), 1u) << list_tree(out());
}

TEST_P(ResumeFault, Case19_LastModifiedIsTheValidatorWithoutAnEtag) {
  config_.defaults.retry.retries = 1;
  const std::string target = fmt::format("/bytes/{}/lm.bin?seed=6&etag=none", kSize);
  Runner r(config_);
  auto id = add_planned(r, target, {fmt::format("{}&close_after={}", target, kCut), target}, "lm.bin");
  ASSERT_TRUE(r.run());
  const Outcome& o = r.outcome(id);
  ASSERT_TRUE(done_after(o, 2));
  EXPECT_EQ(o.last.resumed_from, kCut);
  auto heads = proxy_->heads_for("/bytes/");
  ASSERT_EQ(heads.size(), 2u);
  EXPECT_EQ(heads[1].header("Range").value_or("<none>"), fmt::format("bytes={}-", kCut));
  EXPECT_EQ(heads[1].header("If-Range").value_or("<none>"), kLastModified);
  EXPECT_EQ(file_sha256(out("lm.bin")), origin::body_sha256_hex(kSize, 6));
}

TEST_P(ResumeFault, Case19_WithoutAStrongValidatorNothingIsResumed) {
  // A weak ETag never matches in If-Range (RFC 9110 13.1.5) and there is no date: the .part is not resumable,
  // so it is dropped and the retry starts from zero without Range.
  config_.defaults.retry.retries = 1;
  const std::string target =
      fmt::format("/bytes/{}/weak.bin?seed=7&etag=W/%22w1%22&last_modified=none", kSize);
  Runner r(config_);
  auto id = add_planned(r, target, {fmt::format("{}&close_after={}", target, kCut), target}, "weak.bin");
  ASSERT_TRUE(r.run());
  const Outcome& o = r.outcome(id);
  ASSERT_TRUE(done_after(o, 2));
  EXPECT_EQ(o.last.resumed_from, 0u);
  auto heads = proxy_->heads_for("/bytes/");
  ASSERT_EQ(heads.size(), 2u);
  EXPECT_FALSE(heads[1].header("Range").has_value()) << *heads[1].header("Range");
  EXPECT_FALSE(heads[1].header("If-Range").has_value());
  EXPECT_EQ(file_sha256(out("weak.bin")), origin::body_sha256_hex(kSize, 7));
}

TEST_P(ResumeFault, Case19_ContentChangedMeanwhileRestartsFromZeroNeverSpliced) {
  // Same URL, other bytes (another seed, so another ETag): If-Range fails, the server sends the whole new
  // file with 200, and the .part restarts from zero. Without If-Range it would have spliced two versions.
  config_.defaults.retry.retries = 1;
  const std::string target = fmt::format("/bytes/{}/changed.bin?seed=8", kSize);
  const std::string changed = fmt::format("/bytes/{}/changed.bin?seed=9", kSize);
  Runner r(config_);
  auto id = add_planned(r, target, {fmt::format("{}&close_after={}", target, kCut), changed}, "changed.bin");
  ASSERT_TRUE(r.run());
  const Outcome& o = r.outcome(id);
  ASSERT_TRUE(done_after(o, 2));
  EXPECT_EQ(o.last.resumed_from, 0u) << "a 200 to a resume restarts the file";
  auto heads = proxy_->heads_for("/bytes/");
  ASSERT_EQ(heads.size(), 2u);
  EXPECT_EQ(heads[1].header("If-Range").value_or("<none>"), origin::body_etag(kSize, 8));
  EXPECT_EQ(file_sha256(out("changed.bin")), origin::body_sha256_hex(kSize, 9));
  EXPECT_EQ(fs::file_size(out("changed.bin")), kSize);
}

TEST_P(ResumeFault, Case20_A206ForAnotherVersionIsNeverSpliced) {
  // The file changed (another seed: other bytes, another ETag) and the server ignores If-Range: it answers the
  // resume with 206 and the new version's ETag. Only that ETag shows the bytes belong to another version: the
  // .part is dropped and the next attempt fetches the new version whole. Without the check the file would be
  // the old version's first kCut bytes followed by the new version's rest, and "done".
  config_.defaults.retry.retries = 3;
  const std::string target = fmt::format("/bytes/{}/v.bin?seed=13", kSize);
  const std::string changed = fmt::format("/bytes/{}/v.bin?seed=14&if_range=ignore", kSize);
  Runner r(config_);
  auto id = add_planned(r, target, {fmt::format("{}&close_after={}", target, kCut), changed}, "v.bin");
  ASSERT_TRUE(r.run());
  const Outcome& o = r.outcome(id);
  ASSERT_TRUE(done_after(o, 3));
  EXPECT_EQ(o.log[1].result.category, ErrorCategory::kProtocol) << o.log[1].result.message;
  EXPECT_NE(o.log[1].result.message.find("ignored If-Range"), std::string::npos) << o.log[1].result.message;
  auto heads = proxy_->heads_for("/bytes/");
  ASSERT_EQ(heads.size(), 3u);
  EXPECT_EQ(heads[1].header("If-Range").value_or("<none>"), origin::body_etag(kSize, 13));
  EXPECT_FALSE(heads[2].header("Range").has_value()) << "the other version's .part was resumed";
  EXPECT_EQ(o.last.resumed_from, 0u);
  EXPECT_EQ(file_sha256(out("v.bin")), origin::body_sha256_hex(kSize, 14)) << "two versions spliced";
  EXPECT_EQ(count_regular_files(out()), 1u) << list_tree(out());
}

TEST_P(ResumeFault, Case20_A206WithoutTheRecordedValidatorIsNeverSpliced) {
  // Same, but the 206 carries no validator at all: nothing proves it is the version of the .part.
  config_.defaults.retry.retries = 3;
  const std::string target = fmt::format("/bytes/{}/nv.bin?seed=15", kSize);
  const std::string changed =
      fmt::format("/bytes/{}/nv.bin?seed=16&if_range=ignore&etag=none&last_modified=none", kSize);
  Runner r(config_);
  auto id = add_planned(r, target, {fmt::format("{}&close_after={}", target, kCut), changed}, "nv.bin");
  ASSERT_TRUE(r.run());
  const Outcome& o = r.outcome(id);
  ASSERT_TRUE(done_after(o, 3));
  EXPECT_NE(o.log[1].result.message.find("no validator"), std::string::npos) << o.log[1].result.message;
  EXPECT_EQ(file_sha256(out("nv.bin")), origin::body_sha256_hex(kSize, 16)) << "two versions spliced";
}

TEST_P(ResumeFault, Case20_ServerIgnoringRangeRestartsFromZero) {
  config_.defaults.retry.retries = 3;
  const std::string target = fmt::format("/bytes/{}/ign.bin?seed=10&range=ignore", kSize);
  Runner r(config_);
  auto id = add_planned(r, target, {fmt::format("{}&close_after={}", target, kCut), target}, "ign.bin",
                        origin::body_sha256_hex(kSize, 10));
  ASSERT_TRUE(r.run());
  const Outcome& o = r.outcome(id);
  ASSERT_TRUE(done_after(o, 2)) << "one restart, no loop";
  EXPECT_EQ(o.last.resumed_from, 0u);
  auto heads = proxy_->heads_for("/bytes/");
  ASSERT_EQ(heads.size(), 2u);
  EXPECT_EQ(heads[1].header("Range").value_or("<none>"), fmt::format("bytes={}-", kCut));
  EXPECT_EQ(file_sha256(out("ign.bin")), origin::body_sha256_hex(kSize, 10));
  EXPECT_GE(origin_->stats().bytes_sent, kSize + kCut) << "the whole body came again";
}

TEST_P(ResumeFault, Case20_WrongContentRangeDropsThePartAndRestartsOnce) {
  // The 206 starts one byte early: splicing it would shift the file. The .part is dropped (retryable protocol
  // error) and the next attempt starts from zero without Range; not an endless loop although retries allow 5.
  config_.defaults.retry.retries = 5;
  const std::string target = fmt::format("/bytes/{}/wrong.bin?seed=11&range=wrong", kSize);
  Runner r(config_);
  auto id = add_planned(r, target, {fmt::format("{}&close_after={}", target, kCut), target}, "wrong.bin",
                        origin::body_sha256_hex(kSize, 11));
  ASSERT_TRUE(r.run());
  const Outcome& o = r.outcome(id);
  ASSERT_TRUE(done_after(o, 3));
  EXPECT_EQ(o.log[1].result.category, ErrorCategory::kProtocol) << o.log[1].result.message;
  EXPECT_NE(o.log[1].result.message.find("Content-Range"), std::string::npos) << o.log[1].result.message;
  EXPECT_TRUE(o.log[1].result.retryable);
  EXPECT_EQ(o.last.resumed_from, 0u);
  auto heads = proxy_->heads_for("/bytes/");
  ASSERT_EQ(heads.size(), 3u);
  EXPECT_EQ(heads[1].header("Range").value_or("<none>"), fmt::format("bytes={}-", kCut));
  EXPECT_FALSE(heads[2].header("Range").has_value()) << "the dropped .part was resumed anyway";
  EXPECT_EQ(file_sha256(out("wrong.bin")), origin::body_sha256_hex(kSize, 11));
  EXPECT_EQ(count_regular_files(out()), 1u) << list_tree(out());
}

TEST_P(ResumeFault, Case20_CompletePartIsVerifiedAndPublishedOn416) {
  // The first answer declares more than it sends: every real byte arrives, the transfer counts as cut short.
  // The retry asks for bytes=N- with N the whole file: 416 with Content-Range */N, and the .part is
  // published.
  config_.defaults.retry.retries = 1;
  constexpr std::uint64_t kSmall = 30000;
  const std::string target = fmt::format("/bytes/{}/full.bin?seed=12", kSmall);
  Runner r(config_);
  auto id = add_planned(r, target, {fmt::format("{}&declare={}", target, kSmall + 10000), target}, "full.bin",
                        origin::body_sha256_hex(kSmall, 12));
  ASSERT_TRUE(r.run());
  const Outcome& o = r.outcome(id);
  ASSERT_TRUE(done_after(o, 2));
  EXPECT_EQ(o.log[0].result.category, ErrorCategory::kPartial);
  EXPECT_EQ(o.last.resumed_from, kSmall);
  auto heads = proxy_->heads_for("/bytes/");
  ASSERT_EQ(heads.size(), 2u);
  EXPECT_EQ(heads[1].header("Range").value_or("<none>"), fmt::format("bytes={}-", kSmall));
  EXPECT_EQ(file_sha256(out("full.bin")), origin::body_sha256_hex(kSmall, 12));
  EXPECT_LT(origin_->stats().bytes_sent, kSmall + 4096) << "the body was sent again";
}

INSTANTIATE_TEST_SUITE_P(AllStrategies, ResumeFault, ::testing::ValuesIn(all_strategies()), param_name);

}  // namespace
}  // namespace fetchd::fault
