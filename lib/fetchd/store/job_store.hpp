// SPDX-License-Identifier: Apache-2.0
#pragma once
// The durable job store: every job the daemon acknowledged, its own options, state, attempts and errors. An interface,
// so the scheduler side never knows the backend: SQLite for one host, PostgreSQL for a fleet of daemons sharing
// one queue (a shared store: jobs are claimed with leases, docs/fleet.md).
// Every write goes through commit(): one transaction per call, so the daemon groups submits
// and state changes into one fsync, and acknowledges nothing before commit() returned.
// Thread: one thread uses a store object (the daemon opens one per thread).

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "fetchd/core/job_options.hpp"
#include "fetchd/core/transfer_types.hpp"

namespace fetchd::store {

enum class State { kQueued, kRunning, kDone, kFailed, kCancelled };
std::string_view to_string(State s);  // "queued", "running", "done", "failed", "cancelled"
std::optional<State> state_from_string(std::string_view s);
inline bool finished(State s) { return s == State::kDone || s == State::kFailed || s == State::kCancelled; }

// A job as submitted (already validated: http(s) URL, absolute confined dest, valid headers).
struct NewJob {
  // Idempotency key; empty = none. A key that exists already (in any state) makes the submit a no-op that
  // returns the existing job. Config jobs use "config:" + dest + "\n" + url; clients' keys get "client:".
  std::string key;
  std::string url;
  std::string dest;  // absolute path
  std::optional<std::string> sha256;  // lowercase hex
  std::optional<std::uint64_t> size;
  core::Headers headers;  // may hold secrets: stored (the db is private to the daemon), never logged
  int priority = 0;       // higher runs first
  core::JobOptions options;  // the job's own overrides of the config's defaults, kept for its whole life
};

// How many failed attempts' error lines a job keeps (the newest).
inline constexpr std::size_t kMaxErrors = 16;

struct Job {
  core::JobId id = 0;
  std::string key;
  std::string url;
  std::string dest;
  std::optional<std::string> sha256;
  std::optional<std::uint64_t> size;
  core::Headers headers;
  int priority = 0;
  core::JobOptions options;
  State state = State::kQueued;
  int attempts = 0;
  std::string error;         // the last attempt's error message; "" when none
  std::vector<std::string> errors;  // the error lines of the last kMaxErrors failed attempts, oldest first
  std::uint64_t bytes = 0;   // body bytes of the last attempt
  bool skipped = false;      // done without a download: the destination existed (on_exists: skip)
  std::int64_t created_ms = 0;   // Unix epoch milliseconds
  std::int64_t updated_ms = 0;
  std::int64_t finished_ms = 0;  // 0 while unfinished
  // Shared stores: the fencing token of this node's claim (from claim()); 0 when not claimed by this call.
  std::uint64_t lease = 0;
  std::string published_by;           // shared stores: the node whose update made it done; "" otherwise
  std::vector<std::string> claimers;  // shared stores: every node that claimed it, in order
};

// A state change of one job. Fields are absolute values, not deltas.
struct Update {
  core::JobId id = 0;
  State state = State::kQueued;
  int attempts = 0;
  std::string error;
  std::uint64_t bytes = 0;
  // A failed attempt's error line: appended to Job::errors (which keeps the newest kMaxErrors).
  std::optional<std::string> attempt_error;
  // Done because the destination existed (on_exists: skip); false for every other update.
  bool skipped = false;
  // Shared stores: the claim's token. Non-zero: applied only while the job still holds exactly that lease (it
  // was not re-claimed by another node, nor cancelled); otherwise the update is fenced (BatchResult::fenced).
  // A finished state ends the lease. 0: applied whatever the lease (a client's cancel).
  std::uint64_t lease = 0;
  // Applied only while the job is unfinished: a client's cancel in a fleet, which must not undo the "done" that
  // another node committed meanwhile (shared stores; a single-host store has no other writer).
  bool if_unfinished = false;
};

struct SubmitOutcome {
  enum class Kind { kCreated, kExisting, kConflict };
  Kind kind = Kind::kCreated;
  // kCreated: the new id; kExisting: the job that holds the key; kConflict: the unfinished job that already
  // writes to the same dest (two transfers must never share a .part).
  core::JobId id = 0;
  State state = State::kQueued;  // of that job
};

// An origin's 429/503 Retry-After, for the fleet.
struct OriginPause {
  std::string origin;
  std::chrono::milliseconds pause{0};
};

struct Counts {
  std::uint64_t queued = 0, running = 0, done = 0, failed = 0, cancelled = 0;
  std::uint64_t& of(State s) {
    switch (s) {
      case State::kQueued: return queued;
      case State::kRunning: return running;
      case State::kDone: return done;
      case State::kFailed: return failed;
      case State::kCancelled: break;
    }
    return cancelled;
  }
};

// A claimed job's lease, to renew.
struct Held {
  core::JobId id = 0;
  std::uint64_t lease = 0;
};

// commit() applies the updates first, then the submits in order (each sees the ones before it): a job that
// finishes in this batch frees its dest for a submit of the same batch. A shared store then renews, hands back
// expired leases and claims, in the same transaction: a node's outcomes, renewals and next jobs cost one commit
// (one fsync), made off its control loop (docs/fleet.md).
struct Batch {
  std::vector<NewJob> submits;
  std::vector<Update> updates;
  std::optional<std::vector<Held>> renew;  // shared stores: renew these, then release_expired()
  std::size_t claim = 0;                   // shared stores: claim(claim) last
  std::vector<OriginPause> pauses;         // shared stores: told to the other nodes (Notice::kPause)
  bool count = false;                      // BatchResult::counts: counts() after all of the above
  bool empty() const {
    return submits.empty() && updates.empty() && !renew && claim == 0 && pauses.empty() && !count;
  }
};

struct BatchResult {
  std::vector<SubmitOutcome> submits;  // one per Batch::submits, same order
  std::vector<core::JobId> fenced;     // updates not applied: their lease was lost (shared stores)
  std::vector<core::JobId> renewed;    // Batch::renew: the leases still held (as renew())
  std::uint64_t released = 0;          // Batch::renew: expired leases handed back (as release_expired())
  std::vector<Job> claimed;            // Batch::claim: as claim()
  std::optional<Counts> counts;        // Batch::count
};

// What another node asked of this one (shared stores), through the store's notification channel.
struct Notice {
  enum class Kind { kJobsQueued, kCancel, kPause };
  Kind kind = Kind::kJobsQueued;
  core::JobId id = 0;  // kCancel
  // kPause: another node was told by this origin ("scheme://host:port") to come back after `pause`.
  std::string origin;
  std::chrono::milliseconds pause{0};
};


// Keyset position in the run order (priority descending, then id ascending).
struct Cursor {
  int priority = 0;
  core::JobId id = 0;
};


struct ListQuery {
  std::optional<State> state;  // all states when absent
  core::JobId after_id = 0;    // ids greater than this (keyset paging); 0 = from the start
  std::uint64_t offset = 0;
  std::uint64_t limit = 1000;
};

struct PruneLimits {
  std::chrono::seconds max_age{std::chrono::hours(24 * 7)};  // finished jobs older than this go; 0 = keep
  std::uint64_t max_finished = 100000;                        // keep at most this many finished jobs; 0 = keep
};

// Any failure of the backend (open, schema, I/O, full disk, corruption). The message names the database.
class StoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class JobStore {
 public:
  virtual ~JobStore() = default;

