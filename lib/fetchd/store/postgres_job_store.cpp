// SPDX-License-Identifier: Apache-2.0
// The PostgreSQL JobStore: the shared queue of a fleet of daemons (docs/fleet.md). One libpq connection per
// store object (blocking calls: the daemon makes them off its control loop or keeps them short), every
// statement prepared at connect, every commit one pipelined implicit transaction. The schema and statements
// are in postgres_schema.hpp.

#include <fmt/format.h>
#include <libpq-fe.h>

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "fetchd/core/text.hpp"
#include "fetchd/store/job_store.hpp"
#include "fetchd/store/postgres_schema.hpp"

namespace fetchd::store {
namespace {

constexpr std::int64_t kMaxSql = std::numeric_limits<std::int64_t>::max();
// Statements sent before the pipeline reads their results: bounds what waits in socket buffers, since a
// server whose results nobody reads stops reading statements (libpq's documented pipeline deadlock).
constexpr std::size_t kPipelineChunk = 256;
constexpr std::uint64_t kPruneChunk = 10000;

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string bound(std::uint64_t v) {
  return std::to_string(v > static_cast<std::uint64_t>(kMaxSql) ? kMaxSql : static_cast<std::int64_t>(v));
}

// PostgreSQL text holds valid UTF-8 without NUL; error lines come from servers and curl, so invalid bytes are
// replaced (U+FFFD) rather than failing the commit.
std::string utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    bool ok = len > 0 && c != 0 && i + len <= s.size() && !(len == 2 && c < 0xc2);
    for (std::size_t k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
    if (ok && len == 3) {
      const auto c1 = static_cast<unsigned char>(s[i + 1]);
      ok = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 >= 0xa0);  // overlong, surrogates
    } else if (ok && len == 4) {
      const auto c1 = static_cast<unsigned char>(s[i + 1]);
      ok = !(c == 0xf0 && c1 < 0x90) && !(c == 0xf4 && c1 >= 0x90) && c <= 0xf4;
    }
    if (ok) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += "\xef\xbf\xbd";
      ++i;
    }
  }
  return out;
}

std::string encode_headers(const core::Headers& headers) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\\x";
  const auto put = [&](std::string_view s) {
    for (unsigned char c : s) {
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
    out += "00";
  };
  for (const auto& [name, value] : headers) {
    put(name);
    put(value);
  }
  return out;
}

core::Headers decode_headers(std::string_view hex) {
  const auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  std::string bytes;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes += static_cast<char>(nibble(hex[i]) * 16 + nibble(hex[i + 1]));
  }
  core::Headers headers;
  std::size_t pos = 0;
  while (pos < bytes.size()) {  // bounded: every round consumes at least two NULs
    auto a = bytes.find('\0', pos);
    if (a == std::string::npos) break;
    auto b = bytes.find('\0', a + 1);
    if (b == std::string::npos) break;
    headers.emplace_back(bytes.substr(pos, a - pos), bytes.substr(a + 1, b - a - 1));
    pos = b + 1;
  }
  return headers;
}

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;
struct ConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
using Conn = std::unique_ptr<PGconn, ConnDeleter>;

// Parameters in text format; a null optional is SQL NULL.
class Params {
 public:
  Params& add(std::optional<std::string> v) {
    values_.push_back(std::move(v));
    return *this;
  }
  Params& add(std::int64_t v) { return add(std::to_string(v)); }
  Params& add(const char* v) { return add(std::string(v)); }
  int size() const { return static_cast<int>(values_.size()); }
  std::string value(std::size_t k) const { return values_.at(k).value_or("NULL"); }
  const char* const* pointers() {
    ptrs_.clear();
    for (const auto& v : values_) ptrs_.push_back(v ? v->c_str() : nullptr);
    return ptrs_.data();
  }

 private:
  std::vector<std::optional<std::string>> values_;
  std::vector<const char*> ptrs_;
};

