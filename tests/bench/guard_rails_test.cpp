// SPDX-License-Identifier: Apache-2.0
#include "fetchd/bench/guard_rails.hpp"

#include <gtest/gtest.h>

#include <limits>

#include "fetchd/bench/temp_dir.hpp"

namespace fetchd::bench {
namespace {

constexpr std::uint64_t kGiB = 1ULL << 30;

// A roomy machine: nothing but bench's own caps should refuse anything on it.
SystemLimits big_machine() {
  SystemLimits l;
  l.mem_available_bytes = 64 * kGiB;
  l.nofile_hard = 1'048'576;
  l.max_tasks = 4'000'000;
  l.tasks_in_use = 500;
  l.local_ports = 28'232;
  l.cpus = 2;
  l.downloads_in_memory = false;
  return l;
}

RowPlan plan(std::string_view strategy, int concurrency, WorkloadSpec workload = latency_profile().workload) {
  const auto& variant = *find_strategy(strategy);
  return {variant, concurrency, workers_for(variant, concurrency, 0, 2), workload};
}

std::string refusal(const Decision& d) {
  return d.refused.value_or("");
}

TEST(Decide, EverySaneRowRunsOnABigMachine) {
  for (const auto& v : kBenchStrategies) {
    for (int c : {1, 10, 64}) {
      auto d = decide(plan(v.name, c), big_machine(), GuardRails::defaults());
      EXPECT_FALSE(d.refused) << v.name << " x" << c << ": " << refusal(d);
    }
  }
  for (const char* s : {"event-loop", "curl-multi", "process-pool"}) {
    EXPECT_FALSE(decide(plan(s, 10'000), big_machine(), GuardRails::defaults()).refused) << s;
  }
}

TEST(Decide, ThreadPoolAboveTheThreadCapIsRefused) {
  const auto rails = GuardRails::defaults();
  EXPECT_EQ(rails.max_threads, 2000);
  EXPECT_FALSE(decide(plan("thread-pool", 2000), big_machine(), rails).refused);
  auto d = decide(plan("thread-pool", 2001), big_machine(), rails);
  EXPECT_EQ(refusal(d), "2001 threads, over bench's cap of 2000 threads");
  // The cap is about threads: the event-driven strategies run 10,000 transfers on a handful.
  EXPECT_FALSE(decide(plan("event-loop", 2001), big_machine(), rails).refused);
}

TEST(Decide, BlockingProcessesAboveTheProcessCapAreRefused) {
  const auto rails = GuardRails::defaults();
  EXPECT_EQ(rails.max_processes, 64);
  EXPECT_FALSE(decide(plan("process-pool-blocking", 64), big_machine(), rails).refused);
  auto d = decide(plan("process-pool-blocking", 100), big_machine(), rails);
  EXPECT_EQ(refusal(d), "100 worker processes, over bench's cap of 64 processes");
  // process-pool's workers follow --workers, not the concurrency.
  auto p = plan("process-pool", 1000);
  EXPECT_EQ(p.workers, 2);
  EXPECT_FALSE(decide(p, big_machine(), rails).refused);
  p.workers = 65;
  EXPECT_NE(refusal(decide(p, big_machine(), rails)).find("65 worker processes"), std::string::npos);
}

TEST(Decide, TheHardOpenFilesLimitMustHoldTwoDescriptorsPerTransfer) {
  auto limits = big_machine();
  limits.nofile_hard = 20'000;  // what bench was developed with: 10,000 transfers need 20,064
  EXPECT_FALSE(decide(plan("event-loop", 9'000), limits, GuardRails::defaults()).refused);
  auto d = decide(plan("event-loop", 10'000), limits, GuardRails::defaults());
  EXPECT_EQ(d.estimate.fds, 20'064U);
  EXPECT_EQ(refusal(d),
            "needs ~20064 open files in one process, over the hard RLIMIT_NOFILE of 20000 (ulimit -Hn)");
  // A process pool spreads its transfers over workers: each needs only its share (the origin needs one per
  // connection).
  auto pool = decide(plan("process-pool", 10'000), limits, GuardRails::defaults());
  EXPECT_FALSE(pool.refused) << refusal(pool);
  EXPECT_EQ(pool.estimate.fds, 10'064U);
  limits.nofile_hard = 1024;
  EXPECT_TRUE(decide(plan("process-pool", 1'000), limits, GuardRails::defaults()).refused);
}

TEST(Decide, LocalPortsMustHoldEveryConnection) {
  auto limits = big_machine();
  limits.local_ports = 5'000;
  EXPECT_FALSE(decide(plan("event-loop", 3'976), limits, GuardRails::defaults()).refused);
  auto d = decide(plan("event-loop", 4'000), limits, GuardRails::defaults());
  EXPECT_NE(refusal(d).find("local ports"), std::string::npos) << refusal(d);
}

TEST(Decide, TasksMustLeaveTheKernelHalfOfWhatItHasLeft) {
  auto limits = big_machine();
  limits.max_tasks = 3'000;
  limits.tasks_in_use = 1'000;  // 2,000 left, 1,000 for bench
  EXPECT_FALSE(decide(plan("thread-pool", 900), limits, GuardRails::defaults()).refused);
  auto d = decide(plan("thread-pool", 1'500), limits, GuardRails::defaults());
  EXPECT_NE(refusal(d).find("threads/processes"), std::string::npos) << refusal(d);
}

TEST(Decide, MemoryEstimateOverTheBudgetIsRefused) {
  auto limits = big_machine();
  limits.mem_available_bytes = 1 * kGiB;  // budget: 512 MiB
  auto ok = decide(plan("process-pool-blocking", 16), limits, GuardRails::defaults());
  EXPECT_FALSE(ok.refused) << refusal(ok);
  EXPECT_DOUBLE_EQ(ok.budget_mib, 512.0);
  // 64 processes of 16 MiB each are 1 GiB on their own.
  auto d = decide(plan("process-pool-blocking", 64), limits, GuardRails::defaults());
  ASSERT_TRUE(d.refused);
  EXPECT_GT(d.estimate.fetchd_mib, 1024.0);
  EXPECT_NE(refusal(d).find("estimated memory 1.0 GiB"), std::string::npos) << refusal(d);
  EXPECT_NE(refusal(d).find("over the budget of 50% of MemAvailable (512 MiB)"), std::string::npos)
      << refusal(d);
  // Threads cost memory too.
  EXPECT_TRUE(decide(plan("thread-pool", 2'000), limits, GuardRails::defaults()).refused);
  EXPECT_FALSE(decide(plan("event-loop", 2'000), limits, GuardRails::defaults()).refused);
}

TEST(Decide, DownloadsInTmpfsCountAgainstTheBudget) {
  auto limits = big_machine();
  limits.mem_available_bytes = 2 * kGiB;  // budget 1 GiB; the cpu profile downloads 1 GiB
  const auto cpu = cpu_profile().workload;
  auto on_disk = decide(plan("event-loop", 16, cpu), limits, GuardRails::defaults());
  EXPECT_FALSE(on_disk.refused) << refusal(on_disk);
  EXPECT_EQ(on_disk.estimate.files_mib, 0.0);
  limits.downloads_in_memory = true;
  auto in_memory = decide(plan("event-loop", 16, cpu), limits, GuardRails::defaults());
  EXPECT_GT(in_memory.estimate.files_mib, 1024.0);
  EXPECT_NE(refusal(in_memory).find("files in tmpfs 1.0 GiB"), std::string::npos) << refusal(in_memory);
}

TEST(Decide, LargeResponsesCountTheirSocketBuffers) {
  auto small = estimate_row(plan("event-loop", 16), big_machine());
  auto large = estimate_row(plan("event-loop", 16, cpu_profile().workload), big_machine());
  EXPECT_GT(large.connections_mib, small.connections_mib + 16 * 5);
}

TEST(Decide, TheBudgetFractionIsARule) {
  auto limits = big_machine();
  limits.mem_available_bytes = 1 * kGiB;
  auto rails = GuardRails::defaults();
  rails.memory_budget_fraction = 0.01;  // ~10 MiB: less than one fetchd process
  EXPECT_TRUE(decide(plan("event-loop", 1), limits, rails).refused);
}

TEST(MemoryHistory, BasisIsTheLargestMeasuredRowAtOrBelow) {
  MemoryHistory h;
  EXPECT_FALSE(h.basis("latency/thread-pool", 100));
  h.add("latency/thread-pool", 10, 20.0);
  auto b = h.basis("latency/thread-pool", 100);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->concurrency, 10);
  EXPECT_FALSE(b->slope_mib);
  h.add("latency/thread-pool", 100, 65.0);
  b = h.basis("latency/thread-pool", 1000);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->concurrency, 100);
  EXPECT_DOUBLE_EQ(b->peak_mib, 65.0);
  ASSERT_TRUE(b->slope_mib);
  EXPECT_DOUBLE_EQ(*b->slope_mib, 0.5);
  EXPECT_EQ(h.basis("latency/thread-pool", 50)->concurrency, 10);
  EXPECT_FALSE(h.basis("latency/thread-pool", 5));
  EXPECT_FALSE(h.basis("cpu/thread-pool", 1000));
}

TEST(Decide, ALearntSlopeSteeperThanTheConstantsRefusesEarlier) {
  auto limits = big_machine();
  limits.mem_available_bytes = 4 * kGiB;  // budget 2 GiB
  const auto rails = GuardRails::defaults();
  EXPECT_FALSE(decide(plan("event-loop", 10'000), limits, rails).refused);
  // Suppose the strategy measured 1 MiB per transfer between 10 and 100: 10,000 would need ~10 GiB.
  MemoryHistory h;
  h.add("latency/event-loop", 10, 30.0);
  h.add("latency/event-loop", 100, 120.0);
  auto d = decide(plan("event-loop", 10'000), limits, rails, h.basis("latency/event-loop", 10'000));
  ASSERT_TRUE(d.refused);
  EXPECT_NEAR(d.estimate.learned_mib, 120.0 + 9'900, 1.0);
  // A flat measurement never lowers the constants' estimate.
  MemoryHistory flat;
  flat.add("latency/event-loop", 10, 15.0);
  flat.add("latency/event-loop", 100, 15.0);
  auto e = estimate_row(plan("event-loop", 10'000), limits, flat.basis("latency/event-loop", 10'000));
  EXPECT_GE(e.fetchd_mib, estimate_row(plan("event-loop", 10'000), limits).fetchd_mib);
}

TEST(ReadSystemLimits, SeesThisMachine) {
  auto limits = read_system_limits(temp_base_dir());
  EXPECT_GT(limits.mem_available_bytes, 0U);
  EXPECT_GT(limits.nofile_hard, 0U);
  EXPECT_GT(limits.max_tasks, limits.tasks_in_use);
  EXPECT_GT(limits.tasks_in_use, 0U);
  EXPECT_GT(limits.local_ports, 0U);
  EXPECT_GE(limits.cpus, 1);
  if (std::filesystem::is_directory("/dev/shm") && file_system_name("/dev/shm") == "tmpfs") {
    EXPECT_TRUE(read_system_limits("/dev/shm").downloads_in_memory);
  }
}

}  // namespace
}  // namespace fetchd::bench
