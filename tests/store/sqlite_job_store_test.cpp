// SPDX-License-Identifier: Apache-2.0
// Every JobStore operation against the SQLite backend in a temp dir.

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "fetchd/store/sqlite_schema.hpp"
#include "store_test_util.hpp"

namespace fetchd::store {
namespace {

using testutil::new_job;
using testutil::raw;
using testutil::submits;
using testutil::update_of;
using testutil::updates;
using Kind = SubmitOutcome::Kind;

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::vector<core::JobId> ids_of(const std::vector<Job>& jobs) {
  std::vector<core::JobId> ids;
  for (const Job& j : jobs) ids.push_back(j.id);
  return ids;
}

class SqliteJobStoreTest : public testutil::StoreTest {};
using testutil::JobStoreTest;
INSTANTIATE_TEST_SUITE_P(Backends, JobStoreTest,
                         ::testing::Values(testutil::Backend::kSqlite, testutil::Backend::kPostgres),
                         testutil::backend_name);

TEST_P(JobStoreTest, SubmitStoresEveryFieldAndGetReturnsThem) {
  NewJob in = new_job("a.bin", "client:k1", 7);
  in.sha256 = std::string(64, 'a');
  in.size = (std::uint64_t{1} << 63) + 5;  // beyond int64: must round-trip anyway
  // Order and duplicates matter; values are bytes (obs-text), not necessarily UTF-8.
  in.headers = {{"Authorization", "Bearer s3cret"}, {"X-Dup", "1"}, {"X-Dup", "2"}, {"X-Bin", "caf\xe9\xff"}};
  const std::int64_t before = now_ms();
  const BatchResult r = store().commit(submits({in}));
  const std::int64_t after = now_ms();
  ASSERT_EQ(r.submits.size(), 1U);
  EXPECT_EQ(r.submits[0].kind, Kind::kCreated);
  EXPECT_EQ(r.submits[0].state, State::kQueued);

  const std::optional<Job> j = store().get(r.submits[0].id);
  ASSERT_TRUE(j);
  EXPECT_EQ(j->id, r.submits[0].id);
  EXPECT_EQ(j->key, in.key);
  EXPECT_EQ(j->url, in.url);
  EXPECT_EQ(j->dest, in.dest);
  EXPECT_EQ(j->sha256, in.sha256);
  EXPECT_EQ(j->size, in.size);
  EXPECT_EQ(j->headers, in.headers);
  EXPECT_EQ(j->priority, 7);
  EXPECT_EQ(j->state, State::kQueued);
  EXPECT_EQ(j->attempts, 0);
  EXPECT_EQ(j->error, "");
  EXPECT_EQ(j->bytes, 0U);
  EXPECT_GE(j->created_ms, before);
  EXPECT_LE(j->created_ms, after);
  EXPECT_EQ(j->updated_ms, j->created_ms);
  EXPECT_EQ(j->finished_ms, 0);
}

core::JobOptions every_option() {
  core::JobOptions o;
  o.sha512 = std::string(128, 'b');
  o.retry.retries = 1;
  o.retry.initial = std::chrono::milliseconds(250);
  o.retry.max = std::chrono::minutes(90);
  o.retry.multiplier = 1.5;
  o.retry.jitter = core::Jitter::kNone;
  o.retry.retry_after_max = std::chrono::seconds(30);
  o.retry.retry_on = core::RetryOn{true, false, true, true, {429, 503}};
  o.max_size = (std::uint64_t{1} << 40) + 1;
  o.rate = 1000;
  o.timeout = std::chrono::milliseconds(0);  // 0 = none: set, and distinct from unset
  return o;
}

TEST_F(SqliteJobStoreTest, OptionsRoundTripAndSurviveAReopen) {
  NewJob in = new_job("opts.bin");
  in.options = every_option();
  const core::JobId id = add(in);
  NewJob partial = new_job("partial.bin");
  partial.options.retry.retries = 0;
  const core::JobId partial_id = add(partial);
  reopen();
  EXPECT_EQ(store().get(id)->options, every_option());
  EXPECT_EQ(store().get(partial_id)->options, partial.options);
  // Stored as JSON text with only the keys set; NULL when the job has none.
  const core::JobId plain = add(new_job("plain.bin"));
  auto db = raw(db_path());
  EXPECT_EQ(db.query_text(fmt::format("SELECT options FROM jobs WHERE id = {}", partial_id).c_str(), "q"),
            R"({"retries":0})");
  EXPECT_EQ(db.query_int(fmt::format("SELECT options IS NULL FROM jobs WHERE id = {}", plain).c_str(), "q"), 1);
  EXPECT_TRUE(store().get(plain)->options.empty());
}

TEST_P(JobStoreTest, AttemptErrorsAreAppendedAndTheNewest16Kept) {
  const core::JobId id = add(new_job("e.bin"));
  EXPECT_TRUE(store().get(id)->errors.empty());
  for (int i = 1; i <= 20; ++i) {
    Update u = update_of(id, State::kQueued, i, fmt::format("attempt {} failed", i));
    u.attempt_error = fmt::format("attempt {} failed", i);
    store().commit(updates({u}));
  }
  // An update without a failed attempt (a start) leaves the list alone.
  store().commit(updates({update_of(id, State::kRunning, 21)}));
  reopen();
  const auto j = store().get(id);
  ASSERT_TRUE(j);
  ASSERT_EQ(j->errors.size(), kMaxErrors);
  EXPECT_EQ(j->errors.front(), "attempt 5 failed");
  EXPECT_EQ(j->errors.back(), "attempt 20 failed");
  EXPECT_EQ(j->error, "");
  EXPECT_EQ(all_jobs().at(0).errors, j->errors);  // list() reads them too
}

TEST_P(JobStoreTest, SkippedIsStoredWithTheUpdateThatSetsIt) {
  const core::JobId skipped = add(new_job("s.bin"));
  const core::JobId fetched = add(new_job("f.bin"));
  EXPECT_FALSE(store().get(skipped)->skipped);
  Update s = update_of(skipped, State::kDone, 1);
  s.skipped = true;
  store().commit(updates({s, update_of(fetched, State::kDone, 1, "", 4096)}));
  reopen();
  EXPECT_TRUE(store().get(skipped)->skipped);
  EXPECT_FALSE(store().get(fetched)->skipped);
  const auto jobs = all_jobs();  // list() reads it too
  ASSERT_EQ(jobs.size(), 2U);
  EXPECT_TRUE(jobs.at(0).skipped);
  EXPECT_FALSE(jobs.at(1).skipped);
  // Every update sets it: the job queued again (an operator's retry) and downloaded is not skipped any more.
  store().commit(updates({update_of(skipped, State::kQueued, 1)}));
  EXPECT_FALSE(store().get(skipped)->skipped);
}

TEST_P(JobStoreTest, OptionalFieldsStayAbsent) {
  const core::JobId id = add(new_job("plain"));
  const auto j = store().get(id);
  ASSERT_TRUE(j);
  EXPECT_EQ(j->key, "");
  EXPECT_FALSE(j->sha256);
  EXPECT_FALSE(j->size);
  EXPECT_TRUE(j->headers.empty());
}

TEST_P(JobStoreTest, GetOfUnknownIdIsEmpty) {
  EXPECT_FALSE(store().get(12345));
  add(new_job("x"));
  EXPECT_FALSE(store().get(12345));
}

TEST_P(JobStoreTest, EmptyBatchCommitsNothing) {
  EXPECT_TRUE(store().commit(Batch{}).submits.empty());
  EXPECT_TRUE(all_jobs().empty());
}

TEST_P(JobStoreTest, ExistingKeyReturnsThatJobInAnyState) {
  const core::JobId id = add(new_job("a", "client:k"));
  // Same key, even with another dest: no insert, the existing job.
  auto r = store().commit(submits({new_job("other", "client:k")}));
  ASSERT_EQ(r.submits.size(), 1U);
  EXPECT_EQ(r.submits[0].kind, Kind::kExisting);
  EXPECT_EQ(r.submits[0].id, id);
  EXPECT_EQ(r.submits[0].state, State::kQueued);

  store().commit(updates({update_of(id, State::kDone)}));
  r = store().commit(submits({new_job("a", "client:k")}));
  EXPECT_EQ(r.submits[0].kind, Kind::kExisting);
  EXPECT_EQ(r.submits[0].id, id);
  EXPECT_EQ(r.submits[0].state, State::kDone);
  EXPECT_EQ(all_jobs().size(), 1U);
}

TEST_P(JobStoreTest, SameKeyTwiceInOneBatchIsOneJob) {
  const auto r = store().commit(submits({new_job("a", "config:a"), new_job("a", "config:a")}));
  ASSERT_EQ(r.submits.size(), 2U);
  EXPECT_EQ(r.submits[0].kind, Kind::kCreated);
  EXPECT_EQ(r.submits[1].kind, Kind::kExisting);
  EXPECT_EQ(r.submits[1].id, r.submits[0].id);
  EXPECT_EQ(all_jobs().size(), 1U);
}

TEST_P(JobStoreTest, EmptyKeysNeverDedupe) {
  const auto r = store().commit(submits({new_job("a"), new_job("b")}));
  EXPECT_EQ(r.submits[0].kind, Kind::kCreated);
  EXPECT_EQ(r.submits[1].kind, Kind::kCreated);
  EXPECT_NE(r.submits[0].id, r.submits[1].id);
}

TEST_P(JobStoreTest, UnfinishedJobWithSameDestIsAConflict) {
  const core::JobId first = add(new_job("same", "client:1"));
  auto r = store().commit(submits({new_job("same", "client:2")}));
  EXPECT_EQ(r.submits[0].kind, Kind::kConflict);
  EXPECT_EQ(r.submits[0].id, first);
  EXPECT_EQ(r.submits[0].state, State::kQueued);

  store().commit(updates({update_of(first, State::kRunning)}));
  r = store().commit(submits({new_job("same")}));
  EXPECT_EQ(r.submits[0].kind, Kind::kConflict);
  EXPECT_EQ(r.submits[0].id, first);
  EXPECT_EQ(r.submits[0].state, State::kRunning);

  // The key wins over the dest rule: the job that holds the key is the answer.
  r = store().commit(submits({new_job("same", "client:1")}));
  EXPECT_EQ(r.submits[0].kind, Kind::kExisting);
  EXPECT_EQ(all_jobs().size(), 1U);
}

TEST_P(JobStoreTest, SameDestTwiceInOneBatchConflictsWithTheFirst) {
  const auto r = store().commit(submits({new_job("d", "client:1"), new_job("d", "client:2"), new_job("e")}));
  ASSERT_EQ(r.submits.size(), 3U);
  EXPECT_EQ(r.submits[0].kind, Kind::kCreated);
  EXPECT_EQ(r.submits[1].kind, Kind::kConflict);
  EXPECT_EQ(r.submits[1].id, r.submits[0].id);
  EXPECT_EQ(r.submits[2].kind, Kind::kCreated);
  EXPECT_EQ(all_jobs().size(), 2U);
}

TEST_P(JobStoreTest, SameDestIsAllowedAgainOnceTheJobFinished) {
  for (State end : {State::kDone, State::kFailed, State::kCancelled}) {
    const std::string dest = "again-" + std::string(to_string(end));
    const core::JobId first = add(new_job(dest));
    store().commit(updates({update_of(first, end)}));
    const auto r = store().commit(submits({new_job(dest)}));
    EXPECT_EQ(r.submits[0].kind, Kind::kCreated) << to_string(end);
    EXPECT_NE(r.submits[0].id, first);
  }
}

TEST_P(JobStoreTest, UpdatesApplyBeforeTheSubmitsOfTheSameBatch) {
  const core::JobId first = add(new_job("d"));
  Batch b = submits({new_job("d")});
  b.updates = {update_of(first, State::kDone)};
  const auto r = store().commit(b);
  EXPECT_EQ(r.submits[0].kind, Kind::kCreated);
  EXPECT_EQ(store().get(first)->state, State::kDone);
}

TEST_P(JobStoreTest, UpdateSetsFieldsAndTimestamps) {
  const core::JobId id = add(new_job("u"));
  const std::int64_t created = store().get(id)->created_ms;

  std::int64_t before = now_ms();
  store().commit(updates({update_of(id, State::kRunning, 1)}));
  auto j = store().get(id);
  EXPECT_EQ(j->state, State::kRunning);
  EXPECT_EQ(j->attempts, 1);
  EXPECT_GE(j->updated_ms, before);
  EXPECT_EQ(j->finished_ms, 0);
  EXPECT_EQ(j->created_ms, created);

  before = now_ms();
  const std::uint64_t big = std::uint64_t{1} << 40;
  store().commit(updates({update_of(id, State::kFailed, 3, "HTTP 404", big)}));
  std::int64_t after = now_ms();
  j = store().get(id);
  EXPECT_EQ(j->state, State::kFailed);
  EXPECT_EQ(j->attempts, 3);
  EXPECT_EQ(j->error, "HTTP 404");
  EXPECT_EQ(j->bytes, big);
  EXPECT_GE(j->finished_ms, before);
  EXPECT_LE(j->finished_ms, after);
  EXPECT_EQ(j->updated_ms, j->finished_ms);

  // Back to the queue (e.g. an operator's retry): unfinished again, finished_ms cleared.
  store().commit(updates({update_of(id, State::kQueued, 3, "HTTP 404", 0)}));
  j = store().get(id);
  EXPECT_EQ(j->state, State::kQueued);
  EXPECT_EQ(j->finished_ms, 0);
  EXPECT_EQ(j->attempts, 3);
}

TEST_P(JobStoreTest, UpdateOfUnknownIdIsIgnored) {
  const core::JobId id = add(new_job("known"));
  Batch b = submits({new_job("new")});
  b.updates = {update_of(999999, State::kDone), update_of(id, State::kRunning)};
  const auto r = store().commit(b);
  EXPECT_EQ(r.submits[0].kind, Kind::kCreated);
  EXPECT_EQ(store().get(id)->state, State::kRunning);
  EXPECT_FALSE(store().get(999999));
  EXPECT_EQ(all_jobs().size(), 2U);
}

TEST_P(JobStoreTest, UpdateMakingASecondUnfinishedJobForADestFailsAndRollsBackTheBatch) {
  const core::JobId old_job = add(new_job("d"));
  store().commit(updates({update_of(old_job, State::kFailed, 1, "timeout")}));
  const core::JobId current = add(new_job("d"));  // allowed: the old one is finished
  const core::JobId other = add(new_job("other"));
  const Counts counts_before = store().counts();

  Batch b;
  b.updates = {update_of(other, State::kDone, 1),       // fine on its own
               update_of(old_job, State::kQueued, 1)};  // second unfinished job for "d"
  b.submits = {new_job("s1", "client:s1"), new_job("s2")};
  try {
    store().commit(b);
    FAIL() << "commit succeeded";
  } catch (const StoreError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(store().describe()), std::string::npos) << what;
    EXPECT_NE(what.find(GetParam() == testutil::Backend::kSqlite ? "UNIQUE constraint failed: jobs.dest"
                                                                 : "jobs_unfinished_dest"),
              std::string::npos)
        << what;
  }
  // Nothing of the batch is visible.
  EXPECT_EQ(store().get(other)->state, State::kQueued);
  EXPECT_EQ(store().get(old_job)->state, State::kFailed);
  EXPECT_EQ(store().get(current)->state, State::kQueued);
  EXPECT_EQ(all_jobs().size(), 3U);
  const Counts c = store().counts();
  EXPECT_EQ(c.queued, counts_before.queued);
  EXPECT_EQ(c.done, counts_before.done);
  EXPECT_EQ(c.failed, counts_before.failed);