State parse_state(const char* text, const std::string& db) {
  if (auto s = state_from_string(text)) return *s;
  throw StoreError(fmt::format("{}: corrupt job store: unknown job state \"{}\"", db, text));
}

// The statements every connection prepares, by name.
struct Prepared {
  const char* name;
  const char* sql;
};
constexpr Prepared kStatements[] = {
    {"submit", pg_schema::kSubmit},
    {"find", pg_schema::kFindKeyOrDest},
    {"update", pg_schema::kUpdate},
    {"claim", pg_schema::kClaim},
    {"renew", pg_schema::kRenew},
    {"release_expired", pg_schema::kReleaseExpired},
    {"release_node", pg_schema::kReleaseNode},
    {"get", pg_schema::kGet},
    {"list", pg_schema::kList},
    {"list_state", pg_schema::kListState},
    {"counts", pg_schema::kCounts},
    {"prune", pg_schema::kPrune},
};

class PostgresJobStore final : public JobStore {
 public:
  explicit PostgresJobStore(PostgresOptions options)
      : options_(std::move(options)), name_(describe_url(options_.url)) {
    conn_ = connect();
    init_schema();
    prepare();
    if (options_.listen) {
      listen_conn_ = connect();
      take_node_lock();
      exec(listen_conn_.get(), fmt::format("LISTEN {}", pg_schema::kNoticeJobs));
      exec(listen_conn_.get(), fmt::format("LISTEN {}", pg_schema::kNoticeCancel));
      exec(listen_conn_.get(), fmt::format("LISTEN {}", pg_schema::kNoticePause));
    }
  }

  std::string describe() const override { return name_; }
  bool shared() const override { return true; }

  BatchResult commit(const Batch& batch) override {
    BatchResult result;
    if (batch.empty()) return result;
    ensure_connected();
    const std::string now = std::to_string(now_ms());
    // Statement i of the pipeline: updates, then submits, then the notices. The updates in id order (stable:
    // one job's keep theirs), so that row locks are taken in the order renew() takes them (no deadlock).
    std::vector<const Update*> sorted;
    sorted.reserve(batch.updates.size());
    for (const Update& u : batch.updates) sorted.push_back(&u);
    std::stable_sort(sorted.begin(), sorted.end(),
                     [](const Update* a, const Update* b) { return a->id < b->id; });
    std::vector<Params> statements;
    std::vector<const char*> names;
    statements.reserve(batch.updates.size() + batch.submits.size() + 1);
    for (const Update* up : sorted) {
      const Update& u = *up;
      Params p;
      p.add(bound(u.id))
          .add(std::string(to_string(u.state)))
          .add(std::int64_t{u.attempts})
          .add(utf8(u.error))
          .add(static_cast<std::int64_t>(u.bytes))
          .add(now)
          .add(finished(u.state) ? now : std::string("0"))
          .add(u.attempt_error ? std::optional<std::string>(utf8(*u.attempt_error)) : std::nullopt)
          .add(u.skipped ? "true" : "false")
          .add(bound(u.lease))
          .add(options_.node)
          .add(u.if_unfinished ? "true" : "false");
      statements.push_back(std::move(p));
      names.push_back("update");
    }
    for (const NewJob& job : batch.submits) {
      Params p;
      p.add(job.key.empty() ? std::nullopt : std::optional<std::string>(job.key))
          .add(job.url)
          .add(job.dest)
          .add(job.sha256)
          .add(job.size ? std::optional<std::string>(std::to_string(static_cast<std::int64_t>(*job.size)))
                        : std::nullopt)  // bigint keeps the bit pattern, as in the SQLite store
          .add(job.headers.empty() ? std::nullopt : std::optional<std::string>(encode_headers(job.headers)))
          .add(std::int64_t{job.priority})
          .add(job.options.empty() ? std::nullopt
                                   : std::optional<std::string>(core::to_json(job.options).dump()))
          .add(now);
      statements.push_back(std::move(p));
      names.push_back("submit");
    }
    bool notify_jobs = !batch.submits.empty();
    // Then, in the same transaction: renewals, the expired leases handed back, the claim.
    if (batch.renew) {
      statements.push_back(renew_params(*batch.renew));
      names.push_back("renew");
      statements.push_back(release_params());
      names.push_back("release_expired");
    }
    if (batch.claim > 0) {
      statements.push_back(claim_params(batch.claim));
      names.push_back("claim");
    }
    if (batch.count) {
      statements.emplace_back();
      names.push_back("counts");
    }
    std::vector<Result> results = pipeline(names, statements, [&](std::vector<std::string>& extra) {
      if (notify_jobs) extra.push_back(fmt::format("SELECT pg_notify('{}', '')", pg_schema::kNoticeJobs));
      // One notice per cancel: a payload holds at most 8000 bytes.
      for (const Update& u : batch.updates) {
        if (u.lease == 0 && u.state == State::kCancelled) {
          extra.push_back(fmt::format("SELECT pg_notify('{}', '{}')", pg_schema::kNoticeCancel, u.id));
        }
      }
      for (const auto& p : batch.pauses) {
        // The origin is "scheme://host:port" of a checked URL: no quote in it; the node name has none either.
        if (p.origin.find('\'') != std::string::npos) continue;
        extra.push_back(fmt::format("SELECT pg_notify('{}', '{} {} {}')", pg_schema::kNoticePause, options_.node,
                                    p.pause.count(), p.origin));
      }
    });
    std::size_t i = 0;
    for (const Update* u : sorted) {
      if (u->lease != 0 && PQntuples(results[i].get()) == 0) result.fenced.push_back(u->id);
      ++i;
    }
    result.submits.reserve(batch.submits.size());
    for (const NewJob& job : batch.submits) {
      PGresult* r = results[i++].get();
      if (PQntuples(r) == 0) {
        result.submits.push_back(find_after_race(job));
        continue;
      }
      result.submits.push_back(outcome_of(r));
    }
    if (batch.renew) {
      result.renewed = ids_of(results[i++].get());
      result.released = affected(results[i++].get());
    }
    if (batch.claim > 0) result.claimed = claimed_jobs(results[i++].get());
    if (batch.count) result.counts = counts_of(results[i++].get());
    return result;
  }

