// SPDX-License-Identifier: Apache-2.0
// The SQLite JobStore: one connection in WAL mode, every statement prepared once, every write one
// transaction. The schema and the statements are in sqlite_schema.hpp; docs/store.md explains the choices and
// the numbers.

#include <fcntl.h>
#include <fmt/format.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <chrono>
#include <limits>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>

#include <nlohmann/json.hpp>

#include "fetchd/core/unique_fd.hpp"
#include "fetchd/store/job_store.hpp"
#include "fetchd/store/sqlite.hpp"
#include "fetchd/store/sqlite_schema.hpp"

namespace fetchd::store {
namespace {

// How long a statement waits for a lock another connection holds (an operator's sqlite3 shell, a second
// fetchd on the same file) before failing with "database is locked".
constexpr int kBusyTimeoutMs = 5000;
// The page cache of the connection, bounded so that a million jobs cost disk, not RSS.
constexpr const char* kCacheSize = "PRAGMA cache_size = -8192";  // KiB
// A big batch grows the WAL; after a checkpoint it is truncated back to this size.
constexpr const char* kJournalSizeLimit = "PRAGMA journal_size_limit = 67108864";
// Statement journals (the undo log of one INSERT with its trigger, inside a big transaction) in memory: they
// are emptied after every statement, and a temp file costs a pwrite per page (measured: 15 per job).
constexpr const char* kTempStore = "PRAGMA temp_store = MEMORY";
// prune() deletes in transactions of at most this many jobs, so the WAL stays small and checkpoints keep up.
constexpr std::uint64_t kPruneChunk = 10000;

constexpr std::int64_t kMaxSql = std::numeric_limits<std::int64_t>::max();

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// SQLite integers are signed 64-bit. Sizes and byte counts keep their bit pattern (a round trip is exact);
// limits, offsets and ids used as bounds saturate instead.
std::int64_t bits(std::uint64_t v) {
  return static_cast<std::int64_t>(v);
}
std::int64_t bound(std::uint64_t v) {
  return v > static_cast<std::uint64_t>(kMaxSql) ? kMaxSql : bits(v);
}

// Asserts that one thread uses the store (the connection is opened SQLITE_OPEN_NOMUTEX). Bound at the first
// call, not at open, so the daemon may open the store before its control loop runs.
class ThreadCheck {
 public:
  void operator()() {
#ifndef NDEBUG
    if (owner_ == std::thread::id()) owner_ = std::this_thread::get_id();
    assert(owner_ == std::this_thread::get_id() && "a JobStore is used by one thread only");
#endif
  }