  // And the store goes on working, with the key of the failed batch still free.
  const auto r = store().commit(submits({new_job("s1", "client:s1")}));
  EXPECT_EQ(r.submits[0].kind, Kind::kCreated);
}

// A failure after some submits were inserted: an injected trigger makes the third insert fail.
TEST_F(SqliteJobStoreTest, FailureMidBatchRollsBackEarlierSubmitsAndUpdates) {
  const core::JobId id = add(new_job("before"));
  raw(db_path()).exec(
      "CREATE TRIGGER inject_failure BEFORE INSERT ON jobs WHEN NEW.dest = '/srv/out/boom' "
      "BEGIN SELECT RAISE(ABORT, 'injected failure'); END");

  Batch b = submits({new_job("ok1", "client:ok1"), new_job("ok2"), new_job("boom"), new_job("ok3")});
  b.updates = {update_of(id, State::kDone)};
  try {
    store().commit(b);
    FAIL() << "commit succeeded";
  } catch (const StoreError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(db_path().string()), std::string::npos) << what;
    EXPECT_NE(what.find("injected failure"), std::string::npos) << what;
  }
  const auto jobs = all_jobs();
  ASSERT_EQ(jobs.size(), 1U);
  EXPECT_EQ(jobs[0].id, id);
  EXPECT_EQ(jobs[0].state, State::kQueued);
  EXPECT_EQ(store().counts().queued, 1U);
  EXPECT_EQ(store().counts().done, 0U);
  ListQuery q;
  q.after_id = id;
  EXPECT_TRUE(store().list(q).empty());
}

