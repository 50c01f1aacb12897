// SPDX-License-Identifier: Apache-2.0
// Opening the SQLite job store: what it creates, what it refuses (and that it refuses loudly, naming the
// file, without altering it), and that its file descriptors do not leak into spawned workers.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <fmt/format.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "fetchd/store/sqlite_schema.hpp"
#include "store_test_util.hpp"

namespace fetchd::store {
namespace {

namespace fs = std::filesystem;
using testutil::new_job;
using testutil::raw;
using testutil::submits;

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

unsigned mode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777U;
}

// Expects open_sqlite_store(path) to throw a StoreError naming the file and containing `reason`.
void expect_refused(const fs::path& path, const std::string& reason) {
  try {
    open_sqlite_store(path);
    ADD_FAILURE() << path << " was opened";
  } catch (const StoreError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path.string()), std::string::npos) << what;
    EXPECT_NE(what.find(reason), std::string::npos) << what;
  }
}

// A store with some jobs, closed again; its file is whole (the WAL was checkpointed at close).
fs::path make_store(const fetchd::testing::TempDir& dir, int jobs) {
  const fs::path path = dir / "jobs.db";
  auto store = open_sqlite_store(path);
  Batch b;
  for (int i = 0; i < jobs; ++i)
    b.submits.push_back(new_job("j" + std::to_string(i), "client:" + std::to_string(i)));
  store->commit(b);
  return path;
}

TEST(SqliteOpen, CreatesAPrivateWalDatabaseThatNamesItself) {
  fetchd::testing::TempDir dir;
  const fs::path path = dir / "jobs.db";
  const mode_t old_umask = ::umask(0);  // the 0600 must not depend on the umask
  auto store = open_sqlite_store(path);
  ::umask(old_umask);
  store->commit(submits({new_job("a")}));  // the -wal and -shm files exist while the store is open

  for (const char* suffix : {"", "-wal", "-shm"}) {
    const fs::path p = path.string() + suffix;
    ASSERT_TRUE(fs::exists(p)) << p;
    EXPECT_EQ(mode_of(p), 0600U) << p;
  }
  auto db = raw(path);
  EXPECT_EQ(db.query_text("PRAGMA journal_mode", "q"), "wal");
  EXPECT_EQ(db.query_int("PRAGMA application_id", "q"), schema::kApplicationId);
  EXPECT_EQ(db.query_int("PRAGMA user_version", "q"), schema::kVersion);
}

TEST(SqliteOpen, AnExistingEmptyFileBecomesAStore) {
  fetchd::testing::TempDir dir;
  const fs::path path = dir.write("jobs.db", "");
  auto store = open_sqlite_store(path);
  EXPECT_EQ(store->counts().queued, 0U);
  store->commit(submits({new_job("a")}));
  EXPECT_EQ(store->counts().queued, 1U);
}

TEST(SqliteOpen, BothDurabilitySettingsOpen) {
  fetchd::testing::TempDir dir;
  const fs::path path = dir / "jobs.db";
  const std::array<Synchronous, 3> settings = {Synchronous::kFull, Synchronous::kNormal, Synchronous::kFull};
  for (std::size_t i = 0; i < settings.size(); ++i) {
    auto store = open_sqlite_store(path, SqliteOptions{settings[i]});
    store->commit(submits({new_job("a" + std::to_string(i))}));
  }
  EXPECT_EQ(open_sqlite_store(path)->counts().queued, 3U);
}

// Worker processes are spawned from the daemon: none of the store's descriptors may survive an exec.
TEST(SqliteOpen, EveryDescriptorIsCloseOnExec) {
  fetchd::testing::TempDir dir;
  const fs::path path = dir / "jobs.db";
  auto store = open_sqlite_store(path);
  store->commit(submits({new_job("a")}));
  store->next_queued(std::nullopt, 10);

  int found = 0;
  for (const auto& entry : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const fs::path target = fs::read_symlink(entry.path(), ec);
    if (ec || target.string().rfind(dir.path().string(), 0) != 0) continue;
    const int fd = std::stoi(entry.path().filename().string());
    const int flags = ::fcntl(fd, F_GETFD);
    ASSERT_NE(flags, -1) << target;
    EXPECT_TRUE(flags & FD_CLOEXEC) << target << " (fd " << fd << ") is inherited by exec";
    ++found;
  }
  EXPECT_GE(found, 3) << "expected the database, -wal and -shm files open";
}

