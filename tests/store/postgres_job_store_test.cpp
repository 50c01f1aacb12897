// SPDX-License-Identifier: Apache-2.0
// What only a shared store does, against a real PostgreSQL server (pg_cluster.hpp): claims with leases,
// fenced acknowledgements, renewals, expiry, notices between nodes, and the schema's refusals. The operations
// both backends share are in sqlite_job_store_test.cpp's TEST_P(JobStoreTest, ...).

#include <gtest/gtest.h>
#include <poll.h>

#include <algorithm>
#include <set>
#include <thread>

#include "fetchd/core/text.hpp"
#include "store_test_util.hpp"

namespace fetchd::store {
namespace {

using testutil::new_job;
using testutil::submits;
using testutil::update_of;
using testutil::updates;
using namespace std::chrono_literals;

std::vector<core::JobId> ids_of(const std::vector<Job>& jobs) {
  std::vector<core::JobId> ids;
  for (const Job& j : jobs) ids.push_back(j.id);
  return ids;
}

class PostgresStoreTest : public testutil::StoreTest {
 protected:
  testutil::Backend backend() const override { return testutil::Backend::kPostgres; }
  std::unique_ptr<JobStore> node(const std::string& name, bool listen = false) {
    auto o = pg_options(name);
    o.listen = listen;
    return open_postgres_store(o);
  }
  void sql(const std::string& statement) { fetchd::testing::PgCluster::exec(pg_url_, statement); }
  // Waits (bounded) until the store's notice descriptor turns readable, then takes the notices.
  static std::vector<Notice> wait_notices(JobStore& s) {
    std::vector<Notice> all;
    for (int round = 0; round < 50 && all.empty(); ++round) {
      pollfd p{s.notice_fd(), POLLIN, 0};
      if (::poll(&p, 1, 100) < 0) break;
      auto got = s.take_notices();
      all.insert(all.end(), got.begin(), got.end());
    }
    return all;
  }
};

TEST_F(PostgresStoreTest, ClaimsHandOutJobsInRunOrderAndNeverTwice) {
  std::vector<core::JobId> ids;
  for (int i = 0; i < 6; ++i) ids.push_back(add(new_job("f" + std::to_string(i), "", i == 4 ? 9 : 0)));
  auto a = node("a");
  auto b = node("b");
  auto first = a->claim(2);
  ASSERT_EQ(first.size(), 2U);
  EXPECT_EQ(first[0].id, ids[4]);  // the highest priority first, then by id
  EXPECT_EQ(first[1].id, ids[0]);
  EXPECT_NE(first[0].lease, 0U);
  EXPECT_NE(first[0].lease, first[1].lease);
  auto rest = b->claim(100);
  EXPECT_EQ(ids_of(rest), (std::vector<core::JobId>{ids[1], ids[2], ids[3], ids[5]}));
  EXPECT_TRUE(a->claim(100).empty());
  // A claimed job stays queued (it has not started) and keeps every field.
  EXPECT_EQ(rest[0].state, State::kQueued);
  EXPECT_EQ(rest[0].url, "http://127.0.0.1:8080/files/f1");
}

TEST_F(PostgresStoreTest, NodesClaimingTogetherTakeDisjointJobs) {
  constexpr int kJobs = 2000;
  std::vector<NewJob> jobs;
  for (int i = 0; i < kJobs; ++i) jobs.push_back(new_job("j" + std::to_string(i)));
  store().commit(submits(jobs));
  std::vector<std::vector<core::JobId>> got(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto s = node("n" + std::to_string(t));
      for (int round = 0; round < kJobs; ++round) {  // bounded: every round claims or ends
        auto claimed = s->claim(37);
        if (claimed.empty()) break;
        for (const auto& j : claimed) got[t].push_back(j.id);
      }
    });
  }
  for (auto& t : threads) t.join();
  std::set<core::JobId> all;
  std::size_t total = 0;
  for (const auto& g : got) {
    total += g.size();
    all.insert(g.begin(), g.end());
  }
  EXPECT_EQ(total, static_cast<std::size_t>(kJobs));
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kJobs));
}

