// SPDX-License-Identifier: Apache-2.0
#pragma once
// A small pool of threads for the blocking file steps of transfers (open of the .part, fsync, rename), owned by
// a strategy whose own thread must never block on the disk. Completions come back to the control loop through
// one uv_async_t (which coalesces sends, so its callback drains the whole queue).
//
// Why not libuv's thread pool: it is process-wide (4 threads, shared with uv fs/DNS), and 4 threads creating
// files in one directory spin on that directory's inode lock. Measured on ext4 (docs/benchmarks.md), 1 thread
// creates files fastest when nothing is fsync'ed, while fsyncs overlap their waits and want several threads;
// the strategy picks the count from output.fsync. With 0 threads the work runs inline on the loop thread (an
// open and a rename without fsync cost a few microseconds, less than the hand-off to a thread and back) and
// done() still comes later, from the async callback: one wake-up per loop iteration, however many files.
// Thread: construct, post() and stop() on the control loop thread; work runs on the pool's threads.

#include <uv.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "fetchd/uv/handle.hpp"

namespace fetchd::strategy {

class FileWorkers {
 public:
  FileWorkers(uv_loop_t* loop, int threads);
  ~FileWorkers();
  FileWorkers(const FileWorkers&) = delete;
  FileWorkers& operator=(const FileWorkers&) = delete;

  // Runs work() on a pool thread (inline with 0 threads), then done() on the loop thread. Never calls done()
  // from inside post().
  void post(std::function<void()> work, std::function<void()> done);
  // As post(), except that with 0 threads work() and done() both run inside this call: for a caller that
  // allows done() to run now (a transfer's prepare, whose done() only starts the transfer), saving a loop
  // iteration per file.
  void post_or_run(std::function<void()> work, std::function<void()> done);
  // Finishes queued work, joins the threads, runs the remaining done() callbacks and closes the async handle.
  // Idempotent; post() after stop() is a logic error.
  void stop();

 private:
  struct Item {
    std::function<void()> work;
    std::function<void()> done;
  };
  static void run(const std::function<void()>& work);
  void run_worker();
  void deliver();

  uv::Async async_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Item> todo_;      // guarded by mutex_
  std::vector<Item> finished_;  // guarded by mutex_
  bool stopping_ = false;      // guarded by mutex_
  bool inline_ = false;        // no threads: work() runs in post()
  bool stopped_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace fetchd::strategy
