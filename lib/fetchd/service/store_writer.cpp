// SPDX-License-Identifier: Apache-2.0
#include "fetchd/service/store_writer.hpp"

#include <spdlog/spdlog.h>

#include <cassert>

#include "fetchd/core/quiet_thread.hpp"

namespace fetchd::service {

StoreWriter::StoreWriter(uv_loop_t* loop, std::unique_ptr<store::JobStore> store)
    : wake_(loop, [this] { deliver(); }), store_(std::move(store)), thread_(core::start_quiet_thread([this] { run(); })) {}

StoreWriter::~StoreWriter() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void StoreWriter::close() {
  {
    std::lock_guard lock(mutex_);  // a send is made under the lock: none can follow the close
    closed_ = true;
  }
  wake_.close();
}

void StoreWriter::commit(store::Batch batch, Done done) {
  assert(!busy() && "one batch at a time");
  done_ = std::move(done);
  {
    std::lock_guard lock(mutex_);
    todo_ = std::move(batch);
  }
  cv_.notify_all();
}

void StoreWriter::wait() {
  if (!busy()) return;
  {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [this] { return finished_.has_value(); });
  }
  deliver();
}

void StoreWriter::deliver() {
  std::optional<Result> result;
  {
    std::lock_guard lock(mutex_);
    result.swap(finished_);
  }
  if (!result) return;  // wait() delivered it before this wake-up
  auto done = std::move(done_);
  done_ = nullptr;
  done(std::move(*result));
}

void StoreWriter::run() {
  for (;;) {
    store::Batch batch;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [this] { return stop_ || todo_.has_value(); });
      if (!todo_) return;  // stopping, nothing in progress
      batch = std::move(*todo_);
      todo_.reset();
    }
    Result result;
    try {
      result.committed = store_->commit(batch);
    } catch (const std::exception& e) {
      result.error = e.what();
      // Nothing of the batch is stored. The state changes go in one by one: an update the store can never take
      // must not hold back every other one.
      for (auto& u : batch.updates) {
        try {
          store::Batch one;
          one.updates.push_back(u);
          store_->commit(one);
        } catch (const std::exception& one) {
          if (result.kept.empty()) spdlog::error("store: job {} update failed: {}", u.id, one.what());
          result.kept.push_back(u);
        }
      }
    }
    result.batch = std::move(batch);
    {
      std::lock_guard lock(mutex_);
      finished_ = std::move(result);
      if (!closed_) wake_.send();
    }
    cv_.notify_all();
  }
}

}  // namespace fetchd::service
