// SPDX-License-Identifier: Apache-2.0
#pragma once
// The PostgreSQL job store's schema (version 1) and every statement it runs, in one place. Everything lives
// in the schema "fetchd" of the operator's database, so it shares the database with anything else. Internal
// to lib/fetchd/store and its tests. Thread: constants only.

#include <cstdint>

namespace fetchd::store::pg_schema {

inline constexpr std::int64_t kVersion = 1;
// pg_advisory_xact_lock key under which a node creates or migrates the schema: nodes starting together wait
// for each other instead of racing ("FJOB" as in the SQLite application_id).
inline constexpr std::int64_t kMigrationLock = 0x464a4f42;
// pg_try_advisory_lock(kNodeLockSpace, hashtext(node)) held by the node's listening connection: a second
// daemon with the same node name is refused (it would hand back the first one's claims at its start).
inline constexpr std::int32_t kNodeLockSpace = 0x464a4f43;

inline constexpr const char* kNoticeJobs = "fetchd_jobs";      // payload "": jobs were queued
inline constexpr const char* kNoticeCancel = "fetchd_cancel";  // payload: the cancelled job's id
inline constexpr const char* kNoticePause = "fetchd_pause";    // payload: "<node> <ms> <origin>"

// - key NULL when none; UNIQUE gives the key lookup its index. Text columns hold valid UTF-8 only (the store
//   replaces invalid bytes in error lines); headers are bytes (obs-text is allowed): "name\0value\0..." in
//   bytea.
// - jobs_unfinished_dest: at most one unfinished job per dest, as in the SQLite store.
// - jobs_queue is the claim's run order over exactly the claimable jobs (queued, no lease); jobs_leases
// serves
//   release_expired, jobs_lease_token renew and the fenced updates.
// - Lease times come from the database's clock (now()), the one clock every node shares.
inline constexpr const char* kCreateV1 = R"sql(
CREATE TABLE fetchd.meta (
  name  text PRIMARY KEY,
  value text NOT NULL
);
CREATE SEQUENCE fetchd.lease_tokens;
CREATE TABLE fetchd.jobs (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  key          text UNIQUE,
  url          text NOT NULL,
  dest         text NOT NULL,
  sha256       text,
  size         bigint,
  headers      bytea,
  priority     integer NOT NULL,
  options      text,
  state        text NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
  attempts     integer NOT NULL DEFAULT 0,
  error        text NOT NULL DEFAULT '',
  errors       text[] NOT NULL DEFAULT '{}',
  bytes        bigint NOT NULL DEFAULT 0,
  skipped      boolean NOT NULL DEFAULT false,
  created_ms   bigint NOT NULL,
  updated_ms   bigint NOT NULL,
  finished_ms  bigint NOT NULL DEFAULT 0,
  lease_node   text,
  lease_token  bigint,
  lease_until  timestamptz,
  claimers     text[] NOT NULL DEFAULT '{}',
  published_by text
);
CREATE UNIQUE INDEX jobs_unfinished_dest ON fetchd.jobs (dest) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_queue ON fetchd.jobs (priority DESC, id) WHERE state = 'queued' AND lease_token IS NULL;
CREATE INDEX jobs_leases ON fetchd.jobs (lease_until) WHERE lease_token IS NOT NULL;
CREATE UNIQUE INDEX jobs_lease_token ON fetchd.jobs (lease_token) WHERE lease_token IS NOT NULL;
CREATE INDEX jobs_state ON fetchd.jobs (state, id);
CREATE INDEX jobs_finished ON fetchd.jobs (finished_ms) WHERE state IN ('done', 'failed', 'cancelled');
INSERT INTO fetchd.meta (name, value) VALUES ('schema_version', '1');
)sql";

// The columns of a Job, in the order read_job() reads them.
#define FETCHD_PG_JOB_COLUMNS                                                                           \
  "id, key, url, dest, sha256, size, encode(headers, 'hex'), priority, state, attempts, error, bytes, " \
  "created_ms, updated_ms, finished_ms, options, array_to_json(errors)::text, skipped, lease_token, "   \
  "published_by, array_to_json(claimers)::text"

// $1 key (NULL: none), $2 url, $3 dest, $4 sha256, $5 size, $6 headers, $7 priority, $8 options, $9 now (ms).
// One row: (0 created | 1 existing key | 2 unfinished dest, id, state). ON CONFLICT covers both unique
// indexes. No row: a concurrent transaction inserted the same key or dest and committed while this one
// waited, so the statement's snapshot cannot see that row; the store looks it up again after its commit.
inline constexpr const char* kSubmit = R"sql(
WITH ins AS (
  INSERT INTO fetchd.jobs (key, url, dest, sha256, size, headers, priority, options, state, created_ms, updated_ms)
  VALUES ($1, $2, $3, $4, $5, $6::bytea, $7, $8, 'queued', $9, $9)
  ON CONFLICT DO NOTHING
  RETURNING id)
SELECT 0, id, 'queued' FROM ins
UNION ALL
SELECT 1, id, state FROM fetchd.jobs WHERE key = $1 AND NOT EXISTS (SELECT FROM ins)
UNION ALL
SELECT 2, id, state FROM fetchd.jobs
 WHERE dest = $3 AND state IN ('queued', 'running') AND NOT EXISTS (SELECT FROM ins)
)sql";

