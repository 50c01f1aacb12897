// SPDX-License-Identifier: Apache-2.0
#pragma once
// Shared bits of the job store tests: a store in a fresh temp dir, job builders, and a second raw connection
// to the same file for what the JobStore API does not show (query plans, pragmas, back-dated timestamps).

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "fetchd/store/job_store.hpp"
#include "fetchd/store/sqlite.hpp"
#include "pg_cluster.hpp"
#include "temp_dir.hpp"

namespace fetchd::store::testutil {

inline NewJob new_job(const std::string& dest, const std::string& key = "", int priority = 0) {
  NewJob j;
  j.key = key;
  j.url = "http://127.0.0.1:8080/files/" + dest;
  j.dest = "/srv/out/" + dest;
  j.priority = priority;
  return j;
}

inline Update update_of(core::JobId id, State state, int attempts = 1, std::string error = "",
                        std::uint64_t bytes = 0) {
  return Update{id, state, attempts, std::move(error), bytes, std::nullopt};
}

inline Batch submits(std::vector<NewJob> jobs) {
  Batch b;
  b.submits = std::move(jobs);
  return b;
}

inline Batch updates(std::vector<Update> ups) {
  Batch b;
  b.updates = std::move(ups);
  return b;
}

// A second connection to the store's file, outside the JobStore interface.
inline sqlite::Database raw(const std::filesystem::path& path) {
  auto db = sqlite::Database::open(path, SQLITE_OPEN_READWRITE);
  db.set_busy_timeout(5000);
  return db;
}

enum class Backend { kSqlite, kPostgres };
inline std::string backend_name(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kSqlite ? "sqlite" : "postgres";
}

// The test binary's PostgreSQL server, started at its first use and stopped at exit.
inline fetchd::testing::PgCluster& pg_cluster() {
  static fetchd::testing::PgCluster cluster;
  return cluster;
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (backend() == Backend::kPostgres) pg_url_ = pg_cluster().fresh_url();
    reopen();
  }
  virtual Backend backend() const { return Backend::kSqlite; }

  std::filesystem::path db_path() const { return dir_ / "jobs.db"; }
  JobStore& store() { return *store_; }
  // A shared store's options: this node, a lease of `lease`.
  PostgresOptions pg_options(const std::string& node = "n1",
                             std::chrono::milliseconds lease = std::chrono::seconds(30)) const {
    return PostgresOptions{pg_url_, node, lease, false};
  }
  void reopen(const SqliteOptions& options = {}) {
    store_.reset();
    store_ = backend() == Backend::kSqlite ? open_sqlite_store(db_path(), options)
                                           : open_postgres_store(pg_options());
  }
  void close() { store_.reset(); }

  // Submits one job and returns its id; fails the test unless it was created.
  core::JobId add(const NewJob& job) {
    const BatchResult r = store_->commit(submits({job}));
    EXPECT_EQ(r.submits.size(), 1U);
    EXPECT_EQ(r.submits.at(0).kind, SubmitOutcome::Kind::kCreated);
    return r.submits.at(0).id;
  }

  std::vector<Job> all_jobs() {
    ListQuery q;
    q.limit = 1000000;
    return store_->list(q);
  }

  fetchd::testing::TempDir dir_;
  std::string pg_url_;  // Backend::kPostgres: this test's own database
  std::unique_ptr<JobStore> store_;
};

// The same test against every backend: TEST_P(JobStoreTest, ...).
class JobStoreTest : public StoreTest, public ::testing::WithParamInterface<Backend> {
 protected:
  Backend backend() const override { return GetParam(); }
};

}  // namespace fetchd::store::testutil