  // One transaction: every submit and update, or nothing (then it throws StoreError).
  virtual BatchResult commit(const Batch& batch) = 0;
  // Queued jobs in run order, strictly after `after` when given; at most `limit`.
  virtual std::vector<Job> next_queued(std::optional<Cursor> after, std::size_t limit) = 0;
  virtual std::optional<Job> get(core::JobId id) = 0;
  virtual std::vector<Job> list(const ListQuery& query) = 0;
  virtual Counts counts() = 0;
  // At start-up (and at the end of a shutdown): the jobs a previous process of this daemon left running (or, in
  // a shared store, claimed) go back to queued; their attempts are kept.
  virtual std::uint64_t requeue_running() = 0;
  // Deletes finished jobs beyond the limits (oldest first); never an unfinished one. Returns how many.
  virtual std::uint64_t prune(const PruneLimits& limits) = 0;
  // What the daemon logs as the store's name (a file, or a database without its password).
  virtual std::string describe() const = 0;

  // --- Shared stores (several daemons on one queue). A single-host store is not shared and never called here.
  virtual bool shared() const { return false; }
  // Claims up to `limit` runnable jobs in run order for this node (the node and the lease length were given at
  // open): each comes back with a fresh token in Job::lease, and no other node gets it while the lease lasts.
  virtual std::vector<Job> claim(std::size_t limit);
  // Extends the leases in `held` by the lease length from now; returns those still held (the others were lost:
  // re-claimed after they expired, or cancelled).
  virtual std::vector<core::JobId> renew(const std::vector<Held>& held);
  // Puts the jobs whose lease expired back in the queue (their attempts are kept); returns how many.
  virtual std::uint64_t release_expired();
  // A descriptor that turns readable when notices may have arrived; -1 when the store has none.
  virtual int notice_fd() { return -1; }
  virtual std::vector<Notice> take_notices() { return {}; }
};

enum class Synchronous { kFull, kNormal };

struct SqliteOptions {
  // FULL: a commit is on disk before commit() returns (survives power loss). NORMAL (with WAL): survives a
  // process crash, but the last commits may be lost on power loss. See docs/configuration.md.
  Synchronous synchronous = Synchronous::kFull;
};

// Opens (creating when missing) `path` (e.g. /var/lib/fetchd/jobs.db) in WAL mode. Throws StoreError naming the
// file when it cannot be opened, is not a fetchd database, is corrupt, or has a newer schema.
std::unique_ptr<JobStore> open_sqlite_store(const std::filesystem::path& path, const SqliteOptions& options = {});

struct PostgresOptions {
  std::string url;   // a libpq connection URI or key=value string; "" = the PG* environment variables alone
  std::string node;  // this daemon's name in the fleet (claims, published_by)
  std::chrono::milliseconds lease{std::chrono::seconds(30)};
  bool listen = false;  // LISTEN for other nodes' notices (the daemon's loop connection)
};

// Connects and brings the schema to this binary's version (under an advisory lock, so nodes starting together
// do not race). Throws StoreError naming the database (never its password): unreachable, authentication
// failed, not a fetchd schema, or a schema newer than this fetchd.
std::unique_ptr<JobStore> open_postgres_store(const PostgresOptions& options);

}  // namespace fetchd::store