// After the commit, for a submit that got no row: the job that holds its key, else its dest.
inline constexpr const char* kFindKeyOrDest = R"sql(
SELECT 1, id, state FROM fetchd.jobs WHERE key = $1
UNION ALL
SELECT 2, id, state FROM fetchd.jobs WHERE dest = $2 AND state IN ('queued', 'running')
)sql";

// $1 id, $2 state, $3 attempts, $4 error, $5 bytes, $6 now (ms), $7 finished (ms), $8 an attempt error to
// append (NULL: none), $9 skipped, $10 lease token (0: unfenced), $11 this node, $12 only if unfinished.
// A finished state ends the lease; queued and running keep it (a retry waits on the node that claimed it).
// $12: only while unfinished (a client's cancel, so that it cannot undo another node's "done").
inline constexpr const char* kUpdate = R"sql(
UPDATE fetchd.jobs SET
  state = $2, attempts = $3, error = $4, bytes = $5, updated_ms = $6, finished_ms = $7,
  errors = CASE WHEN $8::text IS NULL THEN errors
                ELSE (errors || $8::text)[greatest(1, cardinality(errors) + 2 - 16):] END,
  skipped = $9,
  published_by = CASE WHEN $2 = 'done' THEN $11 ELSE published_by END,
  lease_node  = CASE WHEN $2 IN ('queued', 'running') THEN lease_node END,
  lease_token = CASE WHEN $2 IN ('queued', 'running') THEN lease_token END,
  lease_until = CASE WHEN $2 IN ('queued', 'running') THEN lease_until END
WHERE id = $1 AND ($10::bigint = 0 OR lease_token = $10::bigint)
  AND (NOT $12::boolean OR state IN ('queued', 'running'))
RETURNING id
)sql";

// $1 node, $2 limit, $3 lease (ms). SKIP LOCKED: nodes claiming together take disjoint jobs without waiting.
// claimers: every node that ever claimed the job (the claim returns it with this node), so that a node taking
// a job over removes the .part files the others left (theirs are named after them).
inline constexpr const char* kClaim =
    "UPDATE fetchd.jobs j SET lease_node = $1, lease_token = nextval('fetchd.lease_tokens'), "
    "lease_until = now() + $3::bigint * interval '1 millisecond', "
    "claimers = CASE WHEN $1 = ANY(claimers) THEN claimers ELSE claimers || $1::text END "
    "FROM (SELECT id AS claimed FROM fetchd.jobs WHERE state = 'queued' AND lease_token IS NULL "
    "      ORDER BY priority DESC, id LIMIT $2 FOR UPDATE SKIP LOCKED) c "
    "WHERE j.id = c.claimed RETURNING " FETCHD_PG_JOB_COLUMNS;

// $1 tokens ('{1,2}'), $2 lease (ms), $3 node. Row locks are taken in id order, as a commit takes them (its
// updates are sorted by id): two transactions that lock in one order never deadlock.
inline constexpr const char* kRenew =
    "UPDATE fetchd.jobs SET lease_until = now() + $2::bigint * interval '1 millisecond' "
    "WHERE id IN (SELECT id FROM fetchd.jobs WHERE lease_token = ANY($1::bigint[]) AND lease_node = $3 "
    "             ORDER BY id FOR UPDATE) RETURNING id";

// $1 now (ms). A job claimed by a node that stopped renewing: back to the queue, attempts kept (its
// interrupted attempt counts once: it was recorded when it had run for a second, or not at all).
inline constexpr const char* kReleaseExpired =
    "UPDATE fetchd.jobs SET state = 'queued', lease_node = NULL, lease_token = NULL, lease_until = NULL, "
    "updated_ms = $1 WHERE id IN (SELECT id FROM fetchd.jobs WHERE lease_token IS NOT NULL AND lease_until < "
    "now() "
    "                            ORDER BY id FOR UPDATE SKIP LOCKED)";

// $1 node, $2 now (ms): the claims of this node's previous process (or of this one, at the end of a
// shutdown).
inline constexpr const char* kReleaseNode =
    "UPDATE fetchd.jobs SET state = 'queued', lease_node = NULL, lease_token = NULL, lease_until = NULL, "
    "updated_ms = $2 WHERE id IN (SELECT id FROM fetchd.jobs WHERE lease_token IS NOT NULL AND lease_node = "
    "$1 "
    "                            ORDER BY id FOR UPDATE)";

inline constexpr const char* kGet = "SELECT " FETCHD_PG_JOB_COLUMNS " FROM fetchd.jobs WHERE id = $1";
// $1 after id, $2 limit, $3 offset [, $4 state]
inline constexpr const char* kList =
    "SELECT " FETCHD_PG_JOB_COLUMNS " FROM fetchd.jobs WHERE id > $1 ORDER BY id LIMIT $2 OFFSET $3";
inline constexpr const char* kListState =
    "SELECT " FETCHD_PG_JOB_COLUMNS
    " FROM fetchd.jobs WHERE state = $4 AND id > $1 ORDER BY id LIMIT $2 "
    "OFFSET $3";
inline constexpr const char* kCounts = "SELECT state, count(*) FROM fetchd.jobs GROUP BY state";
// $1 finished before (ms), $2 at most
inline constexpr const char* kPrune =
    "DELETE FROM fetchd.jobs WHERE id IN (SELECT id FROM fetchd.jobs WHERE state IN ('done', 'failed', "
    "'cancelled') AND finished_ms < $1 ORDER BY finished_ms, id LIMIT $2)";

}  // namespace fetchd::store::pg_schema
