// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "fetchd/bench/bench.hpp"
#include "fetchd/bench/options.hpp"
#include "fetchd/bench/temp_dir.hpp"

namespace fetchd::bench {
namespace {

BenchOptions valid_options() {
  BenchOptions o;
  o.strategies = {"event-loop"};
  o.concurrency = {8};
  return o;
}

TEST(Validate, DefaultsAreValid) {
  EXPECT_FALSE(validate(valid_options()));
}

TEST(Validate, RefusesAbsurdInputs) {
  auto o = valid_options();
  o.workload.files = 0;
  EXPECT_EQ(validate(o), "--files must be at least 1");
  o.workload.files = kMaxFiles + 1;
  EXPECT_TRUE(validate(o));
  o = valid_options();
  o.workload.size = UINT64_MAX / 2;
  o.workload.files = 3;
  EXPECT_TRUE(validate(o));
  o = valid_options();
  o.concurrency = {8, 0};
  EXPECT_TRUE(validate(o));
  o.concurrency.clear();
  EXPECT_TRUE(validate(o));
  o = valid_options();
  o.strategies.clear();
  EXPECT_TRUE(validate(o));
  o = valid_options();
  o.expected_sha256 = nullptr;
  EXPECT_TRUE(validate(o));
}

TEST(CheckDiskSpace, SmallWorkloadFits) {
  EXPECT_FALSE(check_disk_space({.files = 10, .size = 1024}, temp_base_dir()));
}

TEST(CheckDiskSpace, RefusesWhatCannotFit) {
  auto problem = check_disk_space({.files = kMaxFiles, .size = 1ULL << 40}, temp_base_dir());
  ASSERT_TRUE(problem);
  EXPECT_NE(problem->find("only"), std::string::npos) << *problem;
}

TEST(TempDir, IsRemovedWithItsContent) {
  std::filesystem::path path;
  {
    auto dir = TempDir::create("fetchd-bench-test-");
    path = dir.path();
    EXPECT_TRUE(std::filesystem::is_directory(path));
    EXPECT_EQ(path.parent_path(), temp_base_dir());
    std::filesystem::create_directories(path / "a" / "b");
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(TempDir, KeepLeavesItInPlace) {
  std::filesystem::path path;
  {
    auto dir = TempDir::create("fetchd-bench-test-");
    dir.keep();
    path = dir.path();
  }
  EXPECT_TRUE(std::filesystem::is_directory(path));
  std::filesystem::remove_all(path);
}

}  // namespace
}  // namespace fetchd::bench
