// SPDX-License-Identifier: Apache-2.0
#pragma once
// The SQLite job store's on-disk format (schema version 4) and every statement it runs, in one place so that
// the tests can check the query plans of exactly these statements. Internal to lib/fetchd/store and its
// tests. Thread: constants only.

#include <cstdint>
#include <iterator>

namespace fetchd::store::schema {

// PRAGMA application_id: marks a file as a fetchd job store ("FJOB"), so that another application's database
// is refused instead of being altered (https://www.sqlite.org/fileformat.html#application_id).
inline constexpr std::int32_t kApplicationId = 0x464a4f42;
// PRAGMA user_version: the schema version. Bump it with every change, with a migration from the last one.
inline constexpr std::int64_t kVersion = 4;

// Version 1, applied in one transaction together with application_id and user_version, then every migration
// of kMigrations: a new store takes the same path as an old one, so the migrations run in every test. Never
// edit it (an existing v1 file was made by exactly this); change the schema with a new migration.
// - id AUTOINCREMENT: ids are never reused, even after the newest job was pruned: a client's id stays valid.
// - key is NULL when none; UNIQUE gives the key lookup its index.
// - The partial unique index jobs_unfinished_dest makes "at most one unfinished job per dest" a property of
//   the data: an update that would break it fails the whole commit instead of letting two transfers share a
//   .part file.
// - jobs_run_order served next_queued (priority DESC, id) until v4 replaced it with jobs_queue; jobs_state,
//   i.e. (state, id), serves list() by state; the partial jobs_finished serves prune, oldest first, and costs
//   nothing while a job is unfinished.
// - job_counts is kept exact by triggers, in the same transaction as the change: counts() is read every
//   second, and a GROUP BY over 1M rows takes 0.12 s (docs/store.md).
// - Headers live in a side table: values are bytes (obs-text is allowed), which JSON text cannot hold as is.
//   header_count lets the common case (no headers) skip the lookup.
inline constexpr const char* kCreateV1 = R"sql(
CREATE TABLE jobs (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  key          TEXT UNIQUE,
  url          TEXT NOT NULL,
  dest         TEXT NOT NULL,
  sha256       TEXT,
  size         INTEGER,
  header_count INTEGER NOT NULL DEFAULT 0,
  priority     INTEGER NOT NULL,
  state        TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
  attempts     INTEGER NOT NULL DEFAULT 0,
  error        TEXT NOT NULL DEFAULT '',
  bytes        INTEGER NOT NULL DEFAULT 0,
  created_ms   INTEGER NOT NULL,
  updated_ms   INTEGER NOT NULL,
  finished_ms  INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE job_headers (
  job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  pos    INTEGER NOT NULL,
  name   TEXT NOT NULL,
  value  BLOB NOT NULL,
  PRIMARY KEY (job_id, pos)
) STRICT, WITHOUT ROWID;

CREATE UNIQUE INDEX jobs_unfinished_dest ON jobs (dest) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_run_order ON jobs (state, priority DESC, id);
CREATE INDEX jobs_state ON jobs (state);
CREATE INDEX jobs_finished ON jobs (finished_ms) WHERE state IN ('done', 'failed', 'cancelled');

CREATE TABLE job_counts (
  state TEXT PRIMARY KEY,
  n     INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
INSERT INTO job_counts (state, n) VALUES ('queued', 0), ('running', 0), ('done', 0), ('failed', 0), ('cancelled', 0);

CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs BEGIN
  UPDATE job_counts SET n = n + 1 WHERE state = NEW.state;
END;
CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs BEGIN
  UPDATE job_counts SET n = n - 1 WHERE state = OLD.state;
END;
CREATE TRIGGER jobs_count_update AFTER UPDATE OF state ON jobs WHEN OLD.state IS NOT NEW.state BEGIN
  UPDATE job_counts SET n = n - 1 WHERE state = OLD.state;
  UPDATE job_counts SET n = n + 1 WHERE state = NEW.state;
END;
)sql";

// kMigrations[i] takes a store from version i + 1 to i + 2, in the open transaction.
// - v2: options, the job's own options (core::JobOptions as JSON, NULL when none; JSON is fine here: no bytes
//   beyond UTF-8); errors, the error lines of its last kMaxErrors failed attempts, oldest first (a JSON array).
//   A v1 job starts with no errors listed; its `error` column still has the last one.
// - v3: skipped, 1 when a done job found its destination there already (on_exists: skip) and downloaded
//   nothing. Jobs done before v3 read as downloaded (0): which they were is not known any more.
// - v4: the run order's index holds queued jobs only (jobs_queue, partial): a job leaves it when it starts or
//   finishes instead of moving within it, so a state change writes one index entry fewer, and the index is the
//   size of the queue rather than of the history.
inline constexpr const char* kMigrations[] = {
    R"sql(
ALTER TABLE jobs ADD COLUMN options TEXT;
ALTER TABLE jobs ADD COLUMN errors TEXT NOT NULL DEFAULT '[]';
)sql",
    R"sql(
ALTER TABLE jobs ADD COLUMN skipped INTEGER NOT NULL DEFAULT 0 CHECK (skipped IN (0, 1));
)sql",
    R"sql(
DROP INDEX jobs_run_order;
CREATE INDEX jobs_queue ON jobs (priority DESC, id) WHERE state = 'queued';
)sql",
};
static_assert(std::size(kMigrations) == kVersion - 1, "one migration per version after the first");