TEST(SqliteOpen, GarbageIsRefused) {
  fetchd::testing::TempDir dir;
  std::string garbage(8192, '\0');
  for (std::size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<char>((i * 2654435761U) >> 13);
  const fs::path path = dir.write("jobs.db", garbage);
  expect_refused(path, "cannot use it as a job store: file is not a database");
  EXPECT_EQ(read_all(path), garbage);  // untouched
}

TEST(SqliteOpen, ATextFileIsRefused) {
  fetchd::testing::TempDir dir;
  const fs::path path = dir.write("jobs.db", "jobs:\n  - url: http://example.com/a\n    dest: a\n");
  expect_refused(path, "file is not a database");
}

TEST(SqliteOpen, ATruncatedStoreIsRefused) {
  fetchd::testing::TempDir dir;
  const fs::path path = make_store(dir, 2000);
  const auto size = fs::file_size(path);
  ASSERT_GT(size, 8U * 4096);
  fs::resize_file(path, size / 2);
  expect_refused(path, "cannot use it as a job store: database disk image is malformed");
  EXPECT_EQ(fs::file_size(path), size / 2);
  EXPECT_FALSE(fs::exists(path.string() + "-wal"));
}

TEST(SqliteOpen, AStoreCutInsideItsHeaderIsRefused) {
  fetchd::testing::TempDir dir;
  const fs::path path = make_store(dir, 10);
  fs::resize_file(path, 60);
  expect_refused(path, "cannot use it as a job store: database disk image is malformed");
}

TEST(SqliteOpen, AnotherApplicationsDatabaseIsRefusedAndLeftAlone) {
  fetchd::testing::TempDir dir;
  const fs::path path = dir / "other.db";
  {
    auto db = sqlite::Database::open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    db.exec(
        "PRAGMA application_id = 1196444487; -- GeoPackage\n"
        " CREATE TABLE t (x); INSERT INTO t VALUES (1)");
  }
  const std::string before = read_all(path);
  expect_refused(path, "another application (application_id 0x47504b47");
  EXPECT_EQ(read_all(path), before);
  EXPECT_EQ(raw(path).query_text("PRAGMA journal_mode", "q"), "delete");  // not switched to WAL
}

TEST(SqliteOpen, ADatabaseWithoutApplicationIdButWithTablesIsRefused) {
  fetchd::testing::TempDir dir;
  const fs::path path = dir / "other.db";
  {
    auto db = sqlite::Database::open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    db.exec("CREATE TABLE jobs (id INTEGER PRIMARY KEY, url TEXT)");
  }
  const std::string before = read_all(path);
  expect_refused(path, "not a fetchd job store");
  EXPECT_EQ(read_all(path), before);
}

TEST(SqliteOpen, ANewerSchemaIsRefused) {
  fetchd::testing::TempDir dir;
  const fs::path path = make_store(dir, 3);
  raw(path).exec("PRAGMA user_version = 99");
  expect_refused(path, "schema version 99, newer than this fetchd supports (4)");
  EXPECT_EQ(raw(path).query_int("SELECT count(*) FROM jobs", "q"), 3);  // never reset
}

TEST(SqliteOpen, AnOlderUnknownSchemaIsRefused) {
  fetchd::testing::TempDir dir;
  const fs::path path = make_store(dir, 1);
  raw(path).exec("PRAGMA user_version = 0");
  expect_refused(path, "schema version 0");
}

TEST(SqliteOpen, AVersion1StoreIsMigratedAndKeepsItsJobs) {
  fetchd::testing::TempDir dir;
  const fs::path path = dir / "jobs.db";
  {
    // A store as fetchd with schema 1 made it: its DDL, its pragmas, a job with a header and an error.
    ::close(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    auto db = raw(path);
    db.exec("BEGIN IMMEDIATE");
    db.exec(schema::kCreateV1);
    db.exec(fmt::format("PRAGMA application_id = {}; PRAGMA user_version = 1", schema::kApplicationId).c_str());
    db.exec(
        "INSERT INTO jobs (key, url, dest, sha256, size, header_count, priority, state, attempts, error, bytes, "
        "created_ms, updated_ms) VALUES ('client:k', 'http://h/a', '/out/a', NULL, 42, 1, 3, 'queued', 2, "
        "'HTTP 503', 7, 1000, 2000)");
    db.exec("INSERT INTO job_headers (job_id, pos, name, value) VALUES (1, 0, 'X-Token', X'76')");
    db.exec("INSERT INTO jobs (url, dest, priority, state, created_ms, updated_ms, finished_ms) VALUES "
            "('http://h/b', '/out/b', 0, 'done', 1000, 2000, 2000)");
    db.exec("COMMIT");
  }
  {
    auto store = open_sqlite_store(path);
    const auto a = store->get(1);
    ASSERT_TRUE(a);
    EXPECT_EQ(a->key, "client:k");
    EXPECT_EQ(a->url, "http://h/a");
    EXPECT_EQ(a->size, 42U);
    EXPECT_EQ(a->headers, (core::Headers{{"X-Token", "v"}}));
    EXPECT_EQ(a->priority, 3);
    EXPECT_EQ(a->attempts, 2);
    EXPECT_EQ(a->error, "HTTP 503");
    EXPECT_TRUE(a->options.empty());
    EXPECT_TRUE(a->errors.empty());
    EXPECT_EQ(store->counts().queued, 1U);
    EXPECT_EQ(store->counts().done, 1U);
    EXPECT_EQ(store->next_queued(std::nullopt, 10).size(), 1U);
    // The new columns work on the migrated file.
    Update u{1, State::kQueued, 3, "HTTP 502", 0, std::string("HTTP 502")};
    store->commit(testutil::updates({u}));
    NewJob c = new_job("c");
    c.options.retry.retries = 1;
    const auto r = store->commit(submits({c}));
    EXPECT_EQ(r.submits.at(0).id, 3U);
    EXPECT_EQ(store->get(1)->errors, std::vector<std::string>{"HTTP 502"});
    EXPECT_EQ(store->get(3)->options, c.options);
  }
  EXPECT_EQ(raw(path).query_int("PRAGMA user_version", "q"), schema::kVersion);
  EXPECT_EQ(open_sqlite_store(path)->get(2)->state, State::kDone);  // and opens again as it is
}

TEST(SqliteOpen, AVersion2StoreIsMigratedAndKeepsItsJobs) {
  fetchd::testing::TempDir dir;
  const fs::path path = dir / "jobs.db";
  {
    // A store as fetchd with schema 2 made it: the v1 DDL and the 1 -> 2 migration, a queued job with its own
    // options and errors, and a done one.
    ::close(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    auto db = raw(path);
    db.exec("BEGIN IMMEDIATE");
    db.exec(schema::kCreateV1);
    db.exec(schema::kMigrations[0]);
    db.exec(
        fmt::format("PRAGMA application_id = {}; PRAGMA user_version = 2", schema::kApplicationId).c_str());
    db.exec(
        "INSERT INTO jobs (key, url, dest, size, header_count, priority, state, attempts, error, bytes, "
        "created_ms, updated_ms, options, errors) VALUES ('client:k', 'http://h/a', '/out/a', 42, 0, 3, "
        "'queued', 2, 'HTTP 503', 7, 1000, 2000, '{\"retries\":5}', '[\"HTTP 502\",\"HTTP 503\"]')");
    db.exec(
        "INSERT INTO jobs (url, dest, priority, state, bytes, created_ms, updated_ms, finished_ms) VALUES "
        "('http://h/b', '/out/b', 0, 'done', 9, 1000, 2000, 2000)");
    db.exec("COMMIT");
  }
  {
    auto store = open_sqlite_store(path);
    const auto a = store->get(1);
    ASSERT_TRUE(a);
    EXPECT_EQ(a->key, "client:k");
    EXPECT_EQ(a->size, 42U);
    EXPECT_EQ(a->priority, 3);
    EXPECT_EQ(a->attempts, 2);
    EXPECT_EQ(a->error, "HTTP 503");
    EXPECT_EQ(a->options.retry.retries, 5);
    EXPECT_EQ(a->errors, (std::vector<std::string>{"HTTP 502", "HTTP 503"}));
    EXPECT_FALSE(a->skipped);
    const auto b = store->get(2);
    ASSERT_TRUE(b);
    EXPECT_EQ(b->state, State::kDone);
    EXPECT_EQ(b->bytes, 9U);
    EXPECT_FALSE(b->skipped) << "done before v3: read as downloaded";
    EXPECT_EQ(store->counts().queued, 1U);
    EXPECT_EQ(store->counts().done, 1U);
    EXPECT_EQ(store->next_queued(std::nullopt, 10).size(), 1U);
    // The new column works on the migrated file.
    Update u{1, State::kDone, 3, "", 0, std::nullopt, /*skipped=*/true};
    store->commit(testutil::updates({u}));
    EXPECT_TRUE(store->get(1)->skipped);
    EXPECT_EQ(store->get(1)->errors, (std::vector<std::string>{"HTTP 502", "HTTP 503"}));
  }
  EXPECT_EQ(raw(path).query_int("PRAGMA user_version", "q"), schema::kVersion);
  auto again = open_sqlite_store(path);  // and opens again as it is
  EXPECT_TRUE(again->get(1)->skipped);
  EXPECT_FALSE(again->get(2)->skipped);
}

TEST(SqliteOpen, ADirectoryOrAMissingDirectoryIsRefused) {
  fetchd::testing::TempDir dir;
  fs::create_directory(dir / "d.db");
  expect_refused(dir / "d.db", "Is a directory");
  expect_refused(dir / "missing" / "jobs.db", "No such file or directory");
}

// Root reads any file, and CI runs as root: then the open is tried in a child that dropped to nobody, so the
// test runs everywhere instead of skipping. The child reports by exit code (gtest lives in the parent).
TEST(SqliteOpen, AnUnreadableFileIsRefused) {
  fetchd::testing::TempDir dir;
  const fs::path path = make_store(dir, 1);
  fs::permissions(path, fs::perms::none);
  if (::geteuid() != 0) {
    expect_refused(path, "Permission denied");
    return;
  }
  fs::permissions(dir.path(), fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                  fs::perms::others_read | fs::perms::others_exec);
  constexpr uid_t kNobody = 65534;
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(kNobody) != 0 || ::setuid(kNobody) != 0) ::_exit(3);
    try {
      open_sqlite_store(path);
      ::_exit(1);  // opened
    } catch (const StoreError& e) {
      const std::string what = e.what();
      ::_exit(what.find(path.string()) != std::string::npos && what.find("Permission denied") != std::string::npos
                  ? 0
                  : 2);
    } catch (...) {
      ::_exit(4);
    }
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died of a signal";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: opened; 2: refused without naming the file and the reason; 3: could "
                                       "not become nobody; 4: another exception";
}

}  // namespace
}  // namespace fetchd::store