TEST_F(SqliteJobStoreTest, NextQueuedRunsByPriorityThenId) {
  // ids 1..9 with priorities; ids grow in submit order.
  const std::vector<int> priorities = {0, 5, -1, 5, 0, 10, -1, 5, 0};
  std::vector<core::JobId> ids;
  for (std::size_t i = 0; i < priorities.size(); ++i) {
    ids.push_back(add(new_job("p" + std::to_string(i), "", priorities[i])));
  }
  // Not queued: never returned.
  store().commit(updates({update_of(ids[1], State::kRunning), update_of(ids[8], State::kDone)}));

  const std::vector<core::JobId> expected = {ids[5], ids[3], ids[7], ids[0], ids[4], ids[2], ids[6]};
  EXPECT_EQ(ids_of(store().next_queued(std::nullopt, 100)), expected);
  EXPECT_EQ(ids_of(store().next_queued(std::nullopt, 3)), (std::vector<core::JobId>{ids[5], ids[3], ids[7]}));
  EXPECT_TRUE(store().next_queued(std::nullopt, 0).empty());

  // Paging with the keyset cursor, every page size, gives the same order and nothing twice.
  for (std::size_t page = 1; page <= expected.size() + 1; ++page) {
    std::vector<core::JobId> seen;
    std::optional<Cursor> cursor;
    for (int round = 0; round < 20; ++round) {  // bounded
      const auto jobs = store().next_queued(cursor, page);
      if (jobs.empty()) break;
      ASSERT_LE(jobs.size(), page);
      for (const Job& j : jobs) seen.push_back(j.id);
      cursor = Cursor{jobs.back().priority, jobs.back().id};
    }
    EXPECT_EQ(seen, expected) << "page " << page;
  }

  // A cursor between priorities, or past a job that has gone meanwhile.
  EXPECT_EQ(ids_of(store().next_queued(Cursor{3, 0}, 10)),
            (std::vector<core::JobId>{ids[0], ids[4], ids[2], ids[6]}));
  EXPECT_EQ(ids_of(store().next_queued(Cursor{5, ids[1]}, 10)),
            (std::vector<core::JobId>{ids[3], ids[7], ids[0], ids[4], ids[2], ids[6]}));
  EXPECT_TRUE(store().next_queued(Cursor{-1, ids[6]}, 10).empty());
}

