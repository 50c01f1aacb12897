// SPDX-License-Identifier: Apache-2.0
// Fault cases 26 and 27: `kill -9` right after a submit was acknowledged, and at a random moment of a run of
// 2,000 jobs. After each restart: every acknowledged job is done exactly once, every file is whole and
// correct, no .part and no stray file remains, and no job that was done at the kill is fetched again. The
// kill moment is drawn from a seeded RNG (FETCHD_TEST_SEED to replay) and triggered by the n-th "done" watch
// event.

#include <sqlite3.h>

#include <cstdlib>
#include <iostream>
#include <random>
#include <set>

#include "serve_fixture.hpp"

namespace fetchd::service_test {
namespace {

constexpr int kJobs = 2000;

// Holds SQLite's write lock on a database (BEGIN IMMEDIATE) until destroyed; then rolls back.
class WriteLock {
 public:
  explicit WriteLock(const fs::path& db) {
    const bool opened = sqlite3_open_v2(db.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK;
    if (opened) sqlite3_busy_timeout(db_, 30'000);
    if (!opened || sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
      std::string why = db.string() + ": " + sqlite3_errmsg(db_);
      sqlite3_close(db_);  // allocated even when the open failed
      throw std::runtime_error("cannot lock " + why);
    }
  }
  ~WriteLock() {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(db_);
  }
  WriteLock(const WriteLock&) = delete;
  WriteLock& operator=(const WriteLock&) = delete;

  std::string state_of(std::int64_t id) {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db_, "SELECT state FROM jobs WHERE id = ?", -1, &st, nullptr);
    sqlite3_bind_int64(st, 1, id);
    std::string out =
        sqlite3_step(st) == SQLITE_ROW ? reinterpret_cast<const char*>(sqlite3_column_text(st, 0)) : "";
    sqlite3_finalize(st);
    return out;
  }

 private:
  sqlite3* db_ = nullptr;
};

// The ids of the done events already received on a watch connection, without waiting for more.
std::vector<std::int64_t> drain_done_events(Watcher& w) {
  std::vector<std::int64_t> out;
  for (int i = 0; i < 100'000; ++i) {
    auto line = w.read_line(Clock::now());
    if (!line) break;
    json e = json::parse(*line);
    if (e.value("event", "") == "done") out.push_back(e["job"]["id"].get<std::int64_t>());
  }
  return out;
}

class Durability : public ServeFixture {
 protected:
  struct Spec {
    std::uint64_t size;
    std::uint64_t seed;
    std::string dest;
  };

  static std::uint64_t test_seed() {
    if (const char* s = std::getenv("FETCHD_TEST_SEED"); s && *s) return std::stoull(s);
    return std::random_device{}();
  }

  // The jobs: small bodies of varied sizes, a few larger ones, each held back `latency` by the origin.
  std::vector<Spec> make_specs() const {
    std::vector<Spec> specs;
    for (int i = 0; i < kJobs; ++i) {
      std::uint64_t size = i % 97 == 0 ? 1'000'000 + i : 200 + (static_cast<std::uint64_t>(i) * 37) % 4000;
      specs.push_back(
          {size, static_cast<std::uint64_t>(i) + 1, "d" + std::to_string(i % 10) + "/f" + std::to_string(i)});
    }
    return specs;
  }

  // Reads watch events until `n` done events were seen; returns false if the watch ended first.
  static bool wait_done_events(Watcher& w, int n) {
    int seen = 0;
    auto deadline = deadline_in(kFailsafe);
    while (seen < n) {
      auto line = w.read_line(deadline);
      if (!line) return false;
      if (line->starts_with("{\"event\":\"done\"")) ++seen;
    }
    return true;
  }

  // Waits (on the watch's once-a-second stats) until the store counts `n` done jobs; fails on a failed job.
  static bool wait_all_done(Watcher& w, std::uint64_t n, Clock::duration limit) {
    auto deadline = deadline_in(limit);
    for (;;) {
      auto line = w.read_line(deadline);
      if (!line) return false;
      json e = json::parse(*line);
      if (e.value("event", "") == "failed") {
        ADD_FAILURE() << "a job failed: " << *line;
        return false;
      }
      if (e.value("event", "") == "stats" && e["stats"]["done"].get<std::uint64_t>() >= n) return true;
    }
  }

