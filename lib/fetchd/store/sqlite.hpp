// SPDX-License-Identifier: Apache-2.0
#pragma once
// Thin move-only owners of sqlite3* and sqlite3_stmt*: the only place in fetchd that holds SQLite handles.
// Every failure becomes a StoreError whose message names the database file and carries SQLite's own message.
// Thread: a Database and its Statements are used by one thread at a time (they are opened
// SQLITE_OPEN_NOMUTEX).

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

// STRICT tables and SQLITE_OPEN_EXRESCODE need 3.37 (Debian 12 ships 3.40).
static_assert(SQLITE_VERSION_NUMBER >= 3037000, "fetchd's job store needs SQLite >= 3.37");

namespace fetchd::store::sqlite {

// A prepared statement. Use it through use(), which resets it and clears its bindings at scope exit, so that
// a statement never holds a read snapshot open (that would stop WAL checkpoints) or keeps stale parameters.
class Statement {
 public:
  Statement() = default;
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  class Scope {
   public:
    explicit Scope(Statement& s) : s_(&s) {}
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
    ~Scope() { s_->reset(); }

   private:
    Statement* s_;
  };
  [[nodiscard]] Scope use() { return Scope(*this); }

  // Parameters are 1-based. Text and blobs are copied by SQLite (SQLITE_TRANSIENT).
  void bind(int index, std::int64_t value);
  void bind(int index, std::string_view text);
  void bind_blob(int index, std::string_view bytes);
  void bind_null(int index);

  // true: a row is ready; false: the statement is done. Throws StoreError.
  bool step();
  // step() for a statement that returns no rows (or whose rows do not matter).
  void run();

  bool is_null(int column) const;
  std::int64_t column_int64(int column) const;
  std::string column_text(int column) const;  // "" for NULL

  // Back to the start, without bindings. Its return value only repeats the error step() already threw.
  void reset() noexcept;

 private:
  friend class Database;
  Statement(sqlite3_stmt* stmt, std::shared_ptr<const std::string> db_name)
      : stmt_(stmt), db_name_(std::move(db_name)) {}
  [[noreturn]] void fail(int rc, std::string_view what) const;
  void check_bind(int rc, int index) const;

  sqlite3_stmt* stmt_ = nullptr;
  std::shared_ptr<const std::string> db_name_;  // for error messages; shared so that a Database may move
};

class Database {
 public:
  // sqlite3_open_v2(path, flags | SQLITE_OPEN_EXRESCODE). Throws StoreError naming `path`.
  static Database open(const std::filesystem::path& path, int flags);

  Database() = default;
  Database(Database&& other) noexcept;
  Database& operator=(Database&& other) noexcept;
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;
  ~Database();

  // SQLITE_PREPARE_PERSISTENT: the statement is cached for the lifetime of the connection.
  Statement prepare(std::string_view sql);
  // Runs one or more statements that return nothing of interest (DDL, PRAGMA assignments). `what` names the
  // step in the error message; the SQL text does when it is empty.
  void exec(const char* sql, std::string_view what = {});
  // The first column of the first row of `sql` (e.g. a PRAGMA query); throws StoreError "<file>: <what>: ..."
  // when it fails or returns no row.
  std::int64_t query_int(const char* sql, std::string_view what);
  std::string query_text(const char* sql, std::string_view what);

  void set_busy_timeout(int ms);
  std::int64_t last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }
  std::int64_t changes() const { return sqlite3_changes64(db_); }
  bool in_transaction() const { return db_ != nullptr && sqlite3_get_autocommit(db_) == 0; }

  // Throws StoreError "<file>: <what>: <SQLite's message>".
  [[noreturn]] void fail(int rc, std::string_view what) const;
  const std::string& name() const { return *name_; }
  sqlite3* get() const { return db_; }

 private:
  Database(sqlite3* db, std::shared_ptr<const std::string> name) : db_(db), name_(std::move(name)) {}
  void close() noexcept;
  template <typename Read>
  auto query_one(const char* sql, std::string_view what, Read read)
      -> decltype(read(std::declval<Statement&>()));

  sqlite3* db_ = nullptr;
  std::shared_ptr<const std::string> name_;
};

}  // namespace fetchd::store::sqlite