TEST_F(SqliteJobStoreTest, NextQueuedReturnsFullJobs) {
  NewJob in = new_job("full", "client:full", 1);
  in.headers = {{"Accept", "*/*"}};
  in.sha256 = std::string(64, 'b');
  add(in);
  const auto jobs = store().next_queued(std::nullopt, 10);
  ASSERT_EQ(jobs.size(), 1U);
  EXPECT_EQ(jobs[0].url, in.url);
  EXPECT_EQ(jobs[0].headers, in.headers);
  EXPECT_EQ(jobs[0].sha256, in.sha256);
}

// The statements that run often must be index searches: no full scan, no sort in a temp b-tree.
TEST_F(SqliteJobStoreTest, QueryPlansUseTheIndexes) {
  add(new_job("x"));
  auto db = raw(db_path());
  const auto plan = [&](const char* sql) {
    auto s = db.prepare(std::string("EXPLAIN QUERY PLAN ") + sql);
    auto scope = s.use();
    std::string out;
    while (s.step()) out += s.column_text(3) + "\n";
    return out;
  };
  struct Expect {
    const char* sql;
    const char* uses;
    bool scan = false;  // a SCAN is what is expected (of an index that holds only the rows it wants)
  };
  const Expect cases[] = {
      // A walk of the partial index from its start: it holds queued jobs only, in run order, so LIMIT ends it.
      {schema::kNextQueued, "SCAN jobs USING INDEX jobs_queue", true},
      {schema::kNextQueuedSamePriority, "USING INDEX jobs_queue (priority=? AND id>?)"},
      {schema::kNextQueuedLowerPriority, "USING INDEX jobs_queue (priority<?)"},
      {schema::kFindKey, "USING INDEX sqlite_autoindex_jobs_1 (key=?)"},
      {schema::kFindUnfinishedDest, "USING INDEX jobs_unfinished_dest (dest=?)"},
      {schema::kGet, "USING INTEGER PRIMARY KEY (rowid=?)"},
      {schema::kUpdateJob, "USING INTEGER PRIMARY KEY (rowid=?)"},
      {schema::kList, "USING INTEGER PRIMARY KEY (rowid>?)"},
      {schema::kListState, "USING INDEX jobs_state (state=? AND rowid>?)"},
      {schema::kRequeueRunning, "INDEX jobs_state (state=?)"},
      {schema::kPruneFinished, "USING INDEX jobs_finished (finished_ms<?)"},
      {schema::kSelectHeaders, "USING PRIMARY KEY (job_id=?)"},
  };
  for (const Expect& c : cases) {
    const std::string p = plan(c.sql);
    EXPECT_NE(p.find(c.uses), std::string::npos) << c.sql << "\n" << p;
    if (!c.scan) {
      EXPECT_EQ(p.find("SCAN"), std::string::npos) << c.sql << "\n" << p;
    }
    EXPECT_EQ(p.find("TEMP B-TREE"), std::string::npos) << c.sql << "\n" << p;
  }
}

