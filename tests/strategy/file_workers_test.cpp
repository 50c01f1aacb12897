// SPDX-License-Identifier: Apache-2.0
// FileWorkers: work runs on a pool thread, or inline with 0 threads; done() always comes later, on the loop,
// never from inside post(); stop() finishes what was posted and closes its handle.
#include "fetchd/strategy/file_workers.hpp"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "fetchd/uv/loop.hpp"

namespace fetchd::strategy {
namespace {

class FileWorkersTest : public ::testing::TestWithParam<int> {};

TEST_P(FileWorkersTest, DoneRunsLaterOnTheLoopInOrderOfCompletion) {
  uv::Loop loop;
  const auto loop_thread = std::this_thread::get_id();
  FileWorkers workers(loop.get(), GetParam());
  std::vector<int> done;
  std::vector<std::thread::id> work_threads;
  constexpr int kItems = 100;
  for (int i = 0; i < kItems; ++i) {
    workers.post([&work_threads] { work_threads.push_back(std::this_thread::get_id()); },
                 [&done, &workers, i, loop_thread] {
                   EXPECT_EQ(std::this_thread::get_id(), loop_thread);
                   done.push_back(i);
                   if (i == kItems - 1) workers.stop();
                 });
    EXPECT_EQ(done.size(), 0u) << "done() ran inside post()";
  }
  ASSERT_EQ(loop.run(), 0);
  ASSERT_EQ(done.size(), static_cast<std::size_t>(kItems));
  ASSERT_EQ(work_threads.size(), static_cast<std::size_t>(kItems));
  for (int i = 0; i < kItems; ++i) EXPECT_EQ(done[i], i);  // one thread or inline: completions keep their order
  if (GetParam() == 0) {
    EXPECT_EQ(work_threads.front(), loop_thread) << "inline work runs on the posting thread";
  } else {
    EXPECT_NE(work_threads.front(), loop_thread);
  }
  EXPECT_EQ(loop.close(), 0) << "a handle was left open";
}

TEST_P(FileWorkersTest, StopDeliversWhatWasPostedAndPostAfterStopThrows) {
  uv::Loop loop;
  FileWorkers workers(loop.get(), GetParam());
  int done = 0;
  workers.post([] {}, [&done] { ++done; });
  workers.stop();
  EXPECT_EQ(done, 1);
  EXPECT_THROW(workers.post([] {}, [] {}), std::logic_error);
  workers.stop();  // idempotent
  ASSERT_EQ(loop.run(), 0);
  EXPECT_EQ(loop.close(), 0);
}

TEST_P(FileWorkersTest, PostOrRunRunsDoneAtOnceOnlyWithoutThreads) {
  uv::Loop loop;
  FileWorkers workers(loop.get(), GetParam());
  bool worked = false;
  bool done = false;
  workers.post_or_run([&worked] { worked = true; }, [&done, &workers] {
    done = true;
    workers.stop();
  });
  EXPECT_EQ(done, GetParam() == 0) << "inline: done() ran inside the call; with a thread: later, on the loop";
  ASSERT_EQ(loop.run(), 0);
  EXPECT_TRUE(worked);
  EXPECT_TRUE(done);
  EXPECT_EQ(loop.close(), 0);
}

INSTANTIATE_TEST_SUITE_P(Threads, FileWorkersTest, ::testing::Values(0, 1),
                         [](const auto& info) { return info.param == 0 ? "inline" : "onethread"; });

}  // namespace
}  // namespace fetchd::strategy