  std::vector<Job> next_queued(std::optional<Cursor> /*after*/, std::size_t /*limit*/) override {
    throw std::logic_error("next_queued() on a shared store: claim() instead");
  }

  std::vector<Job> claim(std::size_t limit) override {
    if (limit == 0) return {};
    ensure_connected();
    auto p = claim_params(limit);
    return claimed_jobs(run("claim", p).get());
  }

  std::vector<core::JobId> renew(const std::vector<Held>& held) override {
    if (held.empty()) return {};
    ensure_connected();
    auto p = renew_params(held);
    return ids_of(run("renew", p).get());
  }

  std::uint64_t release_expired() override {
    ensure_connected();
    auto p = release_params();
    return affected(run("release_expired", p).get());
  }

  std::uint64_t requeue_running() override {
    ensure_connected();
    Params p;
    p.add(options_.node).add(now_ms());
    return affected(run("release_node", p).get());
  }

  std::optional<Job> get(core::JobId id) override {
    ensure_connected();
    Params p;
    p.add(bound(id));
    auto jobs = read_jobs(run("get", p).get());
    if (jobs.empty()) return std::nullopt;
    return std::move(jobs.front());
  }

  std::vector<Job> list(const ListQuery& query) override {
    if (query.limit == 0) return {};
    ensure_connected();
    Params p;
    p.add(bound(query.after_id)).add(bound(query.limit)).add(bound(query.offset));
    if (query.state) p.add(std::string(to_string(*query.state)));
    return read_jobs(run(query.state ? "list_state" : "list", p).get());
  }

  Counts counts() override {
    ensure_connected();
    Params p;
    return counts_of(run("counts", p).get());
  }