TEST_P(JobStoreTest, ListFiltersAndPagesById) {
  std::vector<core::JobId> ids;
  for (int i = 0; i < 10; ++i) ids.push_back(add(new_job("l" + std::to_string(i), "", 10 - i)));
  store().commit(updates({update_of(ids[2], State::kDone), update_of(ids[5], State::kDone),
                          update_of(ids[7], State::kFailed), update_of(ids[9], State::kDone)}));

  ListQuery q;
  EXPECT_EQ(ids_of(store().list(q)), ids);  // by id, not by priority
  q.limit = 3;
  EXPECT_EQ(ids_of(store().list(q)), (std::vector<core::JobId>{ids[0], ids[1], ids[2]}));
  q.offset = 2;
  EXPECT_EQ(ids_of(store().list(q)), (std::vector<core::JobId>{ids[2], ids[3], ids[4]}));
  q.offset = 0;
  q.after_id = ids[7];
  EXPECT_EQ(ids_of(store().list(q)), (std::vector<core::JobId>{ids[8], ids[9]}));
  q.limit = 0;
  EXPECT_TRUE(store().list(q).empty());

  ListQuery done;
  done.state = State::kDone;
  EXPECT_EQ(ids_of(store().list(done)), (std::vector<core::JobId>{ids[2], ids[5], ids[9]}));
  done.after_id = ids[2];
  EXPECT_EQ(ids_of(store().list(done)), (std::vector<core::JobId>{ids[5], ids[9]}));
  done.offset = 1;
  done.limit = 1;
  EXPECT_EQ(ids_of(store().list(done)), (std::vector<core::JobId>{ids[9]}));
  ListQuery running;
  running.state = State::kRunning;
  EXPECT_TRUE(store().list(running).empty());
}