 private:
  [[maybe_unused]] std::thread::id owner_;
};

// Creates the file when missing with mode 0600 before SQLite sees it: SQLite would create it 0644 (less the
// umask), and gives its -wal and -shm files the permissions of the database file. The headers may hold
// secrets.
void create_private_file(const std::string& name) {
  core::UniqueFd fd(::open(name.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) {
    throw StoreError(
        fmt::format("{}: cannot open or create the file: {}", name, std::generic_category().message(errno)));
  }
}

// Runs inside the open transaction: brings a store of schema `version` (>= 1) to schema::kVersion.
void migrate(sqlite::Database& db, std::int64_t version, std::string_view what) {
  for (; version < schema::kVersion; ++version) {
    db.exec(schema::kMigrations[version - 1], what);
    db.exec(fmt::format("PRAGMA user_version = {}", version + 1).c_str(), what);
  }
}

// Runs inside the open transaction: accepts a fetchd job store of our schema version (migrating an older
// one), creates the schema in
// an empty file, and refuses anything else without altering it.
void identify_or_create(sqlite::Database& db, std::string_view what) {
  const std::string& name = db.name();
  const auto app_id = static_cast<std::int32_t>(db.query_int("PRAGMA application_id", what));
  const std::int64_t version = db.query_int("PRAGMA user_version", what);
  const std::int64_t objects = db.query_int("SELECT count(*) FROM sqlite_schema", what);

  if (app_id == schema::kApplicationId) {
    if (version > schema::kVersion) {
      throw StoreError(
          fmt::format("{}: the job store has schema version {}, newer than this fetchd supports ({}); "
                      "it was written by a newer fetchd",
                      name, version, schema::kVersion));
    }
    if (version < 1) {
      throw StoreError(fmt::format(
          "{}: the job store has schema version {}, which this fetchd cannot read (it supports 1 to {})", name,
          version, schema::kVersion));
    }
    migrate(db, version, what);
    return;
  }
  if (app_id != 0) {
    throw StoreError(fmt::format(
        "{}: not a fetchd job store: an SQLite database of another application (application_id {:#010x}, "
        "fetchd's is {:#010x})",
        name, static_cast<std::uint32_t>(app_id), static_cast<std::uint32_t>(schema::kApplicationId)));
  }
  if (objects != 0 || version != 0) {
    throw StoreError(fmt::format(
        "{}: not a fetchd job store: an SQLite database without fetchd's application_id ({} schema "
        "objects, user_version {})",
        name, objects, version));
  }
  db.exec(schema::kCreateV1);
  db.exec(fmt::format("PRAGMA application_id = {}", schema::kApplicationId).c_str());
  migrate(db, 1, what);
}

sqlite::Database open_database(const std::filesystem::path& path, const SqliteOptions& options) {
  create_private_file(path.string());
  sqlite::Database db = sqlite::Database::open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX);
  db.set_busy_timeout(kBusyTimeoutMs);
  // The first reads of the file happen from here on: a non-SQLite file fails with "file is not a database", a
  // truncated one with "database disk image is malformed" (SQLite compares the page count in its header with
  // the file size).
  constexpr std::string_view kUse = "cannot use it as a job store";
  // Connection settings, none of which writes to the file (foreign_keys would be a no-op in a transaction).
  db.exec(
      options.synchronous == Synchronous::kFull ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
      kUse);
  db.exec(kCacheSize, kUse);
  db.exec(kJournalSizeLimit, kUse);
  db.exec(kTempStore, kUse);
  db.exec("PRAGMA foreign_keys = ON", kUse);  // job_headers rows go with their job

  // Identify (and create) inside one write transaction: a concurrent creator cannot slip in between the check
  // and the CREATE, and a refused file is left exactly as it was (the transaction wrote nothing).
  db.exec("BEGIN IMMEDIATE", kUse);
  identify_or_create(db, kUse);  // on a throw, closing the connection rolls the transaction back
  db.exec("COMMIT", kUse);

  // Only now, once the file is known to be ours: WAL changes the database header.
  const std::string mode = db.query_text("PRAGMA journal_mode = WAL", "switching to WAL mode");
  if (mode != "wal") {
    throw StoreError(fmt::format("{}: cannot use WAL mode (journal_mode stays \"{}\")", db.name(), mode));
  }
  return db;
}

State parse_state(const std::string& text, const std::string& db_name) {
  if (auto s = state_from_string(text)) return *s;
  throw StoreError(fmt::format("{}: corrupt job store: unknown job state \"{}\"", db_name, text));
}

class SqliteJobStore final : public JobStore {
 public:
  explicit SqliteJobStore(sqlite::Database db)
      : db_(std::move(db)),
        begin_(db_.prepare("BEGIN IMMEDIATE")),
        commit_(db_.prepare("COMMIT")),
        rollback_(db_.prepare("ROLLBACK")),
        find_key_(db_.prepare(schema::kFindKey)),
        find_dest_(db_.prepare(schema::kFindUnfinishedDest)),
        insert_job_(db_.prepare(schema::kInsertJob)),
        insert_header_(db_.prepare(schema::kInsertHeader)),
        select_headers_(db_.prepare(schema::kSelectHeaders)),
        update_job_(db_.prepare(schema::kUpdateJob)),
        select_errors_(db_.prepare(schema::kSelectErrors)),
        next_(db_.prepare(schema::kNextQueued)),
        next_same_(db_.prepare(schema::kNextQueuedSamePriority)),
        next_lower_(db_.prepare(schema::kNextQueuedLowerPriority)),
        get_(db_.prepare(schema::kGet)),
        list_(db_.prepare(schema::kList)),
        list_state_(db_.prepare(schema::kListState)),
        counts_(db_.prepare(schema::kCounts)),
        requeue_(db_.prepare(schema::kRequeueRunning)),
        prune_(db_.prepare(schema::kPruneFinished)) {}