  Counts counts_of(PGresult* r) const {
    Counts c;
    for (int row = 0; row < PQntuples(r); ++row) {
      const auto n = std::stoull(PQgetvalue(r, row, 1));
      c.of(parse_state(PQgetvalue(r, row, 0), name_)) = n;
    }
    return c;
  }

  std::uint64_t prune(const PruneLimits& limits) override {
    ensure_connected();
    std::uint64_t pruned = 0;
    if (limits.max_age.count() > 0) {
      const std::int64_t age_ms =
          limits.max_age.count() > kMaxSql / 1000 ? kMaxSql : limits.max_age.count() * 1000;
      pruned += delete_finished(now_ms() - age_ms, std::numeric_limits<std::uint64_t>::max());
    }
    if (limits.max_finished > 0) {
      const Counts c = counts();
      const std::uint64_t done = c.done + c.failed + c.cancelled;
      if (done > limits.max_finished) pruned += delete_finished(kMaxSql, done - limits.max_finished);
    }
    return pruned;
  }

  int notice_fd() override { return listen_conn_ ? PQsocket(listen_conn_.get()) : -1; }

  std::vector<Notice> take_notices() override {
    std::vector<Notice> out;
    if (!listen_conn_) return out;
    if (PQconsumeInput(listen_conn_.get()) == 0) {
      throw StoreError(
          fmt::format("{}: the notice connection failed: {}", name_, message(listen_conn_.get())));
    }
    for (int n = 0; n < 100000; ++n) {  // bounded: what arrived so far
      PGnotify* note = PQnotifies(listen_conn_.get());
      if (note == nullptr) break;
      if (std::strcmp(note->relname, pg_schema::kNoticeCancel) == 0) {
        Notice n;
        n.kind = Notice::Kind::kCancel;
        n.id = std::strtoull(note->extra, nullptr, 10);
        out.push_back(std::move(n));
      } else if (std::strcmp(note->relname, pg_schema::kNoticePause) == 0) {
        // "<node> <ms> <origin>"; this node's own pauses come back too and are skipped.
        std::string_view payload = note->extra;
        const auto a = payload.find(' ');
        const auto b = a == std::string_view::npos ? a : payload.find(' ', a + 1);
        if (b != std::string_view::npos && payload.substr(0, a) != options_.node) {
          Notice n;
          n.kind = Notice::Kind::kPause;
          const std::string ms(payload.substr(a + 1, b - a - 1));
          n.pause = std::chrono::milliseconds(std::strtoll(ms.c_str(), nullptr, 10));
          n.origin = std::string(payload.substr(b + 1));
          out.push_back(std::move(n));
        }
      } else {
        out.push_back(Notice{});  // kJobsQueued
      }
      PQfreemem(note);
    }
    return out;
  }

 private:
  // "postgresql://user:***@host/db", or the key=value string with its password hidden.
  static std::string describe_url(const std::string& url) {
    std::string shown = url.empty() ? "PostgreSQL (PG* environment)" : core::redact_password(url);
    return "database " + shown;
  }

  static std::string message(PGconn* c) {
    std::string m = PQerrorMessage(c);
    while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
    for (auto& ch : m) {
      if (ch == '\n') ch = ' ';
    }
    return m;
  }