TEST_P(JobStoreTest, CountsFollowEveryChange) {
  auto expect_counts = [&](std::uint64_t q, std::uint64_t r, std::uint64_t d, std::uint64_t f,
                           std::uint64_t c) {
    const Counts n = store().counts();
    EXPECT_EQ(n.queued, q);
    EXPECT_EQ(n.running, r);
    EXPECT_EQ(n.done, d);
    EXPECT_EQ(n.failed, f);
    EXPECT_EQ(n.cancelled, c);
    // The maintained counters agree with the rows.
    for (State s : {State::kQueued, State::kRunning, State::kDone, State::kFailed, State::kCancelled}) {
      ListQuery lq;
      lq.state = s;
      lq.limit = 100000;
      const std::uint64_t rows = store().list(lq).size();
      const std::uint64_t counted = s == State::kQueued    ? n.queued
                                    : s == State::kRunning ? n.running
                                    : s == State::kDone    ? n.done
                                    : s == State::kFailed  ? n.failed
                                                           : n.cancelled;
      EXPECT_EQ(rows, counted) << to_string(s);
    }
  };
  expect_counts(0, 0, 0, 0, 0);
  const auto r = store().commit(submits({new_job("a"), new_job("b"), new_job("c"), new_job("d")}));
  expect_counts(4, 0, 0, 0, 0);
  store().commit(
      updates({update_of(r.submits[0].id, State::kRunning), update_of(r.submits[1].id, State::kRunning)}));
  expect_counts(2, 2, 0, 0, 0);
  store().commit(
      updates({update_of(r.submits[0].id, State::kDone), update_of(r.submits[1].id, State::kFailed),
               update_of(r.submits[2].id, State::kCancelled)}));
  expect_counts(1, 0, 1, 1, 1);
  store().commit(updates({update_of(r.submits[2].id, State::kCancelled, 2)}));  // same state: no change
  expect_counts(1, 0, 1, 1, 1);
  PruneLimits keep_one;
  keep_one.max_age = std::chrono::seconds(0);
  keep_one.max_finished = 1;
  EXPECT_EQ(store().prune(keep_one), 2U);
  const Counts n = store().counts();
  EXPECT_EQ(n.queued, 1U);
  EXPECT_EQ(n.done + n.failed + n.cancelled, 1U);
}

