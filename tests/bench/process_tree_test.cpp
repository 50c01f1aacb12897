// SPDX-License-Identifier: Apache-2.0
#include "fetchd/bench/process_tree.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

#include "fetchd/bench/child_process.hpp"
#include "fetchd/bench/temp_dir.hpp"

namespace fetchd::bench {
namespace {

using namespace std::chrono_literals;

TEST(ParseProcStat, ReadsTheFieldsBenchUses) {
  // A real line (proc(5) layout), with a command name holding a space and a ')'.
  const std::string line =
      "4242 (fetchd run) x) S 4200 4242 4200 34816 4242 4194304 1500 0 0 0 "
      "120 35 7 3 20 0 17 0 123456 1048576000 5120 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 "
      "0 0 0\n";
  auto st = parse_proc_stat(line);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->pid, 4242);
  EXPECT_EQ(st->ppid, 4200);
  EXPECT_EQ(st->state, 'S');
  EXPECT_EQ(st->utime_ticks, 120U);
  EXPECT_EQ(st->stime_ticks, 35U);
  EXPECT_EQ(st->cutime_ticks, 7U);
  EXPECT_EQ(st->cstime_ticks, 3U);
  EXPECT_EQ(st->threads, 17U);
  EXPECT_EQ(st->rss_pages, 5120U);
}

TEST(ParseProcStat, RefusesWhatIsNotAStatLine) {
  for (std::string_view text :
       {"", "hello", "12 (x) S 1", "x (a) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21",
        "12 (a) S q 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22"}) {
    EXPECT_FALSE(parse_proc_stat(text)) << text;
  }
}

ProcStat proc(pid_t pid, pid_t ppid, std::uint64_t rss_pages, std::uint64_t threads = 1,
              std::uint64_t cpu_ticks = 0) {
  ProcStat p;
  p.pid = pid;
  p.ppid = ppid;
  p.rss_pages = rss_pages;
  p.threads = threads;
  p.utime_ticks = cpu_ticks;
  return p;
}

TEST(SumTree, AddsTheRootAndEveryDescendantOnly) {
  // 1 ── 10 (root) ── 11 ── 13
  //   │            └─ 12
  //   └─ 20 ── 21 (not in the tree)
  std::vector<ProcStat> all = {proc(1, 0, 100),   proc(10, 1, 10, 4, 5), proc(11, 10, 20, 1, 7),
                               proc(12, 10, 30),  proc(13, 11, 40, 2),   proc(20, 1, 1000),
                               proc(21, 20, 1000)};
  auto tree = sum_tree(10, all, 4096);
  EXPECT_EQ(tree.processes(), 4U);
  EXPECT_EQ(tree.pids.front(), 10);
  EXPECT_EQ(tree.rss_bytes, (10U + 20 + 30 + 40) * 4096);
  EXPECT_EQ(tree.threads, 4U + 1 + 1 + 2);
  EXPECT_EQ(tree.cpu_ticks, 12U);
}

TEST(SumTree, NoRootNoTree) {
  std::vector<ProcStat> all = {proc(1, 0, 100), proc(11, 10, 20)};
  auto tree = sum_tree(10, all, 4096);
  EXPECT_EQ(tree.processes(), 0U);
  EXPECT_EQ(tree.rss_bytes, 0U);
}

TEST(SumTree, ACycleOfReusedPidsEnds) {
  std::vector<ProcStat> all = {proc(10, 11, 1), proc(11, 10, 1)};
  auto tree = sum_tree(10, all, 4096);
  EXPECT_LE(tree.processes(), all.size());
}

TEST(ScanProcesses, FindsThisProcessAndItsParent) {
  auto all = scan_processes();
  auto self = std::ranges::find(all, ::getpid(), &ProcStat::pid);
  ASSERT_NE(self, all.end());
  EXPECT_EQ(self->ppid, ::getppid());
  EXPECT_GT(self->rss_pages, 0U);
  EXPECT_GE(self->threads, 1U);
}

TEST(ScanProcesses, AMissingProcDirIsEmpty) {
  EXPECT_TRUE(scan_processes("/nonexistent/proc").empty());
}

// A tree of three processes: sh, and two sleeps below it; the sleeps are the tree's workload, the "ready"
// line from the shell after it started both is what the test waits for.
TEST(TreeSampler, SumsAChildProcessTree) {
  auto child = ChildProcess::spawn({"/bin/sh", "-c", "sleep 1000 & sleep 1000 & echo ready; wait"},
                                   ChildStdout::kPipe);
  auto line = read_first_line(child.stdout_fd(), 10s);
  ASSERT_TRUE(line.ok()) << line.text;
  TreeSampler sampler(child.pid());
  const auto& tree = sampler.sample();
  EXPECT_EQ(tree.processes(), 3U);
  EXPECT_EQ(tree.pids.front(), child.pid());
  // Each process has at least a few pages resident, so the tree is more than the shell alone. Compared within
  // one scan: the shell's RSS read a moment after the sample may have grown by the difference.
  auto all = scan_processes();
  auto shell = std::ranges::find(all, child.pid(), &ProcStat::pid);
  ASSERT_NE(shell, all.end());
  std::uint64_t tree_pages = 0;
  for (auto pid : tree.pids) {
    auto p = std::ranges::find(all, pid, &ProcStat::pid);
    ASSERT_NE(p, all.end()) << pid;
    tree_pages += p->rss_pages;
  }
  EXPECT_GT(tree_pages, shell->rss_pages);
  EXPECT_GT(tree.rss_bytes, 0U);
  EXPECT_EQ(sampler.samples(), 1U);
  EXPECT_NEAR(sampler.peak_rss_mib(), static_cast<double>(tree.rss_bytes) / (1024.0 * 1024.0), 1e-9);
  EXPECT_EQ(sampler.peak_processes(), 3U);
  EXPECT_GE(sampler.own_cpu_s(), 0.0);

  // Killing the tree leaves nothing behind: the shell is reaped by us, the sleeps by init (or whoever reaps
  // orphans here).
  kill_tree(sampler.sample());
  auto status = child.wait_for(10s);
  ASSERT_TRUE(status);
  EXPECT_EQ(status->term_signal(), SIGKILL);
  // The sleeps die once the kernel schedules them: poll their state (bounded) rather than guess a delay.
  auto dead = [&] {
    auto after = scan_processes();
    return std::ranges::all_of(tree.pids, [&](pid_t pid) {
      auto p = std::ranges::find(after, pid, &ProcStat::pid);
      return p == after.end() || p->state == 'Z';  // gone, or a zombie until init reaps it
    });
  };
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!dead() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  EXPECT_TRUE(dead());
}

TEST(ReadRssPages, OfThisProcessAndOfNone) {
  auto pages = read_rss_pages("/proc", ::getpid());
  ASSERT_TRUE(pages);
  EXPECT_GT(*pages, 0U);
  EXPECT_FALSE(read_rss_pages("/proc", 0));
  EXPECT_FALSE(read_rss_pages("/nonexistent/proc", ::getpid()));
}

TEST(TreeSampler, BetweenFullScansRereadsTheKnownProcesses) {
  auto child = ChildProcess::spawn({"/bin/sh", "-c", "sleep 1000 & echo ready; wait"}, ChildStdout::kPipe);
  auto line = read_first_line(child.stdout_fd(), 10s);
  ASSERT_TRUE(line.ok()) << line.text;
  TreeSampler sampler(child.pid());
  for (std::size_t i = 0; i < TreeSampler::kFullScanEvery; ++i)
    sampler.sample();  // the start-up's full scans
  const auto full = sampler.sample();
  ASSERT_EQ(full.processes(), 2U);
  for (std::size_t i = 1; i < TreeSampler::kFullScanEvery; ++i) {
    const auto& partial = sampler.sample();
    EXPECT_EQ(partial.pids, full.pids) << i;
    EXPECT_GT(partial.rss_bytes, 0U) << i;
    EXPECT_EQ(partial.threads, full.threads) << i;  // carried over from the full scan
  }
  EXPECT_EQ(sampler.sample().pids, full.pids);  // a full scan again
  EXPECT_EQ(sampler.samples(), 2 * TreeSampler::kFullScanEvery + 1);
  kill_tree(sampler.sample());
  ASSERT_TRUE(child.wait_for(10s));
}

TEST(TreeSampler, AReapedRootIsAnEmptySample) {
  auto child = ChildProcess::spawn({"/bin/sh", "-c", "exit 0"});
  const pid_t pid = child.pid();
  ASSERT_TRUE(child.wait().success());
  TreeSampler sampler(pid);
  EXPECT_EQ(sampler.sample().processes(), 0U);
  EXPECT_EQ(sampler.peak_rss_mib(), 0.0);
}

}  // namespace
}  // namespace fetchd::bench