  BatchResult commit(const Batch& batch) override {
    check_thread_();
    if (batch.renew || batch.claim > 0 || !batch.pauses.empty() || batch.count) {
      throw std::logic_error("claims, leases and notices on a store that is not shared");
    }
    BatchResult result;
    if (batch.empty()) return result;
    result.submits.reserve(batch.submits.size());
    const std::int64_t now = now_ms();
    write_transaction([&] {
      // Updates first: a job that finishes in this batch frees its dest for a submit of the same batch, and a
      // job sent back to the queue makes a same-dest submit a conflict instead of failing the whole batch.
      for (const Update& u : batch.updates) update(u, now);
      for (const NewJob& job : batch.submits) result.submits.push_back(submit(job, now));
    });
    return result;
  }

  std::vector<Job> next_queued(std::optional<Cursor> after, std::size_t limit) override {
    check_thread_();
    std::vector<Job> jobs;
    if (limit == 0) return jobs;
    jobs.reserve(std::min<std::size_t>(limit, 4096));
    const auto collect = [&](sqlite::Statement& s) {
      while (jobs.size() < limit && s.step()) jobs.push_back(read_job(s));
    };
    if (!after) {
      auto scope = next_.use();
      next_.bind(1, bound(limit));
      collect(next_);
      return jobs;
    }
    {
      auto scope = next_same_.use();
      next_same_.bind(1, after->priority);
      next_same_.bind(2, bound(after->id));
      next_same_.bind(3, bound(limit));
      collect(next_same_);
    }
    if (jobs.size() < limit) {
      auto scope = next_lower_.use();
      next_lower_.bind(1, after->priority);
      next_lower_.bind(2, bound(limit - jobs.size()));
      collect(next_lower_);
    }
    return jobs;
  }

  std::optional<Job> get(core::JobId id) override {
    check_thread_();
    auto scope = get_.use();
    get_.bind(1, bound(id));
    if (!get_.step()) return std::nullopt;
    return read_job(get_);
  }

  std::vector<Job> list(const ListQuery& query) override {
    check_thread_();
    std::vector<Job> jobs;
    if (query.limit == 0) return jobs;
    jobs.reserve(std::min<std::uint64_t>(query.limit, 4096));
    sqlite::Statement& s = query.state ? list_state_ : list_;
    auto scope = s.use();
    int i = 1;
    if (query.state) s.bind(i++, to_string(*query.state));
    s.bind(i++, bound(query.after_id));
    s.bind(i++, bound(query.limit));
    s.bind(i++, bound(query.offset));
    while (s.step()) jobs.push_back(read_job(s));
    return jobs;
  }

  Counts counts() override {
    check_thread_();
    Counts c;
    auto scope = counts_.use();
    while (counts_.step()) {
      const auto n = static_cast<std::uint64_t>(counts_.column_int64(1));
      c.of(parse_state(counts_.column_text(0), db_.name())) = n;
    }
    return c;
  }

  std::uint64_t requeue_running() override {
    check_thread_();
    std::int64_t changed = 0;
    write_transaction([&] {
      auto scope = requeue_.use();
      requeue_.bind(1, now_ms());
      requeue_.run();
      changed = db_.changes();
    });
    return static_cast<std::uint64_t>(changed);
  }

  std::string describe() const override { return db_.name(); }

  std::uint64_t prune(const PruneLimits& limits) override {
    check_thread_();
    std::uint64_t pruned = 0;
    if (limits.max_age.count() > 0) {
      const std::int64_t age_ms =
          limits.max_age.count() > kMaxSql / 1000 ? kMaxSql : limits.max_age.count() * 1000;
      pruned += delete_finished(now_ms() - age_ms, std::numeric_limits<std::uint64_t>::max());
    }
    if (limits.max_finished > 0) {
      const Counts c = counts();
      const std::uint64_t finished = c.done + c.failed + c.cancelled;
      if (finished > limits.max_finished) pruned += delete_finished(kMaxSql, finished - limits.max_finished);
    }
    return pruned;
  }