TEST_F(SqliteJobStoreTest, RequeueRunningKeepsAttempts) {
  const auto r = store().commit(submits({new_job("a"), new_job("b"), new_job("c"), new_job("d")}));
  store().commit(
      updates({update_of(r.submits[0].id, State::kRunning, 2), update_of(r.submits[1].id, State::kRunning, 1),
               update_of(r.submits[2].id, State::kDone, 1)}));
  EXPECT_EQ(store().requeue_running(), 2U);
  auto j = store().get(r.submits[0].id);
  EXPECT_EQ(j->state, State::kQueued);
  EXPECT_EQ(j->attempts, 2);
  EXPECT_EQ(j->finished_ms, 0);
  EXPECT_EQ(store().get(r.submits[1].id)->state, State::kQueued);
  EXPECT_EQ(store().get(r.submits[2].id)->state, State::kDone);
  EXPECT_EQ(store().get(r.submits[3].id)->state, State::kQueued);
  EXPECT_EQ(store().counts().queued, 3U);
  EXPECT_EQ(store().counts().running, 0U);
  EXPECT_EQ(store().requeue_running(), 0U);
}

class PruneTest : public testutil::StoreTest {
 protected:
  // Jobs 0..n-1, finished (done/failed/cancelled in turn) at now - (n - i) hours, i.e. job 0 is the oldest;
  // plus `unfinished` queued/running jobs created long ago.
  void fill(int n, int unfinished) {
    Batch b;
    for (int i = 0; i < n; ++i) {
      NewJob j = new_job("f" + std::to_string(i), "client:f" + std::to_string(i));
      j.headers = {{"X-I", std::to_string(i)}};
      b.submits.push_back(j);
    }
    for (int i = 0; i < unfinished; ++i) b.submits.push_back(new_job("u" + std::to_string(i)));
    const auto r = store().commit(b);
    Batch ups;
    for (int i = 0; i < n; ++i) {
      finished_.push_back(r.submits[static_cast<std::size_t>(i)].id);
      const State end = i % 3 == 0 ? State::kDone : i % 3 == 1 ? State::kFailed : State::kCancelled;
      ups.updates.push_back(update_of(finished_.back(), end));
    }
    for (int i = 0; i < unfinished; ++i) {
      unfinished_.push_back(r.submits[static_cast<std::size_t>(n + i)].id);
      if (i % 2 == 1) ups.updates.push_back(update_of(unfinished_.back(), State::kRunning));
    }
    store().commit(ups);
    // Back-date the timestamps the store set (it reads the system clock); a year for the unfinished ones.
    auto db = raw(db_path());
    const std::int64_t now = now_ms();
    db.exec("BEGIN");
    auto set = db.prepare("UPDATE jobs SET finished_ms = ?1 WHERE id = ?2");
    for (int i = 0; i < n; ++i) {
      auto scope = set.use();
      set.bind(1, now - (n - i) * 3600000LL);
      set.bind(2, static_cast<std::int64_t>(finished_[static_cast<std::size_t>(i)]));
      set.run();
    }
    db.exec(fmt::format("UPDATE jobs SET created_ms = {0}, updated_ms = {0} WHERE finished_ms = 0",
                        now - 365LL * 24 * 3600000)
                .c_str());
    db.exec("COMMIT");
  }

  std::int64_t header_rows() { return raw(db_path()).query_int("SELECT count(*) FROM job_headers", "count"); }

  std::vector<core::JobId> finished_, unfinished_;
};

TEST_F(PruneTest, MaxFinishedDeletesTheOldestFinished) {
  fill(10, 4);
  PruneLimits limits;
  limits.max_age = std::chrono::seconds(0);  // keep by age
  limits.max_finished = 4;
  EXPECT_EQ(store().prune(limits), 6U);
  for (std::size_t i = 0; i < 10; ++i) EXPECT_EQ(store().get(finished_[i]).has_value(), i >= 6) << i;
  for (core::JobId id : unfinished_) EXPECT_TRUE(store().get(id)) << id;
  EXPECT_EQ(header_rows(), 4);  // the headers went with their jobs
  EXPECT_EQ(store().prune(limits), 0U);
}

TEST_F(PruneTest, MaxAgeDeletesFinishedJobsOlderThanIt) {
  fill(10, 4);
  PruneLimits limits;
  limits.max_age = std::chrono::hours(3) + std::chrono::minutes(30);  // jobs 7, 8, 9 are younger
  limits.max_finished = 0;                                            // keep by count
  EXPECT_EQ(store().prune(limits), 7U);
  for (std::size_t i = 0; i < 10; ++i) EXPECT_EQ(store().get(finished_[i]).has_value(), i >= 7) << i;
  for (core::JobId id : unfinished_) EXPECT_TRUE(store().get(id)) << id;
}

