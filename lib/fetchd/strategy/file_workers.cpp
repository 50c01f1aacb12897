// SPDX-License-Identifier: Apache-2.0
#include "fetchd/strategy/file_workers.hpp"

#include <spdlog/spdlog.h>

#include <stdexcept>

#include "fetchd/core/quiet_thread.hpp"

namespace fetchd::strategy {

FileWorkers::FileWorkers(uv_loop_t* loop, int threads)
    : async_(loop, [this] { deliver(); }), inline_(threads <= 0) {
  threads_.reserve(static_cast<std::size_t>(std::max(0, threads)));
  for (int i = 0; i < threads; ++i) threads_.push_back(core::start_quiet_thread([this] { run_worker(); }));
}

FileWorkers::~FileWorkers() { stop(); }

void FileWorkers::post(std::function<void()> work, std::function<void()> done) {
  if (inline_) {
    if (stopped_) throw std::logic_error("FileWorkers::post after stop");
    run(work);
    {
      std::lock_guard lock(mutex_);  // uncontended: deliver() is on this thread too
      finished_.push_back(Item{{}, std::move(done)});
    }
    async_.send();
    return;
  }
  {
    std::lock_guard lock(mutex_);
    if (stopping_) throw std::logic_error("FileWorkers::post after stop");
    todo_.push_back(Item{std::move(work), std::move(done)});
  }
  wake_.notify_one();
}

void FileWorkers::post_or_run(std::function<void()> work, std::function<void()> done) {
  if (!inline_) return post(std::move(work), std::move(done));
  if (stopped_) throw std::logic_error("FileWorkers::post_or_run after stop");
  run(work);
  done();
}

void FileWorkers::run(const std::function<void()>& work) {
  try {
    work();
  } catch (const std::exception& e) {
    // Transfer::prepare/publish report failures as values; anything thrown here is a bug, not a file error.
    spdlog::critical("file worker: unexpected exception: {}", e.what());
  }
}

void FileWorkers::run_worker() {
  for (;;) {
    Item item;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !todo_.empty(); });
      if (todo_.empty()) return;  // stopping and nothing left
      item = std::move(todo_.front());
      todo_.pop_front();
    }
    run(item.work);
    {
      std::lock_guard lock(mutex_);
      finished_.push_back(std::move(item));
    }
    async_.send();
  }
}

void FileWorkers::deliver() {
  std::vector<Item> batch;
  {
    std::lock_guard lock(mutex_);
    batch.swap(finished_);
  }
  for (auto& item : batch) item.done();
}

void FileWorkers::stop() {
  if (stopped_) return;
  stopped_ = true;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
  deliver();
  async_.close();
}

}  // namespace fetchd::strategy