  Conn connect() {
    // The URL goes to libpq as it is (URI or key=value); PG* variables fill what it leaves out.
    // A connect to an unreachable host gives up after 10 s unless the URL or PGCONNECT_TIMEOUT says otherwise
    // (libpq's default is to wait forever). The URL comes last, so that its own settings win.
    std::vector<const char*> keys, values;
    if (std::getenv("PGCONNECT_TIMEOUT") == nullptr) {
      keys.push_back("connect_timeout");
      values.push_back("10");
    }
    // A peer that vanished without a reset (a partition) is noticed in about 30 s, not after the kernel's
    // hours-long TCP timeouts (no effect on a unix socket).
    for (const auto& [k, v] : {std::pair{"keepalives_idle", "10"}, std::pair{"keepalives_interval", "5"},
                               std::pair{"keepalives_count", "3"}, std::pair{"tcp_user_timeout", "30000"}}) {
      keys.push_back(k);
      values.push_back(v);
    }
    if (!options_.url.empty()) {
      keys.push_back("dbname");
      values.push_back(options_.url.c_str());
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);
    Conn c(PQconnectdbParams(keys.data(), values.data(), /*expand_dbname=*/1));
    if (!c || PQstatus(c.get()) != CONNECTION_OK) {
      throw StoreError(fmt::format("{}: cannot connect: {}", name_, c ? message(c.get()) : "out of memory"));
    }
    // Errors and notices in English whatever the server's locale: they reach logs and clients as they are.
    exec(c.get(), "SET lc_messages TO 'C'", /*tolerate=*/true);
    return c;
  }

  // The server restarted or the network dropped: one reconnect attempt per call (the daemon retries its
  // commits with backoff; a read fails with the error and the socket answers "unavailable").
  void ensure_connected() {
    if (PQstatus(conn_.get()) == CONNECTION_OK) {
      if (!prepared_) prepare();
      return;
    }
    // One reconnect attempt a second at most: calls in between fail at once instead of each waiting for it.
    const auto now = std::chrono::steady_clock::now();
    if (now - last_reconnect_ < std::chrono::seconds(1)) {
      throw StoreError(fmt::format("{}: connection lost; reconnecting", name_));
    }
    last_reconnect_ = now;
    PQreset(conn_.get());
    if (PQstatus(conn_.get()) != CONNECTION_OK) {
      throw StoreError(fmt::format("{}: connection lost, reconnect failed: {}", name_, message(conn_.get())));
    }
    exec(conn_.get(), "SET lc_messages TO 'C'", /*tolerate=*/true);
    prepare();
  }

  void exec(PGconn* c, const std::string& sql, bool tolerate = false) {
    Result r(PQexec(c, sql.c_str()));
    const auto st = PQresultStatus(r.get());
    if (!tolerate && st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
      throw StoreError(fmt::format("{}: {}", name_, message(c)));
    }
  }

  // The schema: created when missing, refused when newer, in one transaction under the migration lock.
  void init_schema() {
    exec(conn_.get(), "BEGIN");
    try {
      exec(conn_.get(), fmt::format("SELECT pg_advisory_xact_lock({})", pg_schema::kMigrationLock));
      Result r(PQexec(conn_.get(),
                      "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = 'fetchd'), "
                      "to_regclass('fetchd.meta') IS NOT NULL"));
      if (PQresultStatus(r.get()) != PGRES_TUPLES_OK)
        throw StoreError(fmt::format("{}: {}", name_, message(conn_.get())));
      const bool has_schema = std::strcmp(PQgetvalue(r.get(), 0, 0), "0") != 0;
      const bool has_meta = std::strcmp(PQgetvalue(r.get(), 0, 1), "t") == 0;
      if (has_schema && !has_meta) {
        throw StoreError(fmt::format(
            "{}: not a fetchd job store: the schema \"fetchd\" exists but has no fetchd.meta table", name_));
      }
      if (!has_schema) {
        exec(conn_.get(), "CREATE SCHEMA fetchd");
        exec(conn_.get(), pg_schema::kCreateV1);
      }
      Result v(PQexec(conn_.get(), "SELECT value FROM fetchd.meta WHERE name = 'schema_version'"));
      if (PQresultStatus(v.get()) != PGRES_TUPLES_OK || PQntuples(v.get()) != 1) {
        throw StoreError(
            fmt::format("{}: not a fetchd job store: fetchd.meta holds no schema_version", name_));
      }
      const std::int64_t version = std::strtoll(PQgetvalue(v.get(), 0, 0), nullptr, 10);
      if (version > pg_schema::kVersion) {
        throw StoreError(
            fmt::format("{}: the job store has schema version {}, newer than this fetchd supports ({}); it "
                        "was written by "
                        "a newer fetchd",
                        name_, version, pg_schema::kVersion));
      }
      if (version < 1) {
        throw StoreError(fmt::format("{}: the job store has schema version {}, which this fetchd cannot read",
                                     name_, version));
      }
      exec(conn_.get(), "COMMIT");
    } catch (...) {
      Result rolled_back(PQexec(conn_.get(), "ROLLBACK"));
      throw;
    }
  }

