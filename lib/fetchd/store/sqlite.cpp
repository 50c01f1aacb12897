// SPDX-License-Identifier: Apache-2.0
#include "fetchd/store/sqlite.hpp"

#include <fmt/format.h>

#include <cassert>
#include <limits>
#include <utility>

#include "fetchd/store/job_store.hpp"

namespace fetchd::store::sqlite {
namespace {

// "<file>: <what>: <SQLite's message> (<generic text of the code>, code <extended code>)". The message of the
// connection is the one of the failing call (sqlite3_errmsg), which names e.g. the violated constraint.
[[noreturn]] void throw_error(const std::string& name, std::string_view what, sqlite3* db, int rc) {
  const std::string_view detail = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  const std::string_view generic = sqlite3_errstr(rc);
  if (detail == generic) throw StoreError(fmt::format("{}: {}: {} (code {})", name, what, detail, rc));
  throw StoreError(fmt::format("{}: {}: {} ({}, code {})", name, what, detail, generic, rc));
}

// The first words of a statement, enough to tell which one failed.
std::string describe(sqlite3_stmt* stmt) {
  constexpr std::size_t kMax = 48;
  std::string_view sql = stmt != nullptr && sqlite3_sql(stmt) != nullptr ? sqlite3_sql(stmt) : "";
  if (sql.size() <= kMax) return std::string(sql);
  return std::string(sql.substr(0, kMax)) + "...";
}

int to_int_size(std::size_t n, const std::string& name) {
  if (n > static_cast<std::size_t>(std::numeric_limits<int>::max()))
    throw StoreError(fmt::format("{}: value of {} bytes is too large for SQLite", name, n));
  return static_cast<int>(n);
}

}  // namespace

// ---- Statement

Statement::Statement(Statement&& other) noexcept
    : stmt_(std::exchange(other.stmt_, nullptr)), db_name_(std::move(other.db_name_)) {}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(stmt_);  // its return value repeats the last step() error, which was thrown then
    stmt_ = std::exchange(other.stmt_, nullptr);
    db_name_ = std::move(other.db_name_);
  }
  return *this;
}

Statement::~Statement() {
  sqlite3_finalize(stmt_);
}

void Statement::fail(int rc, std::string_view what) const {
  throw_error(*db_name_, what, sqlite3_db_handle(stmt_), rc);
}

void Statement::check_bind(int rc, int index) const {
  if (rc != SQLITE_OK) fail(rc, fmt::format("binding parameter {} of \"{}\"", index, describe(stmt_)));
}

void Statement::bind(int index, std::int64_t value) {
  check_bind(sqlite3_bind_int64(stmt_, index, value), index);
}

void Statement::bind(int index, std::string_view text) {
  check_bind(
      sqlite3_bind_text(stmt_, index, text.data(), to_int_size(text.size(), *db_name_), SQLITE_TRANSIENT),
      index);
}

void Statement::bind_blob(int index, std::string_view bytes) {
  check_bind(
      sqlite3_bind_blob(stmt_, index, bytes.data(), to_int_size(bytes.size(), *db_name_), SQLITE_TRANSIENT),
      index);
}

void Statement::bind_null(int index) {
  check_bind(sqlite3_bind_null(stmt_, index), index);
}

bool Statement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  fail(rc, fmt::format("\"{}\"", describe(stmt_)));
}

void Statement::run() {
  while (step()) {
  }
}

bool Statement::is_null(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

std::int64_t Statement::column_int64(int column) const {
  return sqlite3_column_int64(stmt_, column);
}

std::string Statement::column_text(int column) const {
  // Text and blob columns alike: the bytes exactly as stored (SQLite does not validate UTF-8).
  const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt_, column));
  const int n = sqlite3_column_bytes(stmt_, column);
  return p != nullptr ? std::string(p, static_cast<std::size_t>(n)) : std::string();
}

void Statement::reset() noexcept {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

// ---- Database

Database Database::open(const std::filesystem::path& path, int flags) {
  // Before SQLite's first use: no memory statistics. With them every allocation of every connection takes one
  // process-wide mutex (sqlite3_status), which the daemon's two connections, on two threads, then share. fetchd
  // never reads the statistics. Too late (SQLITE_MISUSE) when something else initialised SQLite first: harmless.
  static const bool configured = [] {
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    return true;
  }();
  (void)configured;
  auto name = std::make_shared<const std::string>(path.string());
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(name->c_str(), &db, flags | SQLITE_OPEN_EXRESCODE, nullptr);
  // The handle exists even when opening failed (unless memory ran out); own it at once so it is closed.
  Database owner(db, name);
  if (rc != SQLITE_OK) throw_error(*name, "cannot open", db, rc);
  return owner;
}

Database::Database(Database&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)), name_(std::move(other.name_)) {}

Database& Database::operator=(Database&& other) noexcept {
  if (this != &other) {
    close();
    db_ = std::exchange(other.db_, nullptr);
    name_ = std::move(other.name_);
  }
  return *this;
}

Database::~Database() {
  close();
}

void Database::close() noexcept {
  // close_v2 never fails with open statements: it defers the release until the last one is finalized, so the
  // order of member destruction does not matter. An open transaction is rolled back.
  [[maybe_unused]] const int rc = sqlite3_close_v2(std::exchange(db_, nullptr));
  assert(rc == SQLITE_OK);
}

void Database::fail(int rc, std::string_view what) const {
  throw_error(*name_, what, db_, rc);
}

Statement Database::prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v3(db_, sql.data(), to_int_size(sql.size(), *name_),
                                    SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  Statement owner(stmt, name_);
  if (rc != SQLITE_OK) {
    constexpr std::size_t kMax = 60;
    fail(rc, fmt::format("preparing \"{}{}\"", sql.substr(0, kMax), sql.size() > kMax ? "..." : ""));
  }
  return owner;
}

void Database::exec(const char* sql, std::string_view what) {
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) fail(rc, what.empty() ? fmt::format("\"{}\"", sql) : std::string(what));
}

template <typename Read>
auto Database::query_one(const char* sql, std::string_view what, Read read)
    -> decltype(read(std::declval<Statement&>())) {
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v2(db_, sql, -1, &stmt, nullptr);
  Statement s(stmt, name_);
  if (rc != SQLITE_OK) fail(rc, what);
  auto scope = s.use();
  const int step_rc = sqlite3_step(stmt);
  if (step_rc == SQLITE_DONE)
    throw StoreError(fmt::format("{}: {}: \"{}\" returned no row", *name_, what, sql));
  if (step_rc != SQLITE_ROW) fail(step_rc, what);
  return read(s);
}

std::int64_t Database::query_int(const char* sql, std::string_view what) {
  return query_one(sql, what, [](Statement& s) { return s.column_int64(0); });
}

std::string Database::query_text(const char* sql, std::string_view what) {
  return query_one(sql, what, [](Statement& s) { return s.column_text(0); });
}

void Database::set_busy_timeout(int ms) {
  const int rc = sqlite3_busy_timeout(db_, ms);
  if (rc != SQLITE_OK) fail(rc, "setting the busy timeout");
}

}  // namespace fetchd::store::sqlite