TEST_F(PostgresStoreTest, AnAcknowledgementIsFencedByItsLease) {
  const auto id = add(new_job("x"));
  auto a = node("a");
  auto b = node("b");
  const auto claim_a = a->claim(1).at(0);
  // a stops renewing; its lease runs out and b claims the job.
  sql("UPDATE fetchd.jobs SET lease_until = now() - interval '1 second'");
  EXPECT_EQ(b->release_expired(), 1U);
  const auto claim_b = b->claim(1).at(0);
  EXPECT_EQ(claim_b.id, id);
  EXPECT_NE(claim_b.lease, claim_a.lease);

  auto late = update_of(id, State::kDone);
  late.lease = claim_a.lease;
  auto r = a->commit(updates({late}));
  EXPECT_EQ(r.fenced, std::vector<core::JobId>{id});
  EXPECT_EQ(store().get(id)->state, State::kQueued);
  EXPECT_TRUE(a->renew({{id, claim_a.lease}}).empty());  // and a learns it lost the job

  auto mine = update_of(id, State::kDone, 1, "", 42);
  mine.lease = claim_b.lease;
  r = b->commit(updates({mine}));
  EXPECT_TRUE(r.fenced.empty());
  const auto job = store().get(id);
  EXPECT_EQ(job->state, State::kDone);
  EXPECT_EQ(job->bytes, 42U);
  EXPECT_EQ(job->published_by, "b");
  EXPECT_EQ(job->lease, 0U);  // a finished job holds no lease
}

TEST_F(PostgresStoreTest, RunningAndRetryUpdatesKeepTheLeaseAndRenewExtendsIt) {
  const auto id = add(new_job("x"));
  auto a = node("a");
  const auto claim = a->claim(1).at(0);
  auto running = update_of(id, State::kRunning, 1);
  running.lease = claim.lease;
  EXPECT_TRUE(a->commit(updates({running})).fenced.empty());
  auto retry = update_of(id, State::kQueued, 1, "HTTP 503");
  retry.lease = claim.lease;
  EXPECT_TRUE(a->commit(updates({retry})).fenced.empty());
  EXPECT_EQ(store().get(id)->lease, claim.lease);
  EXPECT_TRUE(node("b")->claim(10).empty());  // a retry waits on the node that claimed it

  sql("UPDATE fetchd.jobs SET lease_until = now() + interval '1 second'");
  EXPECT_EQ(a->renew({{id, claim.lease}}), std::vector<core::JobId>{id});
  EXPECT_EQ(a->release_expired(), 0U);
}

TEST_F(PostgresStoreTest, AnExpiredRunningJobGoesBackQueuedWithItsAttempts) {
  const auto id = add(new_job("x"));
  auto a = node("a");
  const auto claim = a->claim(1).at(0);
  auto running = update_of(id, State::kRunning, 3);
  running.lease = claim.lease;
  a->commit(updates({running}));
  sql("UPDATE fetchd.jobs SET lease_until = now() - interval '1 second'");
  EXPECT_EQ(store().release_expired(), 1U);
  const auto job = store().get(id);
  EXPECT_EQ(job->state, State::kQueued);
  EXPECT_EQ(job->attempts, 3);  // the interrupted attempt counts once: the next one is the 4th
  EXPECT_EQ(job->lease, 0U);
}

TEST_F(PostgresStoreTest, RequeueRunningReleasesOnlyThisNodesClaims) {
  add(new_job("x"));
  add(new_job("y"));
  auto a = node("a");
  auto b = node("b");
  const auto ja = a->claim(1).at(0);
  const auto jb = b->claim(1).at(0);
  auto restarted_a = node("a");
  EXPECT_EQ(restarted_a->requeue_running(), 1U);
  EXPECT_EQ(store().get(ja.id)->lease, 0U);
  EXPECT_EQ(store().get(jb.id)->lease, jb.lease);
}

TEST_F(PostgresStoreTest, SubmitsAndCancelsReachTheOtherNodesAsNotices) {
  auto listener = node("a", /*listen=*/true);
  ASSERT_GE(listener->notice_fd(), 0);
  const auto id = add(new_job("x"));
  auto notices = wait_notices(*listener);
  ASSERT_FALSE(notices.empty());
  EXPECT_EQ(notices[0].kind, Notice::Kind::kJobsQueued);

  const auto claim = listener->claim(1).at(0);
  // A client's cancel on another node: no lease, ends the claim, and tells the fleet.
  store().commit(updates({update_of(id, State::kCancelled, 0)}));
  notices = wait_notices(*listener);
  ASSERT_EQ(notices.size(), 1U);
  EXPECT_EQ(notices[0].kind, Notice::Kind::kCancel);
  EXPECT_EQ(notices[0].id, id);
  auto late = update_of(id, State::kDone);
  late.lease = claim.lease;
  EXPECT_EQ(listener->commit(updates({late})).fenced, std::vector<core::JobId>{id});
  EXPECT_EQ(store().get(id)->state, State::kCancelled);
}

TEST_F(PostgresStoreTest, AClientsCancelNeverUndoesADoneJob) {
  const auto id = add(new_job("x"));
  auto a = node("a");
  const auto claim = a->claim(1).at(0);
  auto done = update_of(id, State::kDone);
  done.lease = claim.lease;
  a->commit(updates({done}));
  // Another node read the job as running a moment ago and cancels it for a client.
  auto cancel = update_of(id, State::kCancelled, 0);
  cancel.if_unfinished = true;
  store().commit(updates({cancel}));
  EXPECT_EQ(store().get(id)->state, State::kDone);
}