// Every statement below is prepared once per connection. The column list of a job, in read_job()'s order:
#define FETCHD_STORE_JOB_COLUMNS                                                                          \
  "id, key, url, dest, sha256, size, header_count, priority, state, attempts, error, bytes, created_ms, " \
  "updated_ms, finished_ms, options, errors, skipped"

inline constexpr const char* kFindKey = "SELECT id, state FROM jobs WHERE key = ?1";
inline constexpr const char* kFindUnfinishedDest =
    "SELECT id, state FROM jobs INDEXED BY jobs_unfinished_dest WHERE dest = ?1 AND state IN ('queued', "
    "'running')";
inline constexpr const char* kInsertJob =
    "INSERT INTO jobs (key, url, dest, sha256, size, header_count, priority, state, created_ms, updated_ms, "
    "options) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8, ?8, ?9)";
inline constexpr const char* kInsertHeader =
    "INSERT INTO job_headers (job_id, pos, name, value) VALUES (?1, ?2, ?3, ?4)";
inline constexpr const char* kSelectHeaders =
    "SELECT name, value FROM job_headers WHERE job_id = ?1 ORDER BY pos";
inline constexpr const char* kUpdateJob =
    "UPDATE jobs SET state = ?2, attempts = ?3, error = ?4, bytes = ?5, updated_ms = ?6, finished_ms = ?7, "
    "errors = coalesce(?8, errors), skipped = ?9 WHERE id = ?1";
inline constexpr const char* kSelectErrors = "SELECT errors FROM jobs WHERE id = ?1";

// The keyset cursor "(priority < c.priority) OR (priority = c.priority AND id > c.id)" as two range scans of
// jobs_queue: as one OR, SQLite seeks to c.priority and then steps over every job before the cursor with that
// priority (all of them when all priorities are equal). INDEXED BY turns a changed plan into an error; each
// statement names state = 'queued', which is what lets SQLite use the partial index at all.
inline constexpr const char* kNextQueued = "SELECT " FETCHD_STORE_JOB_COLUMNS
                                           " FROM jobs INDEXED BY jobs_queue WHERE state = 'queued' "
                                           "ORDER BY priority DESC, id LIMIT ?1";
inline constexpr const char* kNextQueuedSamePriority =
    "SELECT " FETCHD_STORE_JOB_COLUMNS
    " FROM jobs INDEXED BY jobs_queue WHERE state = 'queued' AND priority = ?1 AND id > ?2 "
    "ORDER BY priority DESC, id LIMIT ?3";
inline constexpr const char* kNextQueuedLowerPriority =
    "SELECT " FETCHD_STORE_JOB_COLUMNS
    " FROM jobs INDEXED BY jobs_queue WHERE state = 'queued' AND priority < ?1 "
    "ORDER BY priority DESC, id LIMIT ?2";

inline constexpr const char* kGet = "SELECT " FETCHD_STORE_JOB_COLUMNS " FROM jobs WHERE id = ?1";
inline constexpr const char* kList =
    "SELECT " FETCHD_STORE_JOB_COLUMNS " FROM jobs WHERE id > ?1 ORDER BY id LIMIT ?2 OFFSET ?3";
inline constexpr const char* kListState = "SELECT " FETCHD_STORE_JOB_COLUMNS
                                          " FROM jobs INDEXED BY jobs_state WHERE state = ?1 AND id > ?2 "
                                          "ORDER BY id LIMIT ?3 OFFSET ?4";
inline constexpr const char* kCounts = "SELECT state, n FROM job_counts";
inline constexpr const char* kRequeueRunning =
    "UPDATE jobs INDEXED BY jobs_state SET state = 'queued', updated_ms = ?1, finished_ms = 0 "
    "WHERE state = 'running'";
// Oldest finished first; ?1 = finished before (Unix ms), ?2 = at most this many.
inline constexpr const char* kPruneFinished =
    "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs INDEXED BY jobs_finished "
    "WHERE state IN ('done', 'failed', 'cancelled') AND finished_ms < ?1 ORDER BY finished_ms, id LIMIT ?2)";

#undef FETCHD_STORE_JOB_COLUMNS

}  // namespace fetchd::store::schema