  // One run: submit all jobs, then `kills` times kill -9 after a random number of done events and restart;
  // finally check everything.
  void run(int kills) {
    const std::uint64_t seed = test_seed();
    std::cout << "[ seed ] FETCHD_TEST_SEED=" << seed << "\n";
    RecordProperty("seed", std::to_string(seed));
    std::mt19937_64 rng(seed);

    config_.concurrency = 16;
    ASSERT_TRUE(start());
    const auto specs = make_specs();
    std::vector<std::int64_t> ids;
    std::map<std::int64_t, std::size_t> index_of;  // id -> specs index
    {
      auto w = watch();
      auto c = connect();
      json jobs = json::array();
      for (const auto& s : specs) {
        jobs.push_back(job(s.size, "f" + std::to_string(s.seed), s.seed, "20ms", s.dest));
      }
      auto t0 = Clock::now();
      ids = submit(c, jobs);
      ASSERT_EQ(ids.size(), specs.size());
      std::cout << "[ measure ] submit of " << kJobs << " jobs acknowledged in "
                << std::chrono::duration<double, std::milli>(Clock::now() - t0).count() << " ms\n";
      for (std::size_t i = 0; i < ids.size(); ++i) index_of[ids[i]] = i;

      std::set<std::int64_t> done_before;           // done in the store at some kill
      std::map<std::string, std::uint64_t> frozen;  // their request counts at that kill
      for (int k = 0; k < kills; ++k) {
        // Kill after a random share of what is left, spread so every kill lands inside the run.
        const int left = kJobs - static_cast<int>(done_before.size());
        const int most = std::max(2, left / (kills - k + 1));
        const int n = std::uniform_int_distribution<int>(1, most)(rng);
        ASSERT_TRUE(wait_done_events(w, n)) << "the watch ended before " << n << " done events";
        daemon_->kill9();

        auto states = read_job_states(db_path());
        std::set<std::int64_t> done_now;
        for (auto id : ids) {
          ASSERT_TRUE(states.count(id)) << "acknowledged job " << id << " is not in the store after kill -9";
          if (states[id] == "done") done_now.insert(id);
        }
        for (auto id : done_before)
          EXPECT_TRUE(done_now.count(id)) << "job " << id << " was done, now " << states[id];
        auto counts = requests_.snapshot();
        for (auto id : done_now) {
          const auto& s = specs[index_of[id]];
          std::string path = bytes_path(s.size, "f" + std::to_string(s.seed));
          if (!frozen.count(path)) frozen[path] = counts[path];
          EXPECT_GE(frozen[path], 1u) << "done but never requested: " << path;
        }
        std::cout << "[ kill " << k + 1 << " ] after " << n << " done events of this run: " << done_now.size()
                  << " of " << kJobs << " done in the store\n";
        done_before = std::move(done_now);

        ASSERT_TRUE(start()) << "restart " << k + 1;
        w = watch();
        c = connect();
      }

      ASSERT_TRUE(wait_all_done(w, kJobs, std::chrono::seconds(300)))
          << "not all jobs finished after the restarts";

      // The client's view: each acknowledged job once, done.
      auto jobs_now = list_all(c);
      ASSERT_EQ(jobs_now.size(), static_cast<std::size_t>(kJobs));
      std::set<std::int64_t> listed;
      std::set<std::string> dests;
      for (const auto& j : jobs_now) {
        listed.insert(j["id"].get<std::int64_t>());
        dests.insert(j["dest"].get<std::string>());
        EXPECT_EQ(j["state"], "done") << j.dump();
      }
      EXPECT_EQ(listed, std::set<std::int64_t>(ids.begin(), ids.end()));
      EXPECT_EQ(dests.size(), static_cast<std::size_t>(kJobs));

      // No job done at a kill was fetched again.
      auto counts = requests_.snapshot();
      int refetched = 0;
      for (const auto& [path, at_kill] : frozen) {
        if (counts[path] != at_kill) {
          ++refetched;
          ADD_FAILURE() << path << " was done at a kill (" << at_kill << " request(s)) and requested again ("
                        << counts[path] << ")";
          if (refetched > 10) break;
        }
      }
      std::uint64_t total = 0;
      for (const auto& [path, n] : counts) total += n;
      std::cout << "[ measure ] " << total << " requests for " << kJobs << " jobs with " << kills
                << " kill(s)\n";
    }

    // The disk: exactly the jobs' files, whole and correct; no .part, nothing else.
    std::set<fs::path> expected;
    for (const auto& s : specs) expected.insert(config_.output_dir / s.dest);
    int bad = 0;
    std::size_t found = 0;
    for (const auto& entry : fs::recursive_directory_iterator(config_.output_dir)) {
      if (entry.is_directory()) continue;
      ++found;
      const auto& p = entry.path();
      if (!expected.count(p)) {
        ADD_FAILURE() << "a file that is no job's: " << p;
        if (++bad > 10) break;
      }
    }
    EXPECT_EQ(found, expected.size());
    for (const auto& s : specs) {
      if (file_sha256_hex(config_.output_dir / s.dest) != origin::body_sha256_hex(s.size, s.seed)) {
        ADD_FAILURE() << "wrong content: " << s.dest;
        if (++bad > 10) break;
      }
    }
  }
};

TEST_F(Durability, AJobAcknowledgedRightBeforeKill9IsThereAfterTheRestart) {
  ASSERT_TRUE(start());
  std::int64_t id = 0;
  {
    auto c = connect();
    auto ids = submit(c, json::array({job(300000, "acked.bin", 42, "2s")}));
    ASSERT_EQ(ids.size(), 1u);
    id = ids[0];
    daemon_->kill9();  // at once: the answer was the only thing the daemon promised
  }
  auto states = read_job_states(db_path());
  ASSERT_TRUE(states.count(id)) << "the acknowledged job is not in the store";
  EXPECT_TRUE(states[id] == "queued" || states[id] == "running") << states[id];

  ASSERT_TRUE(start());
  auto w = watch();
  ASSERT_TRUE(wait_all_done(w, 1, kFailsafe));
  auto c = connect();
  auto jobs = list_all(c);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0]["id"], id);
  EXPECT_EQ(jobs[0]["state"], "done");
  EXPECT_EQ(file_sha256_hex(out("acked.bin")), origin::body_sha256_hex(300000, 42));
  EXPECT_FALSE(fs::exists(out("acked.bin.part")));
}

// A watcher told "done" must be able to rely on it: a kill -9 right after the event must not send the job
// back to the queue. The window between the event and the commit is microseconds wide, so it is made visible
// deterministically: the test holds SQLite's write lock while two transfers finish. The daemon's commit of
// "done" then fails (busy, logged); no done event may have gone out before that, and once the lock is gone
// the commit succeeds and the events follow.
TEST_F(Durability, DoneEventsGoOutOnlyAfterTheCommit) {
  ASSERT_TRUE(start());
  auto w = watch();
  auto c = connect();
  auto ids = submit(c, json::array({job(5000, "e1", 1, "1s"), job(5000, "e2", 2, "1s")}));
  ASSERT_EQ(ids.size(), 2u);
  for (int started = 0; started < 2; ++started) {
    w.read_until([](const json& e) { return e.value("event", "") == "started"; }, deadline_in(kFailsafe));
  }
  // Any request other than submit commits what is pending first: "running" is in the store now.
  EXPECT_EQ(c.request(json{{"op", "status"}, {"id", ids[1]}})["result"]["job"]["state"], "running");

  std::size_t log0 = daemon_->log_size();
  {
    WriteLock lock(db_path());
    // The transfers end; the daemon's commit of their state waits for the lock (its busy timeout), then
    // fails.
    ASSERT_TRUE(daemon_->wait_log("locked", deadline_in(kFailsafe), log0)) << "no failed commit logged";
    auto early = drain_done_events(w);
    for (auto id : early) {
      ADD_FAILURE() << "job " << id
                    << ": \"done\" was sent to watchers before it was committed (a kill -9 now "
                    << "would queue it again)";
    }
    EXPECT_EQ(lock.state_of(ids[0]), "running");
  }
  // Unlocked: the next commit succeeds (the stats events count from the store).
  w.read_until([](const json& e) { return e.value("event", "") == "stats" && e["stats"]["done"] == 2; },
               deadline_in(kFailsafe));
  EXPECT_EQ(c.request(json{{"op", "status"}, {"id", ids[0]}})["result"]["job"]["state"], "done");
}

// A slow store (a locked file, a slow disk; later a database over the network) must stall neither the transfers
// nor the socket. The test holds SQLite's write lock: the daemon's commits wait for it, up to their 5 s busy
// timeout. Meanwhile every transfer still runs and publishes its file, and pings are answered, all before any
// commit failed, and the once-a-second tick comes round. With the commits on the control loop, the first ping
// would be answered only after a failed commit ("locked" in the log).
TEST_F(Durability, AStalledStoreStallsNeitherTransfersNorTheSocket) {
  config_.concurrency = 4;
  ASSERT_TRUE(start());
  auto c = connect();
  auto w = watch();
  json jobs = json::array();
  constexpr int kStalledJobs = 24;
  for (int i = 0; i < kStalledJobs; ++i) {
    jobs.push_back(job(2000, "stall" + std::to_string(i), 700 + static_cast<std::uint64_t>(i), "30ms"));
  }
  auto ids = submit(c, jobs);
  ASSERT_EQ(ids.size(), static_cast<std::size_t>(kStalledJobs));
  {
    WriteLock lock(db_path());
    const std::size_t log0 = daemon_->log_size();
    // Paced by ping round trips (each one an answer from the loop), bounded.
    int published = 0;
    for (int round = 0; round < 100'000 && published < kStalledJobs; ++round) {
      ASSERT_TRUE(c.request(json{{"op", "ping"}})["ok"].get<bool>());
      ASSERT_EQ(daemon_->log().find("locked", log0), std::string::npos)
          << "a commit failed before the transfers and the socket got their turn";
      published = 0;
      for (int i = 0; i < kStalledJobs; ++i) published += fs::exists(out("stall" + std::to_string(i))) ? 1 : 0;
    }
    EXPECT_EQ(published, kStalledJobs) << "transfers stopped while the store was locked";
    // The once-a-second tick (sd_notify STATUS, stats, durable starts) comes round without waiting either:
    // two of them, then the socket still answers at once.
    const std::size_t from = notify_.size();
    auto first = notify_.wait_prefix("STATUS=", from, deadline_in(kFailsafe));
    ASSERT_TRUE(first);
    ASSERT_TRUE(notify_.wait_prefix("STATUS=", *first + 1, deadline_in(kFailsafe)));
    ASSERT_TRUE(c.request(json{{"op", "ping"}})["ok"].get<bool>());
    EXPECT_EQ(daemon_->log().find("locked", log0), std::string::npos);
  }
  // Unlocked: the held commit goes through, and every job is done.
  std::set<std::int64_t> all(ids.begin(), ids.end());
  auto finals = wait_finished(w, all);
  EXPECT_EQ(finals.size(), all.size());
}

// A start is written lazily (a short transfer's store write is its outcome alone), but no later than the next
// tick: the stats event of that tick comes after the commit. A kill -9 then counts the attempt.
TEST_F(Durability, AJobRunningForATickIsDurablyRunning) {
  ASSERT_TRUE(start());
  auto w = watch();
  auto c = connect();
  auto ids = submit(c, json::array({job(100, "slow.bin", 1, "30s")}));
  ASSERT_EQ(ids.size(), 1u);
  w.read_until([](const json& e) { return e.value("event", "") == "started"; }, deadline_in(kFailsafe));
  w.read_until([](const json& e) { return e.value("event", "") == "stats"; }, deadline_in(kFailsafe));
  daemon_->kill9();
  auto jobs = read_jobs(db_path());
  ASSERT_TRUE(jobs.count(ids[0]));
  EXPECT_EQ(jobs[ids[0]].state, "running");
  EXPECT_EQ(jobs[ids[0]].attempts, 1) << "the attempt the kill cut off counts";
}

TEST_F(Durability, Kill9AtARandomMomentOf2000Jobs) {
  run(1);
}

TEST_F(Durability, Slow_FiveKill9InOneRunOf2000Jobs) {
  run(5);
}

}  // namespace
}  // namespace fetchd::service_test