  void prepare() {
    prepared_ = false;
    for (const auto& s : kStatements) {
      Result r(PQprepare(conn_.get(), s.name, s.sql, 0, nullptr));
      if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
        throw StoreError(fmt::format("{}: preparing {}: {}", name_, s.name, message(conn_.get())));
      }
    }
    prepared_ = true;
  }

  void take_node_lock() {
    Result r(PQexecParams(listen_conn_.get(), "SELECT pg_try_advisory_lock($1, hashtext($2))", 2, nullptr,
                          Params().add(std::int64_t{pg_schema::kNodeLockSpace}).add(options_.node).pointers(),
                          nullptr, nullptr, 0));
    // Params() is a temporary: its pointers stay valid until the end of the full expression above.
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK)
      throw StoreError(fmt::format("{}: {}", name_, message(listen_conn_.get())));
    if (std::strcmp(PQgetvalue(r.get(), 0, 0), "t") != 0) {
      throw StoreError(fmt::format(
          "{}: another fetchd node named \"{}\" is connected to this database (state.node must be unique)",
          name_, options_.node));
    }
  }

  Result run(const char* name, Params& p) {
    Result r(PQexecPrepared(conn_.get(), name, p.size(), p.pointers(), nullptr, nullptr, 0));
    const auto st = PQresultStatus(r.get());
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
      throw StoreError(fmt::format("{}: {}: {}", name_, name, message(conn_.get())));
    }
    return r;
  }

  Params claim_params(std::size_t limit) const {
    Params p;
    p.add(options_.node).add(bound(limit)).add(static_cast<std::int64_t>(options_.lease.count()));
    return p;
  }
  Params renew_params(const std::vector<Held>& held) const {
    std::string tokens = "{";
    for (const auto& h : held) tokens += fmt::format("{}{}", tokens.size() > 1 ? "," : "", h.lease);
    tokens += "}";
    Params p;
    p.add(tokens).add(static_cast<std::int64_t>(options_.lease.count())).add(options_.node);
    return p;
  }
  static Params release_params() {
    Params p;
    p.add(now_ms());
    return p;
  }
  // In run order (RETURNING has none).
  std::vector<Job> claimed_jobs(PGresult* r) {
    auto jobs = read_jobs(r);
    std::sort(jobs.begin(), jobs.end(), [](const Job& a, const Job& b) {
      return a.priority != b.priority ? a.priority > b.priority : a.id < b.id;
    });
    return jobs;
  }
  static std::vector<core::JobId> ids_of(PGresult* r) {
    std::vector<core::JobId> ids;
    for (int row = 0; row < PQntuples(r); ++row) ids.push_back(std::stoull(PQgetvalue(r, row, 0)));
    return ids;
  }

  static std::uint64_t affected(PGresult* r) {
    const char* n = PQcmdTuples(r);
    return n && *n ? std::stoull(n) : 0;
  }

  // Sends the prepared statements, then the extra plain ones, in one pipeline ended by one sync: one implicit
  // transaction (libpq: an error rolls back what ran and skips the rest). Returns one result per statement.
  template <typename Extra>
  std::vector<Result> pipeline(const std::vector<const char*>& names, std::vector<Params>& params,
                               Extra&& extra_of) {
    std::vector<std::string> extra;
    extra_of(extra);
    PGconn* c = conn_.get();
    if (PQenterPipelineMode(c) != 1) throw StoreError(fmt::format("{}: pipeline: {}", name_, message(c)));
    std::vector<Result> results;
    results.reserve(names.size());
    std::string failure;
    const std::size_t total = names.size() + extra.size();
    std::size_t sent = 0;
    // A statement that could not be sent (the server did not refuse it): the transaction must not be committed
    // by a sync; dropping the connection rolls it back.
    bool cut = false;
    const auto fail_connection = [&](const char* what) {
      failure = fmt::format("{}: {}", what, message(c));
      cut = true;
    };
    // Each chunk: send, ask the server to flush, read its results (the transaction stays open across chunks).
    while (sent < total && failure.empty()) {
      const std::size_t end = std::min(total, sent + kPipelineChunk);
      for (std::size_t k = sent; k < end; ++k) {
        int ok = k < names.size() ? PQsendQueryPrepared(c, names[k], params[k].size(), params[k].pointers(),
                                                        nullptr, nullptr, 0)
                                  : PQsendQueryParams(c, extra[k - names.size()].c_str(), 0, nullptr, nullptr,
                                                      nullptr, nullptr, 0);
        if (ok != 1) {
          fail_connection("sending");
          break;
        }
      }
      if (!failure.empty()) break;
      if (end == total) {
        if (PQpipelineSync(c) != 1) fail_connection("sync");
      } else if (PQsendFlushRequest(c) != 1 || PQflush(c) != 0) {
        fail_connection("flush");
      }
      if (!failure.empty()) break;
      for (std::size_t k = sent; k < end; ++k) {
        Result r(PQgetResult(c));
        if (!r) {
          fail_connection("reading");
          break;
        }
        const auto st = PQresultStatus(r.get());
        if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && failure.empty()) {
          if (st == PGRES_PIPELINE_ABORTED) {
            failure = "aborted";
          } else {
            const char* what = PQresultErrorMessage(r.get());
            std::string m = what ? what : "";
            while (!m.empty() && m.back() == '\n') m.pop_back();
            failure = k < names.size() && std::strcmp(names[k], "update") == 0
                          ? fmt::format("{} (update of job {})", m, params[k].value(0))
                          : m;
          }
        }
        Result end_of_query(PQgetResult(c));  // NULL: the end of this statement's results
        if (k < names.size()) results.push_back(std::move(r));
      }
      sent = end;
    }
    // Read up to the sync (skipping aborted statements' results) so the connection is idle again.
    if (cut) {
      PQreset(c);  // leaves pipeline mode too; prepare() again at the next call
      prepared_ = false;
    } else {
      if (sent < total) PQpipelineSync(c);
      for (int guard = 0; guard < 1000000; ++guard) {
        Result r(PQgetResult(c));
        if (!r) {
          if (PQstatus(c) != CONNECTION_OK) break;
          continue;
        }
        if (PQresultStatus(r.get()) == PGRES_PIPELINE_SYNC) break;
      }
      if (PQexitPipelineMode(c) != 1) {
        failure = fmt::format("leaving pipeline mode: {}", message(c));
        PQreset(c);
        prepared_ = false;
      }
    }
    if (!failure.empty())
      throw StoreError(fmt::format("{}: commit failed, nothing of it stored: {}", name_, failure));
    return results;
  }

  // A submit whose statement saw no row (another node's commit raced it): look the key, then the dest, up
  // again.
  SubmitOutcome find_after_race(const NewJob& job) {
    Params p;
    p.add(job.key.empty() ? std::nullopt : std::optional<std::string>(job.key)).add(job.dest);
    auto r = run("find", p);
    if (PQntuples(r.get()) == 0) {
      throw StoreError(
          fmt::format("{}: submit of {}: no outcome (a concurrent commit was rolled back)", name_, job.dest));
    }
    return outcome_of(r.get());
  }

  SubmitOutcome outcome_of(PGresult* r) {
    int best = 0;
    for (int row = 1; row < PQntuples(r); ++row) {
      if (std::atoi(PQgetvalue(r, row, 0)) < std::atoi(PQgetvalue(r, best, 0))) best = row;
    }
    static constexpr SubmitOutcome::Kind kKinds[] = {
        SubmitOutcome::Kind::kCreated, SubmitOutcome::Kind::kExisting, SubmitOutcome::Kind::kConflict};
    return {kKinds[std::clamp(std::atoi(PQgetvalue(r, best, 0)), 0, 2)], std::stoull(PQgetvalue(r, best, 1)),
            parse_state(PQgetvalue(r, best, 2), name_)};
  }

  std::uint64_t delete_finished(std::int64_t before_ms, std::uint64_t max) {
    std::uint64_t deleted = 0;
    while (deleted < max) {  // bounded: every round deletes a full chunk or it is the last
      const std::uint64_t chunk = std::min(kPruneChunk, max - deleted);
      Params p;
      p.add(before_ms).add(bound(chunk));
      const auto n = affected(run("prune", p).get());
      deleted += n;
      if (n < chunk) break;
    }
    return deleted;
  }

  std::vector<Job> read_jobs(PGresult* r) {
    std::vector<Job> jobs;
    const int rows = PQntuples(r);
    jobs.reserve(static_cast<std::size_t>(rows));
    for (int row = 0; row < rows; ++row) {
      const auto text = [&](int col) { return std::string(PQgetvalue(r, row, col)); };
      const auto null = [&](int col) { return PQgetisnull(r, row, col) != 0; };
      Job j;
      j.id = std::stoull(text(0));
      if (!null(1)) j.key = text(1);
      j.url = text(2);
      j.dest = text(3);
      if (!null(4)) j.sha256 = text(4);
      if (!null(5)) j.size = static_cast<std::uint64_t>(std::stoll(text(5)));
      if (!null(6)) j.headers = decode_headers(text(6));
      j.priority = std::stoi(text(7));
      j.state = parse_state(PQgetvalue(r, row, 8), name_);
      j.attempts = std::stoi(text(9));
      j.error = text(10);
      j.bytes = static_cast<std::uint64_t>(std::stoll(text(11)));
      j.created_ms = std::stoll(text(12));
      j.updated_ms = std::stoll(text(13));
      j.finished_ms = std::stoll(text(14));
      if (!null(15)) {
        std::string why;
        auto o = core::job_options_from_json(nlohmann::json::parse(text(15), nullptr, false), &why);
        if (!o)
          throw StoreError(
              fmt::format("{}: corrupt job store: job {} has invalid options: {}", name_, j.id, why));
        j.options = std::move(*o);
      }
      auto errors = nlohmann::json::parse(text(16), nullptr, false);
      if (!errors.is_array())
        throw StoreError(fmt::format("{}: corrupt job store: job {} has invalid errors", name_, j.id));
      for (const auto& e : errors) {
        if (e.is_string()) j.errors.push_back(e.get<std::string>());
      }
      j.skipped = text(17) == "t";
      if (!null(18)) j.lease = std::stoull(text(18));
      if (!null(19)) j.published_by = text(19);
      auto claimers = nlohmann::json::parse(text(20), nullptr, false);
      if (claimers.is_array()) {
        for (const auto& c : claimers) {
          if (c.is_string()) j.claimers.push_back(c.get<std::string>());
        }
      }
      jobs.push_back(std::move(j));
    }
    return jobs;
  }

  PostgresOptions options_;
  std::string name_;
  Conn conn_;
  std::chrono::steady_clock::time_point last_reconnect_{};
  bool prepared_ = false;  // false after a reset: the statements are prepared again before the next use
  Conn listen_conn_;  // LISTEN only, so that its descriptor turns readable exactly when a notice came
};

}  // namespace

std::unique_ptr<JobStore> open_postgres_store(const PostgresOptions& options) {
  return std::make_unique<PostgresJobStore>(options);
}

}  // namespace fetchd::store
