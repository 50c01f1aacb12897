// SPDX-License-Identifier: Apache-2.0
// The store writer against a scripted store: batches are committed on the writer's thread, in order, one at a
// time; done() runs on the loop thread (from the wake-up, or from wait() at once); a failed batch comes back
// whole, with the updates that failed one by one too.

#include "fetchd/service/store_writer.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "fetchd/uv/loop.hpp"

namespace fetchd::service {
namespace {

store::Batch batch(std::vector<store::NewJob> submits, std::vector<store::Update> updates) {
  store::Batch b;
  b.submits = std::move(submits);
  b.updates = std::move(updates);
  return b;
}

// Commits nothing for real: remembers what it was given, and on which thread; fails what it is told to fail.
class ScriptedStore : public store::JobStore {
 public:
  struct Shared {
    std::mutex mutex;
    std::vector<std::size_t> batch_sizes;  // of every commit() call, in order
    std::set<std::thread::id> threads;
    std::set<core::JobId> refused;  // a batch holding one of these updates fails
    bool fail_submits = false;
  };
  explicit ScriptedStore(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}

  store::BatchResult commit(const store::Batch& batch) override {
    std::lock_guard lock(shared_->mutex);
    shared_->batch_sizes.push_back(batch.submits.size() + batch.updates.size());
    shared_->threads.insert(std::this_thread::get_id());
    for (const auto& u : batch.updates) {
      if (shared_->refused.count(u.id)) throw store::StoreError("refused job " + std::to_string(u.id));
    }
    if (shared_->fail_submits && !batch.submits.empty()) throw store::StoreError("disk full");
    store::BatchResult r;
    for (std::size_t i = 0; i < batch.submits.size(); ++i) {
      r.submits.push_back({store::SubmitOutcome::Kind::kCreated, 100 + i, store::State::kQueued});
    }
    return r;
  }
  std::vector<store::Job> next_queued(std::optional<store::Cursor>, std::size_t) override { return {}; }
  std::optional<store::Job> get(core::JobId) override { return std::nullopt; }
  std::vector<store::Job> list(const store::ListQuery&) override { return {}; }
  store::Counts counts() override { return {}; }
  std::uint64_t requeue_running() override { return 0; }
  std::string describe() const override { return "scripted"; }
  std::uint64_t prune(const store::PruneLimits&) override { return 0; }

 private:
  std::shared_ptr<Shared> shared_;
};

store::Update update(core::JobId id) {
  store::Update u;
  u.id = id;
  u.state = store::State::kDone;
  return u;
}

store::NewJob new_job(const std::string& dest) {
  store::NewJob j;
  j.url = "http://127.0.0.1/" + dest;
  j.dest = "/out/" + dest;
  return j;
}

TEST(StoreWriter, CommitsOnItsOwnThreadAndReportsOnTheLoop) {
  uv::Loop loop;
  auto shared = std::make_shared<ScriptedStore::Shared>();
  StoreWriter writer(loop.get(), std::make_unique<ScriptedStore>(shared));
  std::optional<StoreWriter::Result> got;
  std::thread::id done_thread;
  store::Batch batch;
  batch.submits = {new_job("a"), new_job("b")};
  batch.updates = {update(7)};
  writer.commit(std::move(batch), [&](StoreWriter::Result r) {
    got = std::move(r);
    done_thread = std::this_thread::get_id();
    writer.close();  // nothing else keeps the loop running
  });
  EXPECT_TRUE(writer.busy());
  loop.run();
  ASSERT_TRUE(got);
  EXPECT_FALSE(writer.busy());
  EXPECT_EQ(done_thread, std::this_thread::get_id());
  ASSERT_TRUE(got->committed);
  EXPECT_EQ(got->committed->submits.size(), 2u);
  EXPECT_EQ(got->batch.submits.size(), 2u) << "the batch comes back with its result";
  EXPECT_EQ(got->batch.submits[1].dest, "/out/b");
  EXPECT_TRUE(got->error.empty());
  std::lock_guard lock(shared->mutex);
  EXPECT_EQ(shared->threads.count(std::this_thread::get_id()), 0u) << "committed on the loop thread";
}

TEST(StoreWriter, WaitDeliversAtOnceAndTheNextBatchMayStartInsideDone) {
  uv::Loop loop;
  auto shared = std::make_shared<ScriptedStore::Shared>();
  StoreWriter writer(loop.get(), std::make_unique<ScriptedStore>(shared));
  std::vector<int> order;
  writer.commit(batch({}, {update(1)}), [&](StoreWriter::Result r) {
    EXPECT_TRUE(r.committed);
    order.push_back(1);
    writer.commit(batch({}, {update(2), update(3)}), [&](StoreWriter::Result) { order.push_back(2); });
  });
  writer.wait();  // the first, whose done() starts the second
  EXPECT_EQ(order, (std::vector<int>{1}));
  EXPECT_TRUE(writer.busy());
  writer.wait();
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_FALSE(writer.busy());
  writer.wait();  // idle: returns at once
  writer.close();
  loop.run();  // the wake-ups of batches already delivered by wait() find nothing to do
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  std::lock_guard lock(shared->mutex);
  EXPECT_EQ(shared->batch_sizes, (std::vector<std::size_t>{1, 2}));
}

TEST(StoreWriter, AFailedBatchComesBackWithTheUpdatesThatFailedAlone) {
  uv::Loop loop;
  auto shared = std::make_shared<ScriptedStore::Shared>();
  shared->refused = {2};
  shared->fail_submits = false;
  StoreWriter writer(loop.get(), std::make_unique<ScriptedStore>(shared));
  std::optional<StoreWriter::Result> got;
  writer.commit(batch({new_job("x")}, {update(1), update(2), update(3)}),
                [&](StoreWriter::Result r) { got = std::move(r); });
  writer.wait();
  writer.close();
  loop.run();
  ASSERT_TRUE(got);
  EXPECT_FALSE(got->committed);
  EXPECT_NE(got->error.find("refused job 2"), std::string::npos) << got->error;
  ASSERT_EQ(got->kept.size(), 1u) << "1 and 3 went in alone";
  EXPECT_EQ(got->kept[0].id, 2u);
  EXPECT_EQ(got->batch.submits.size(), 1u) << "the refused submits come back for their answers";
  std::lock_guard lock(shared->mutex);
  // The whole batch once, then each update alone.
  EXPECT_EQ(shared->batch_sizes, (std::vector<std::size_t>{4, 1, 1, 1}));
}

}  // namespace
}  // namespace fetchd::service
