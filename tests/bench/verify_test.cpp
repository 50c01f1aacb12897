// SPDX-License-Identifier: Apache-2.0
#include "fetchd/bench/verify.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include "fetchd/bench/temp_dir.hpp"

namespace fetchd::bench {
namespace {

constexpr std::string_view kSha256Abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
constexpr std::string_view kSha256Empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

void write(const std::filesystem::path& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

WorkloadFile expect(std::string name, std::uint64_t size, std::string_view sha256) {
  WorkloadFile f;
  f.name = std::move(name);
  f.size = size;
  f.sha256 = std::string(sha256);
  return f;
}

TEST(Sha256File, MatchesKnownDigests) {
  auto dir = TempDir::create("fetchd-bench-test-");
  write(dir.path() / "abc", "abc");
  write(dir.path() / "empty", "");
  EXPECT_EQ(sha256_file(dir.path() / "abc"), kSha256Abc);
  EXPECT_EQ(sha256_file(dir.path() / "empty"), kSha256Empty);
}

TEST(Sha256File, ReadsLargerThanOneChunk) {
  auto dir = TempDir::create("fetchd-bench-test-");
  // 200000 bytes of 'a' span several read chunks; the digest is from an independent implementation (hashlib).
  write(dir.path() / "big", std::string(200000, 'a'));
  EXPECT_EQ(sha256_file(dir.path() / "big"),
            "2287d207f24a941ff3b56c04c8a25ad56b63e3023207b3bb5b4ac0c9869d74be");
}

TEST(Sha256File, ReportsAMissingFile) {
  std::string error;
  EXPECT_FALSE(sha256_file("/nonexistent/fetchd-bench", &error));
  EXPECT_NE(error.find("No such file"), std::string::npos) << error;
}

TEST(VerifyFiles, CountsEveryKindOfBadFile) {
  auto dir = TempDir::create("fetchd-bench-test-");
  write(dir.path() / "good.bin", "abc");
  write(dir.path() / "short.bin", "ab");
  write(dir.path() / "wrong.bin", "abd");
  std::filesystem::create_directory(dir.path() / "dir.bin");
  std::filesystem::create_symlink(dir.path() / "good.bin", dir.path() / "link.bin");
  std::vector<WorkloadFile> files{expect("good.bin", 3, kSha256Abc),  expect("missing.bin", 3, kSha256Abc),
                                  expect("short.bin", 3, kSha256Abc), expect("wrong.bin", 3, kSha256Abc),
                                  expect("dir.bin", 3, kSha256Abc),   expect("link.bin", 3, kSha256Abc)};
  auto report = verify_files(dir.path(), files);
  EXPECT_EQ(report.checked, 6U);
  EXPECT_EQ(report.failures, 5U);
  EXPECT_EQ(report.bytes, 3U);  // only good.bin counts
  ASSERT_EQ(report.problems.size(), 5U);
  EXPECT_EQ(report.problems[0], "missing.bin: missing");
  EXPECT_EQ(report.problems[1], "short.bin: size 2 instead of 3");
  EXPECT_EQ(report.problems[2].rfind("wrong.bin: sha256 ", 0), 0U) << report.problems[2];
  EXPECT_EQ(report.problems[3], "dir.bin: not a regular file");
  EXPECT_EQ(report.problems[4], "link.bin: not a regular file");
}

TEST(VerifyFiles, ReportsOnlyTheFirstProblemsButCountsAll) {
  auto dir = TempDir::create("fetchd-bench-test-");
  std::vector<WorkloadFile> files;
  for (int i = 0; i < 25; ++i) files.push_back(expect("f" + std::to_string(i), 3, kSha256Abc));
  auto report = verify_files(dir.path(), files);
  EXPECT_EQ(report.failures, 25U);
  EXPECT_EQ(report.problems.size(), kMaxReportedProblems);
}

TEST(VerifyFiles, AllGood) {
  auto dir = TempDir::create("fetchd-bench-test-");
  write(dir.path() / "a", "abc");
  write(dir.path() / "b", "");
  std::vector<WorkloadFile> files{expect("a", 3, kSha256Abc), expect("b", 0, kSha256Empty)};
  auto report = verify_files(dir.path(), files);
  EXPECT_EQ(report.failures, 0U);
  EXPECT_EQ(report.bytes, 3U);
  EXPECT_TRUE(report.problems.empty());
}

}  // namespace
}  // namespace fetchd::bench