TEST_F(PruneTest, BothLimitsAndNeverAnUnfinishedJob) {
  fill(30000, 5);  // more than one prune chunk (10,000)
  PruneLimits limits;
  limits.max_age = std::chrono::hours(100);  // jobs 0..29899 are older
  limits.max_finished = 50;
  EXPECT_EQ(store().prune(limits), 29950U);
  const Counts c = store().counts();
  EXPECT_EQ(c.done + c.failed + c.cancelled, 50U);
  EXPECT_EQ(c.queued + c.running, 5U);
  for (core::JobId id : unfinished_) EXPECT_TRUE(store().get(id)) << id;
  EXPECT_TRUE(store().get(finished_.back()));

  PruneLimits everything;
  everything.max_age = std::chrono::seconds(1);
  everything.max_finished = 1;
  store().prune(everything);
  EXPECT_EQ(store().counts().queued + store().counts().running, 5U);
  EXPECT_EQ(all_jobs().size(), 5U);
}

TEST_F(PruneTest, ZeroLimitsKeepEverything) {
  fill(5, 1);
  PruneLimits keep;
  keep.max_age = std::chrono::seconds(0);
  keep.max_finished = 0;
  EXPECT_EQ(store().prune(keep), 0U);
  EXPECT_EQ(all_jobs().size(), 6U);
}

TEST_F(SqliteJobStoreTest, ReopenKeepsEverythingAndNeverReusesIds) {
  NewJob a = new_job("a", "client:a", 3);
  a.headers = {{"Cookie", "x=1"}};
  const auto r = store().commit(submits({a, new_job("b"), new_job("c")}));
  store().commit(updates(
      {update_of(r.submits[1].id, State::kRunning, 1), update_of(r.submits[2].id, State::kDone, 1, "", 42)}));
  const auto before = all_jobs();
  reopen();
  const auto after = all_jobs();
  ASSERT_EQ(after.size(), before.size());
  for (std::size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(after[i].id, before[i].id);
    EXPECT_EQ(after[i].key, before[i].key);
    EXPECT_EQ(after[i].dest, before[i].dest);
    EXPECT_EQ(after[i].headers, before[i].headers);
    EXPECT_EQ(after[i].state, before[i].state);
    EXPECT_EQ(after[i].attempts, before[i].attempts);
    EXPECT_EQ(after[i].bytes, before[i].bytes);
    EXPECT_EQ(after[i].updated_ms, before[i].updated_ms);
    EXPECT_EQ(after[i].finished_ms, before[i].finished_ms);
  }
  EXPECT_EQ(store().counts().running, 1U);
  EXPECT_EQ(store().commit(submits({new_job("x", "client:a")})).submits[0].kind, Kind::kExisting);

  // Prune every job, the newest (highest id) included: its id is still never handed out again.
  store().commit(
      updates({update_of(r.submits[0].id, State::kCancelled), update_of(r.submits[1].id, State::kFailed)}));
  raw(db_path()).exec("UPDATE jobs SET finished_ms = 1");
  PruneLimits old;
  old.max_age = std::chrono::seconds(1);
  old.max_finished = 0;
  EXPECT_EQ(store().prune(old), 3U);
  EXPECT_TRUE(all_jobs().empty());
  reopen(SqliteOptions{Synchronous::kNormal});
  EXPECT_GT(add(new_job("y")), r.submits[2].id);
}

TEST_F(SqliteJobStoreTest, HundredThousandJobsInOneBatch) {
  constexpr std::size_t kJobs = 100000;
  Batch b;
  b.submits.reserve(kJobs);
  for (std::size_t i = 0; i < kJobs; ++i) {
    b.submits.push_back(
        new_job("big/" + std::to_string(i), "client:" + std::to_string(i), static_cast<int>(i % 7)));
  }
  const auto r = store().commit(b);
  ASSERT_EQ(r.submits.size(), kJobs);
  EXPECT_TRUE(std::all_of(r.submits.begin(), r.submits.end(),
                          [](const SubmitOutcome& o) { return o.kind == Kind::kCreated; }));
  EXPECT_EQ(store().counts().queued, kJobs);
  const auto first = store().next_queued(std::nullopt, 2048);
  ASSERT_EQ(first.size(), 2048U);
  EXPECT_EQ(first.front().priority, 6);
  EXPECT_EQ(first.front().id, r.submits[6].id);
}

}  // namespace
}  // namespace fetchd::store
