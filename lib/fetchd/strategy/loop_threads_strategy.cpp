// SPDX-License-Identifier: Apache-2.0
#include "fetchd/strategy/loop_threads_strategy.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <stdexcept>
#include <utility>

#include "fetchd/core/quiet_thread.hpp"
#include "fetchd/strategy/event_loop_strategy.hpp"
#include "fetchd/uv/loop.hpp"

namespace fetchd::strategy {

LoopThreadsStrategy::LoopThreadsStrategy(const config::StrategyConfig& config, int threads, int file_threads,
                                         uv_loop_t* loop, ResultCallback on_result,
                                         std::shared_ptr<transfer::RateLimiter> limiter)
    : capacity_(config.concurrency),
      on_result_(std::move(on_result)),
      outcomes_async_(loop, [this] { on_outcomes(); }) {
  const int n = std::clamp(threads, 1, std::max(1, config.concurrency));
  for (int i = 0; i < n; ++i) {
    auto l = std::make_unique<Loop>();
    l->capacity = config.concurrency / n + (i < config.concurrency % n ? 1 : 0);
    loops_.push_back(std::move(l));
  }
  for (auto& l : loops_) {
    config::StrategyConfig share = config;
    share.concurrency = l->capacity;
    std::promise<void> ready;
    auto started = ready.get_future();
    l->thread = core::start_quiet_thread([this, raw = l.get(), share, file_threads, limiter, &ready] {
      run_loop(*raw, share, file_threads, limiter, &ready);
    });
    try {
      started.get();  // the loop's inbox exists before anything is posted to it (rethrows its failure)
    } catch (...) {
      // No thread may outlive a constructor that throws: stop the loops that did start.
      l->thread.join();
      for (auto& other : loops_) {
        if (other == l || !other->thread.joinable()) continue;
        post(*other, Command{Command::Kind::kDrain, {}, 0});
        other->thread.join();
      }
      joined_ = true;
      throw;
    }
  }
}

LoopThreadsStrategy::~LoopThreadsStrategy() {
  // The control loop destroys a strategy only after drain() completed; if it did not (an exception on the
  // way), stop the loops now rather than leave threads running.
  if (!joined_) {
    for (auto& l : loops_) post(*l, Command{Command::Kind::kDrain, {}, 0});
    for (auto& l : loops_) {
      if (l->thread.joinable()) l->thread.join();
    }
  }
  outcomes_async_.close();
}

// The body of one loop's thread: an EventLoopStrategy on a loop of its own, fed by the inbox.
void LoopThreadsStrategy::run_loop(Loop& l, config::StrategyConfig config, int file_threads,
                                   std::shared_ptr<transfer::RateLimiter> limiter, std::promise<void>* ready) {
  try {
    uv::Loop loop;
    std::optional<EventLoopStrategy> engine;
    uv::Async inbox;
    uv::Timer tick(loop.get());
    bool draining = false;
    auto publish_tick = [&] {
      std::vector<JobProgress> now;
      engine->progress(now);
      l.bytes.store(engine->snapshot().bytes, std::memory_order_relaxed);
      std::lock_guard lock(l.mutex);
      l.ticks = std::move(now);
    };
    engine.emplace(config, file_threads, loop.get(),
                   [this, &l](core::TransferResult r) { report(Outcome{&l, std::move(r)}); }, std::move(limiter));
    inbox = uv::Async(loop.get(), [&] {
      std::vector<Command> batch;
      {
        std::lock_guard lock(l.mutex);
        batch.swap(l.inbox);
      }
      for (auto& c : batch) {
        switch (c.kind) {
          case Command::Kind::kSubmit:
            engine->submit(std::move(c.request));
            break;
          case Command::Kind::kCancel:
            engine->cancel(c.id);
            break;
          case Command::Kind::kDrain:
            if (draining) break;
            draining = true;
            engine->drain([&] {
              publish_tick();
              {
                std::lock_guard lock(l.mutex);
                l.wake = nullptr;  // nothing is posted to this loop any more
              }
              inbox.close();
              tick.close();
            });
            break;
        }
      }
    });
    tick.start(kTickMs, kTickMs, publish_tick);
    {
      std::lock_guard lock(l.mutex);
      l.wake = inbox.get();
    }
    ready->set_value();
    ready = nullptr;
    loop.run();
    engine.reset();
    if (loop.close() != 0) spdlog::error("event-loop thread: the loop did not close cleanly");
  } catch (const std::exception& e) {
    if (ready != nullptr) {
      ready->set_exception(std::current_exception());
      return;
    }
    spdlog::critical("event-loop thread: {}", e.what());
  }
  report(Outcome{&l, std::nullopt});
}

void LoopThreadsStrategy::post(Loop& l, Command command) {
  std::lock_guard lock(l.mutex);
  if (l.wake == nullptr) return;  // drained: nothing runs there any more
  l.inbox.push_back(std::move(command));
  // While commands are queued, the wake-up that came with the first is still pending.
  if (l.inbox.size() == 1) uv_async_send(l.wake);
}

void LoopThreadsStrategy::report(Outcome outcome) {
  bool first;
  {
    std::lock_guard lock(outcomes_mutex_);
    outcomes_.push_back(std::move(outcome));
    first = outcomes_.size() == 1;
  }
  if (first) outcomes_async_.send();
}

void LoopThreadsStrategy::submit(core::TransferRequest request) {
  if (draining_) throw std::logic_error("LoopThreadsStrategy::submit after drain");
  // The loop with the most free room (its share of the concurrency less what it runs).
  Loop* best = nullptr;
  for (auto& l : loops_) {
    if (best == nullptr || l->capacity - l->active > best->capacity - best->active) best = l.get();
  }
  ++best->active;
  owner_[request.id] = best;
  post(*best, Command{Command::Kind::kSubmit, std::move(request), 0});
}

void LoopThreadsStrategy::cancel(core::JobId id) {
  auto it = owner_.find(id);
  if (it != owner_.end()) post(*it->second, Command{Command::Kind::kCancel, {}, id});
}

void LoopThreadsStrategy::on_outcomes() {
  std::vector<Outcome> batch;
  {
    std::lock_guard lock(outcomes_mutex_);
    batch.swap(outcomes_);
  }
  for (auto& o : batch) {
    if (!o.result) {
      ++drained_;
      continue;
    }
    owner_.erase(o.result->id);
    --o.loop->active;
    finished_bytes_ += o.result->bytes;
    on_result_(std::move(*o.result));
  }
  if (draining_ && drained_ == loops_.size() && !joined_) finish_drain();
}

void LoopThreadsStrategy::drain(std::function<void()> done) {
  draining_ = true;
  drain_done_ = std::move(done);
  for (auto& l : loops_) post(*l, Command{Command::Kind::kDrain, {}, 0});
}

void LoopThreadsStrategy::finish_drain() {
  for (auto& l : loops_) l->thread.join();
  joined_ = true;
  outcomes_async_.close();
  if (auto done = std::move(drain_done_)) done();
}

StrategySnapshot LoopThreadsStrategy::snapshot() const {
  StrategySnapshot s;
  s.active = owner_.size();
  std::uint64_t ticked = 0;
  for (const auto& l : loops_) ticked += l->bytes.load(std::memory_order_relaxed);
  s.bytes = std::max(ticked, finished_bytes_);
  return s;
}

void LoopThreadsStrategy::progress(std::vector<JobProgress>& out) const {
  for (const auto& l : loops_) {
    std::lock_guard lock(l->mutex);
    for (const auto& p : l->ticks) {
      if (owner_.count(p.id) != 0) out.push_back(p);
    }
  }
}

}  // namespace fetchd::strategy
