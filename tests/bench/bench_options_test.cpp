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
  return o;
}

TEST(Validate, DefaultsAreValid) {
  EXPECT_FALSE(validate(valid_options()));
  auto o = valid_options();
  ASSERT_EQ(o.profiles.size(), 2U);  // both profiles unless told otherwise
  EXPECT_EQ(o.profiles[0].name, "latency");
  EXPECT_EQ(o.profiles[1].name, "cpu");
  o.strategies = *parse_strategy_list("all");
  EXPECT_FALSE(validate(o));
}

TEST(Validate, RefusesAbsurdInputs) {
  auto o = valid_options();
  o.profiles[1].workload.files = 0;
  EXPECT_EQ(validate(o), "--files must be at least 1");
  o.profiles[1].workload.files = kMaxFiles + 1;
  EXPECT_TRUE(validate(o));
  o = valid_options();
  o.profiles[0].workload.size = UINT64_MAX / 2;
  o.profiles[0].workload.files = 3;
  EXPECT_TRUE(validate(o));
  o = valid_options();
  o.profiles[0].concurrency = {8, 0};
  EXPECT_TRUE(validate(o));
  o.profiles[0].concurrency.clear();
  EXPECT_TRUE(validate(o));
  o = valid_options();
  o.profiles.clear();
  EXPECT_TRUE(validate(o));
  o = valid_options();
  o.strategies.clear();
  EXPECT_TRUE(validate(o));
  o = valid_options();
  o.strategies = {"warp-drive"};
  EXPECT_TRUE(validate(o));
  o = valid_options();
  o.workers = -1;
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
