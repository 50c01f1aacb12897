// SPDX-License-Identifier: Apache-2.0
#include "fetchd/bench/options.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace fetchd::bench {
namespace {

TEST(AvailableStrategies, AreTheFourStrategiesInOrder) {
  auto available = available_strategies();
  EXPECT_TRUE(std::ranges::equal(available, kKnownStrategies));
}

TEST(BenchStrategies, EachIsAKnownKindAndFindable) {
  for (const auto& v : kBenchStrategies) {
    EXPECT_NE(std::ranges::find(kKnownStrategies, v.kind), std::end(kKnownStrategies)) << v.name;
    EXPECT_EQ(find_strategy(v.name), &v);
  }
  EXPECT_EQ(find_strategy("warp-drive"), nullptr);
  const auto* blocking = find_strategy("process-pool-blocking");
  ASSERT_NE(blocking, nullptr);
  EXPECT_EQ(blocking->kind, "process-pool");
  EXPECT_EQ(blocking->inner, "blocking");
  EXPECT_EQ(find_strategy("process-pool")->inner, "event-loop");
}

TEST(WorkersFor, FollowsEachStrategysRule) {
  const auto& event_loop = *find_strategy("event-loop");
  const auto& pool = *find_strategy("process-pool");
  const auto& blocking = *find_strategy("process-pool-blocking");
  EXPECT_EQ(workers_for(event_loop, 100, 0, 2), 0);
  EXPECT_EQ(workers_for(pool, 100, 0, 2), 2);  // one per CPU by default
  EXPECT_EQ(workers_for(pool, 100, 8, 2), 8);  // --workers
  EXPECT_EQ(workers_for(pool, 4, 8, 2), 4);    // never more than transfers
  EXPECT_EQ(workers_for(pool, 1, 0, 16), 1);
  EXPECT_EQ(workers_for(pool, 100, 0, 0), 1);      // an unknown CPU count still gives a worker
  EXPECT_EQ(workers_for(blocking, 48, 8, 2), 48);  // one per transfer, whatever --workers says
}

TEST(SplitList, TrimsItems) {
  auto items = split_list(" a, b ,c");
  ASSERT_TRUE(items);
  EXPECT_EQ(*items, (std::vector<std::string>{"a", "b", "c"}));
}

TEST(SplitList, RefusesEmptyItems) {
  for (std::string_view text : {"", "  ", "a,,b", "a,", ",a", "a, ,b"}) {
    std::string error;
    EXPECT_FALSE(split_list(text, &error)) << text;
    EXPECT_FALSE(error.empty()) << text;
  }
}

TEST(ParseConcurrencyList, KeepsOrderAndRepeats) {
  auto values = parse_concurrency_list("1, 10,1000,10");
  ASSERT_TRUE(values);
  EXPECT_EQ(*values, (std::vector<int>{1, 10, 1000, 10}));
}

TEST(ParseConcurrencyList, RefusesZeroNegativeJunkAndHuge) {
  struct Case {
    std::string_view text;
    std::string_view message_part;
  };
  for (auto [text, part] :
       {Case{"0", "at least 1"}, Case{"8,0", "at least 1"}, Case{"-1", "at least 1"},
        Case{"x", "not a whole number"}, Case{"10x", "not a whole number"}, Case{"1.5", "not a whole number"},
        Case{"100001", "too large"}, Case{"99999999999999", "too large"}, Case{"", "empty"}}) {
    std::string error;
    EXPECT_FALSE(parse_concurrency_list(text, &error)) << text;
    EXPECT_NE(error.find(part), std::string::npos) << text << ": " << error;
  }
  EXPECT_TRUE(parse_concurrency_list(std::to_string(kMaxConcurrency)));
}

TEST(ParseStrategyList, AllMeansEveryBenchStrategy) {
  auto names = parse_strategy_list("all");
  ASSERT_TRUE(names);
  EXPECT_EQ(*names, (std::vector<std::string>{"event-loop", "curl-multi", "thread-pool", "process-pool",
                                              "process-pool-blocking"}));
}

TEST(ParseStrategyList, AcceptsKnownNamesInTheGivenOrder) {
  auto names = parse_strategy_list("thread-pool, event-loop,process-pool-blocking");
  ASSERT_TRUE(names);
  EXPECT_EQ(*names, (std::vector<std::string>{"thread-pool", "event-loop", "process-pool-blocking"}));
}

TEST(ParseStrategyList, RefusesUnknownNames) {
  std::string error;
  EXPECT_FALSE(parse_strategy_list("event-loop,warp-drive", &error));
  EXPECT_NE(error.find("unknown strategy 'warp-drive'"), std::string::npos) << error;
  EXPECT_NE(error.find("process-pool-blocking"), std::string::npos) << error;  // lists the known ones
}

TEST(ParseStrategyList, RefusesAllMixedWithNames) {
  std::string error;
  EXPECT_FALSE(parse_strategy_list("all,event-loop", &error));
  EXPECT_NE(error.find("'all'"), std::string::npos) << error;
}

TEST(ParseVia, RunAndServe) {
  EXPECT_EQ(parse_via("run"), Via::kRun);
  EXPECT_EQ(parse_via("serve"), Via::kServe);
  EXPECT_EQ(parse_via(" serve "), Via::kServe);
  EXPECT_EQ(to_string(Via::kRun), "run");
  EXPECT_EQ(to_string(Via::kServe), "serve");
}

TEST(ParseVia, RefusesAnythingElseNamingTheChoices) {
  for (std::string_view text : {"", "daemon", "Serve", "run,serve", "all"}) {
    std::string error;
    EXPECT_FALSE(parse_via(text, &error)) << text;
    EXPECT_NE(error.find("known: run, serve"), std::string::npos) << error;
  }
  std::string error;
  parse_via("daemon", &error);
  EXPECT_NE(error.find("'daemon'"), std::string::npos) << error;
}

TEST(Profiles, DefaultsAreTheDocumentedWorkloads) {
  auto latency = latency_profile();
  EXPECT_EQ(latency.name, "latency");
  EXPECT_EQ(latency.workload.files, 10'000U);
  EXPECT_EQ(latency.workload.size, 4096U);
  EXPECT_EQ(latency.workload.latency, std::chrono::milliseconds(25));
  EXPECT_EQ(latency.concurrency, std::vector<int>{1000});
  auto cpu = cpu_profile();
  EXPECT_EQ(cpu.name, "cpu");
  EXPECT_EQ(cpu.workload.files, 16U);
  EXPECT_EQ(cpu.workload.size, 64U << 20);
  EXPECT_EQ(cpu.workload.latency, std::chrono::milliseconds(0));
  EXPECT_EQ(cpu.concurrency, std::vector<int>{16});
}

std::vector<std::string> names(const std::vector<Profile>& profiles) {
  std::vector<std::string> out;
  for (const auto& p : profiles) out.push_back(p.name);
  return out;
}

TEST(ParseProfileList, NamesAndAll) {
  EXPECT_EQ(names(*parse_profile_list("latency")), std::vector<std::string>{"latency"});
  EXPECT_EQ(names(*parse_profile_list("cpu,latency")), (std::vector<std::string>{"cpu", "latency"}));
  EXPECT_EQ(names(*parse_profile_list("all")), (std::vector<std::string>{"latency", "cpu"}));
  for (std::string_view bad : {"", "disk", "all,cpu", "cpu,cpu", "latency,"}) {
    std::string error;
    EXPECT_FALSE(parse_profile_list(bad, &error)) << bad;
    EXPECT_FALSE(error.empty()) << bad;
  }
}

TEST(PlanProfiles, BothProfilesByDefault) {
  auto profiles = plan_profiles({});
  ASSERT_TRUE(profiles);
  EXPECT_EQ(names(*profiles), (std::vector<std::string>{"latency", "cpu"}));
  EXPECT_EQ((*profiles)[0].concurrency, std::vector<int>{1000});
  EXPECT_EQ((*profiles)[1].concurrency, std::vector<int>{16});
}

TEST(PlanProfiles, ConcurrencyAndFsyncApplyToEveryProfile) {
  WorkloadArgs args;
  args.concurrency = std::vector<int>{10, 100};
  args.fsync = true;
  auto profiles = plan_profiles(args);
  ASSERT_TRUE(profiles);
  for (const auto& p : *profiles) {
    EXPECT_EQ(p.concurrency, (std::vector<int>{10, 100})) << p.name;
    EXPECT_TRUE(p.workload.fsync) << p.name;
  }
}

TEST(PlanProfiles, FilesSizeOrLatencyMakeOneCustomProfile) {
  WorkloadArgs args;
  args.size = 1024;
  auto profiles = plan_profiles(args);
  ASSERT_TRUE(profiles);
  ASSERT_EQ(profiles->size(), 1U);
  const auto& p = profiles->front();
  EXPECT_EQ(p.name, "custom");
  EXPECT_EQ(p.workload.size, 1024U);
  EXPECT_EQ(p.workload.files, 10'000U);  // the rest from the latency profile
  EXPECT_EQ(p.workload.latency, std::chrono::milliseconds(25));
  EXPECT_EQ(p.concurrency, std::vector<int>{1000});

  args.files = 40;
  args.latency = std::chrono::milliseconds(0);
  args.concurrency = std::vector<int>{4, 8};
  profiles = plan_profiles(args);
  ASSERT_TRUE(profiles);
  EXPECT_EQ(profiles->front().workload.files, 40U);
  EXPECT_EQ(profiles->front().workload.latency, std::chrono::milliseconds(0));
  EXPECT_EQ(profiles->front().concurrency, (std::vector<int>{4, 8}));
}

TEST(PlanProfiles, ProfileWithACustomWorkloadIsAnError) {
  for (int which = 0; which < 3; ++which) {
    WorkloadArgs args;
    args.profile = "latency";
    if (which == 0) args.files = 10;
    if (which == 1) args.size = 10;
    if (which == 2) args.latency = std::chrono::milliseconds(1);
    std::string error;
    EXPECT_FALSE(plan_profiles(args, &error)) << which;
    EXPECT_NE(error.find("--profile cannot be combined"), std::string::npos) << error;
  }
  WorkloadArgs args;
  args.profile = "bogus";
  std::string error;
  EXPECT_FALSE(plan_profiles(args, &error));
  EXPECT_NE(error.find("unknown profile 'bogus'"), std::string::npos) << error;
}

}  // namespace
}  // namespace fetchd::bench