 private:
  // BEGIN IMMEDIATE takes the write lock at once, so the transaction cannot fail half-way for a lock
  // (https://www.sqlite.org/lang_transaction.html). Any failure rolls everything back before it propagates.
  template <typename Body>
  void write_transaction(Body&& body) {
    {
      auto scope = begin_.use();
      begin_.run();
    }
    try {
      body();
      auto scope = commit_.use();
      commit_.run();
    } catch (const std::exception& failure) {
      roll_back(failure);
      throw;
    }
  }

  void roll_back(const std::exception& failure) {
    // Some errors (SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM, ...) have rolled back already.
    if (!db_.in_transaction()) return;
    auto scope = rollback_.use();
    try {
      rollback_.run();
    } catch (const StoreError& e) {
      throw StoreError(fmt::format("{}; then rolling back failed too: {}", failure.what(), e.what()));
    }
  }

  SubmitOutcome submit(const NewJob& job, std::int64_t now) {
    if (!job.key.empty()) {
      auto scope = find_key_.use();
      find_key_.bind(1, job.key);
      if (find_key_.step()) {
        return {SubmitOutcome::Kind::kExisting, static_cast<core::JobId>(find_key_.column_int64(0)),
                parse_state(find_key_.column_text(1), db_.name())};
      }
    }
    {
      auto scope = find_dest_.use();
      find_dest_.bind(1, job.dest);
      if (find_dest_.step()) {
        return {SubmitOutcome::Kind::kConflict, static_cast<core::JobId>(find_dest_.column_int64(0)),
                parse_state(find_dest_.column_text(1), db_.name())};
      }
    }
    core::JobId id = 0;
    {
      auto scope = insert_job_.use();
      if (job.key.empty()) {
        insert_job_.bind_null(1);
      } else {
        insert_job_.bind(1, job.key);
      }
      insert_job_.bind(2, job.url);
      insert_job_.bind(3, job.dest);
      if (job.sha256) insert_job_.bind(4, *job.sha256);  // unbound parameters are NULL
      if (job.size) insert_job_.bind(5, bits(*job.size));
      insert_job_.bind(6, static_cast<std::int64_t>(job.headers.size()));
      insert_job_.bind(7, job.priority);
      insert_job_.bind(8, now);
      if (!job.options.empty()) insert_job_.bind(9, core::to_json(job.options).dump());
      insert_job_.run();
      id = static_cast<core::JobId>(db_.last_insert_rowid());
    }
    for (std::size_t pos = 0; pos < job.headers.size(); ++pos) {
      auto scope = insert_header_.use();
      insert_header_.bind(1, bits(id));
      insert_header_.bind(2, static_cast<std::int64_t>(pos));
      insert_header_.bind(3, job.headers[pos].first);
      insert_header_.bind_blob(4, job.headers[pos].second);
      insert_header_.run();
    }
    return {SubmitOutcome::Kind::kCreated, id, State::kQueued};
  }

  // An unknown id changes nothing: the job may have been pruned since the scheduler read it.
  void update(const Update& u, std::int64_t now) {
    auto scope = update_job_.use();
    update_job_.bind(1, bound(u.id));
    update_job_.bind(2, to_string(u.state));
    update_job_.bind(3, u.attempts);
    update_job_.bind(4, u.error);
    update_job_.bind(5, bits(u.bytes));
    update_job_.bind(6, now);
    update_job_.bind(7, finished(u.state) ? now : 0);
    std::string errors;
    if (u.attempt_error) {
      errors = appended_errors(u.id, *u.attempt_error);
      update_job_.bind(8, errors);
    }
    update_job_.bind(9, std::int64_t{u.skipped ? 1 : 0});
    try {
      update_job_.run();
    } catch (const StoreError& e) {
      // Typically the partial unique index: this job would become a second unfinished job for its dest.
      throw StoreError(fmt::format("{} (update of job {} to {})", e.what(), u.id, to_string(u.state)));
    }
  }

