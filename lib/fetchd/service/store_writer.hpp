// SPDX-License-Identifier: Apache-2.0
#pragma once
// Commits the daemon's batches on a thread of its own, through a connection to the job store of its own, so
// that the control loop (transfers, requests) never waits for SQLite or an fsync: with the store on the loop,
// a busy daemon spent a quarter of its loop in commits. One batch at a time, in order; its result comes back
// to the loop through a uv_async, or at once from wait() when the loop must read what it wrote (the loop reads
// through its own connection, which sees every commit done before the read began).
// Thread: everything but the store on the loop thread; the store only on the writer thread.

#include <uv.h>

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fetchd/store/job_store.hpp"
#include "fetchd/uv/handle.hpp"

namespace fetchd::service {

class StoreWriter {
 public:
  struct Result {
    store::Batch batch;                           // the batch, handed back
    std::optional<store::BatchResult> committed;  // when the batch went in whole
    std::string error;                            // else why: nothing of it is stored
    // After a failure: the updates that failed one by one too (the others went in alone), in order.
    std::vector<store::Update> kept;
  };
  using Done = std::function<void(Result)>;

  StoreWriter(uv_loop_t* loop, std::unique_ptr<store::JobStore> store);
  ~StoreWriter();  // finishes the batch in progress (its done() never runs), then joins
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  // Starts committing `batch`; done() runs on the loop thread once it is committed (or failed). One batch at a
  // time: busy() must be false.
  void commit(store::Batch batch, Done done);
  bool busy() const { return done_ != nullptr; }
  // Blocks until the batch in progress is done and runs its done() (which may start the next one).
  void wait();
  // Closes the wake-up handle: call before the loop's last run.
  void close();

 private:
  void run();      // the writer thread
  void deliver();  // loop thread: done() of a finished batch

  uv::Async wake_;
  std::unique_ptr<store::JobStore> store_;
  Done done_;  // loop thread only: set while a batch is in progress

  std::mutex mutex_;
  std::condition_variable cv_;
  std::optional<store::Batch> todo_;    // for the writer
  std::optional<Result> finished_;      // for the loop
  bool stop_ = false;
  bool closed_ = false;
  std::thread thread_;
};

}  // namespace fetchd::service