TEST_F(PostgresStoreTest, ABigBatchIsOneTransaction) {
  // More statements than one pipeline chunk, the failing one after the first chunks: nothing of it is stored.
  const auto holder = add(new_job("taken"));
  store().commit(updates({update_of(holder, State::kFailed)}));
  add(new_job("taken"));  // the dest's unfinished job now
  std::vector<NewJob> first;
  for (int i = 0; i < 600; ++i) first.push_back(new_job("first" + std::to_string(i)));
  const auto created = store().commit(submits(first));
  std::vector<NewJob> jobs;
  for (int i = 0; i < 1000; ++i) jobs.push_back(new_job("big" + std::to_string(i)));
  Batch b = submits(jobs);
  for (const auto& o : created.submits) b.updates.push_back(update_of(o.id, State::kDone));
  b.updates.push_back(update_of(holder, State::kQueued));  // a second unfinished job for "taken"
  EXPECT_THROW(store().commit(b), StoreError);
  EXPECT_EQ(store().counts().queued, 601U);
  EXPECT_EQ(store().counts().done, 0U);
  // The connection is usable again at once.
  auto r = store().commit(submits(jobs));
  EXPECT_EQ(r.submits.size(), 1000U);
  EXPECT_EQ(store().counts().queued, 1601U);
}

TEST_F(PostgresStoreTest, ASecondNodeWithTheSameNameIsRefused) {
  auto first = node("same", /*listen=*/true);
  try {
    node("same", /*listen=*/true);
    FAIL() << "opened";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("another fetchd node named \"same\""), std::string::npos)
        << e.what();
  }
  first.reset();
  EXPECT_NO_THROW(node("same", /*listen=*/true));  // the name is free once the first one left
}

TEST_F(PostgresStoreTest, NodesStartingTogetherCreateTheSchemaOnce) {
  const std::string url = testutil::pg_cluster().fresh_url();
  std::vector<std::thread> threads;
  std::atomic<int> opened{0};
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      try {
        open_postgres_store(PostgresOptions{url, "n" + std::to_string(t), 30s, false});
        ++opened;
      } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(opened.load(), 6);
}

TEST_F(PostgresStoreTest, ANewerSchemaIsRefusedNamingIt) {
  sql("UPDATE fetchd.meta SET value = '99' WHERE name = 'schema_version'");
  try {
    reopen();
    FAIL() << "opened";
  } catch (const StoreError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("schema version 99, newer than this fetchd supports (1)"), std::string::npos) << what;
  }
}

TEST_F(PostgresStoreTest, AForeignFetchdSchemaIsRefusedAndLeftAlone) {
  const std::string url = testutil::pg_cluster().fresh_url();
  fetchd::testing::PgCluster::exec(url, "CREATE SCHEMA fetchd; CREATE TABLE fetchd.other (x int)");
  try {
    open_postgres_store(PostgresOptions{url, "n", 30s, false});
    FAIL() << "opened";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("not a fetchd job store"), std::string::npos) << e.what();
  }
  fetchd::testing::PgCluster::exec(url, "SELECT x FROM fetchd.other");  // still there
}

TEST_F(PostgresStoreTest, AnUnreachableServerOrAnUnknownRoleIsAClearError) {
  try {
    open_postgres_store(PostgresOptions{"postgresql:///x?host=/nonexistent-dir", "n", 30s, false});
    FAIL() << "opened";
  } catch (const StoreError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("database postgresql:///x?host=/nonexistent-dir: cannot connect"), std::string::npos)
        << what;
  }
  try {
    open_postgres_store(PostgresOptions{
        "postgresql://nosuchrole:secret@/postgres?host=" + testutil::pg_cluster().dir(), "n", 30s, false});
    FAIL() << "opened";
  } catch (const StoreError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("role \"nosuchrole\" does not exist"), std::string::npos) << what;
    EXPECT_EQ(what.find("secret"), std::string::npos) << what;
  }
}

TEST(RedactPassword, UserinfoAndParameters) {
  EXPECT_EQ(core::redact_password("postgresql://u:pw@db.example/fetchd"),
            "postgresql://u:***@db.example/fetchd");
  EXPECT_EQ(core::redact_password("postgresql://u@db/fetchd"), "postgresql://u@db/fetchd");
  EXPECT_EQ(core::redact_password("host=db password=pw user=u"), "host=db password=*** user=u");
  EXPECT_EQ(core::redact_password("postgresql:///fetchd?password=pw&host=/run"),
            "postgresql:///fetchd?password=***&host=/run");
}

}  // namespace
}  // namespace fetchd::store