  // The job's errors with `line` appended, the oldest dropped beyond kMaxErrors, as JSON text.
  std::string appended_errors(core::JobId id, const std::string& line) {
    std::vector<std::string> errors;
    {
      auto scope = select_errors_.use();
      select_errors_.bind(1, bound(id));
      if (select_errors_.step()) errors = parse_errors(select_errors_.column_text(0), id);
    }
    errors.push_back(line);
    if (errors.size() > kMaxErrors) errors.erase(errors.begin(), errors.end() - kMaxErrors);
    // Error lines come from curl and servers: invalid UTF-8 is replaced rather than failing the commit.
    return nlohmann::json(errors).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }

  std::vector<std::string> parse_errors(const std::string& text, core::JobId id) const {
    if (text == "[]") return {};  // nearly every job: not worth a parser
    auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!j.is_array() || !std::all_of(j.begin(), j.end(), [](const auto& e) { return e.is_string(); })) {
      throw StoreError(fmt::format("{}: corrupt job store: job {} has invalid errors", db_.name(), id));
    }
    return j.get<std::vector<std::string>>();
  }

  core::JobOptions parse_options(const std::string& text, core::JobId id) const {
    std::string why;
    auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    auto options = core::job_options_from_json(j, &why);
    if (!options) {
      throw StoreError(fmt::format("{}: corrupt job store: job {} has invalid options: {}", db_.name(), id, why));
    }
    return *options;
  }

  // Deletes finished jobs that finished before `before_ms`, oldest first, at most `max`; one transaction per
  // chunk. Returns how many.
  std::uint64_t delete_finished(std::int64_t before_ms, std::uint64_t max) {
    std::uint64_t deleted = 0;
    while (deleted < max) {  // bounded: every round deletes a full chunk or it is the last
      const std::uint64_t chunk = std::min(kPruneChunk, max - deleted);
      std::int64_t n = 0;
      write_transaction([&] {
        auto scope = prune_.use();
        prune_.bind(1, before_ms);
        prune_.bind(2, bits(chunk));
        prune_.run();
        n = db_.changes();  // the jobs only: rows deleted by the foreign key cascade or triggers do not count
      });
      deleted += static_cast<std::uint64_t>(n);
      if (static_cast<std::uint64_t>(n) < chunk) break;
    }
    return deleted;
  }

  Job read_job(sqlite::Statement& s) {
    Job j;
    j.id = static_cast<core::JobId>(s.column_int64(0));
    j.key = s.column_text(1);
    j.url = s.column_text(2);
    j.dest = s.column_text(3);
    if (!s.is_null(4)) j.sha256 = s.column_text(4);
    if (!s.is_null(5)) j.size = static_cast<std::uint64_t>(s.column_int64(5));
    const std::int64_t header_count = s.column_int64(6);
    j.priority = static_cast<int>(s.column_int64(7));
    j.state = parse_state(s.column_text(8), db_.name());
    j.attempts = static_cast<int>(s.column_int64(9));
    j.error = s.column_text(10);
    j.bytes = static_cast<std::uint64_t>(s.column_int64(11));
    j.created_ms = s.column_int64(12);
    j.updated_ms = s.column_int64(13);
    j.finished_ms = s.column_int64(14);
    if (!s.is_null(15)) j.options = parse_options(s.column_text(15), j.id);
    j.errors = parse_errors(s.column_text(16), j.id);
    j.skipped = s.column_int64(17) != 0;
    if (header_count > 0) {
      auto scope = select_headers_.use();
      select_headers_.bind(1, bits(j.id));
      j.headers.reserve(static_cast<std::size_t>(header_count));
      while (select_headers_.step())
        j.headers.emplace_back(select_headers_.column_text(0), select_headers_.column_text(1));
    }
    return j;
  }

  ThreadCheck check_thread_;
  // The connection first, so that it outlives the statements (close_v2 would cope either way).
  sqlite::Database db_;
  sqlite::Statement begin_, commit_, rollback_;
  sqlite::Statement find_key_, find_dest_, insert_job_, insert_header_, select_headers_, update_job_,
      select_errors_;
  sqlite::Statement next_, next_same_, next_lower_, get_, list_, list_state_, counts_, requeue_, prune_;
};

}  // namespace

std::unique_ptr<JobStore> open_sqlite_store(const std::filesystem::path& path, const SqliteOptions& options) {
  return std::make_unique<SqliteJobStore>(open_database(path, options));
}

}  // namespace fetchd::store
