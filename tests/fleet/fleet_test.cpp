// SPDX-License-Identifier: Apache-2.0
// A fleet: several `fetchd serve` nodes on one PostgreSQL queue (a private server,
// tests/store/pg_cluster.hpp) and one output folder, against an in-process origin. Jobs go in through every
// node; one node is killed with SIGKILL mid-run and another stopped past its lease, and still every job ends
// done exactly once, every file has its SHA-256, and no .part is left (docs/fleet.md).

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "fetchd/origin/body.hpp"
#include "fetchd/origin/origin.hpp"
#include "pg_cluster.hpp"
#include "serve_fixture.hpp"

namespace fetchd::service_test {
namespace {

fetchd::testing::PgCluster& cluster() {
  static fetchd::testing::PgCluster c;
  return c;
}

// Rows of fetchd.jobs: id -> (state, published_by, attempts).
struct Row {
  std::string state;
  std::string published_by;
  int attempts = 0;
  std::string dest;
};
std::map<std::int64_t, Row> read_rows(const std::string& url) {
  std::map<std::int64_t, Row> rows;
  PGconn* c = PQconnectdb(url.c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    ADD_FAILURE() << PQerrorMessage(c);
    PQfinish(c);
    return rows;
  }
  PGresult* r = PQexec(c, "SELECT id, state, coalesce(published_by, ''), attempts, dest FROM fetchd.jobs");
  if (PQresultStatus(r) == PGRES_TUPLES_OK) {
    for (int i = 0; i < PQntuples(r); ++i) {
      rows[std::stoll(PQgetvalue(r, i, 0))] =
          Row{PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), std::stoi(PQgetvalue(r, i, 3)), PQgetvalue(r, i, 4)};
    }
  } else {
    ADD_FAILURE() << PQerrorMessage(c);
  }
  PQclear(r);
  PQfinish(c);
  return rows;
}

class FleetTest : public ::testing::Test {
 protected:
  struct Node {
    std::string name;
    DaemonConfig config;
    fs::path config_path;
    std::unique_ptr<NotifyListener> notify;
    std::unique_ptr<DaemonProcess> process;
  };

  FleetTest() : url_(cluster().fresh_url()) {
    origin::OriginOptions o;
    o.on_request = [this](std::string_view target) { requests_.add(target); };
    origin_ = std::make_unique<origin::OriginThread>(o);
  }

  Node& add_node(const std::string& name, int concurrency = 16, const std::string& lease = "3s") {
    auto node = std::make_unique<Node>();
    node->name = name;
    const fs::path home = dir_.path() / name;
    fs::create_directories(home);
    node->config.socket = home / "ctl.sock";
    node->config.state_dir = home / "state";
    node->config.output_dir = dir_.path() / "out";  // one folder for the whole fleet
    node->config.concurrency = concurrency;
    node->config.state_extra =
        "  url: " + json(url_).dump() + "\n  node: " + name + "\n  lease: " + lease + "\n";
    node->config_path = home / "fetchd.yaml";
    node->notify = std::make_unique<NotifyListener>(home / "notify.sock");
    nodes_.push_back(std::move(node));
    return *nodes_.back();
  }

  bool start(Node& n) {
    write_file(n.config_path, n.config.yaml());
    n.process.reset();
    n.process = std::make_unique<DaemonProcess>(
        DaemonProcess::Options{.config = n.config_path, .notify = n.notify.get()});
    const bool ready = n.process->wait_ready();
    EXPECT_TRUE(ready) << n.name << " did not become ready:\n" << n.process->log();
    return ready;
  }

  json job(std::size_t i, const std::string& latency) const {
    const std::uint64_t size = 4096 + i % 7 * 1000;
    const std::string name = "f" + std::to_string(i) + ".bin";
    return json{{"url", origin_->url("/bytes/" + std::to_string(size) + "/" + name) +
                            "?seed=" + std::to_string(i) + "&latency=" + latency},
                {"dest", name},
                {"size", size},
                {"sha256", origin::body_sha256_hex(size, i)}};
  }

  static Watcher watch(Node& n) {
    LineClient c(n.config.socket);
    json r = c.request(json{{"op", "watch"}});
    EXPECT_TRUE(r.value("ok", false)) << r.dump();
    return Watcher(std::move(c));
  }

  // Reads `w` until `count` jobs finished there.
  static void wait_finals(Watcher& w, std::size_t count) {
    const auto deadline = deadline_in(kFailsafe);
    while (w.finals().size() < count) {
      if (!w.read_line(deadline)) {
        ADD_FAILURE() << "only " << w.finals().size() << " of " << count << " jobs finished on this node";
        return;
      }
    }
  }

  // Waits (inotify: a rename into the output folder) until at least `want` of the first `jobs` files exist;
  // returns how many do.
  std::size_t wait_published(std::size_t want, std::size_t jobs) {
    const fs::path out = dir_.path() / "out";
    core::UniqueFd fd(inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
    if (!fd || inotify_add_watch(fd.get(), out.c_str(), IN_MOVED_TO) < 0) {
      ADD_FAILURE() << "inotify: " << std::strerror(errno);
      return 0;
    }
    const auto count = [&] {
      std::size_t n = 0;
      for (std::size_t i = 0; i < jobs; ++i)
        n += fs::exists(out / ("f" + std::to_string(i) + ".bin")) ? 1 : 0;
      return n;
    };
    const auto deadline = deadline_in(kFailsafe);
    std::size_t n = count();
    while (n < want && Clock::now() < deadline) {
      pollfd p{fd.get(), POLLIN, 0};
      ::poll(&p, 1, 1000);
      char buf[4096];
      while (::read(fd.get(), buf, sizeof buf) > 0) {
      }
      n = count();
    }
    return n;
  }

  TempDir dir_;
  std::string url_;
  RequestCounter requests_;
  std::unique_ptr<origin::OriginThread> origin_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

TEST_F(FleetTest, ThreeNodesShareOneQueueThroughAKillAndAStop) {
  constexpr std::size_t kJobs = 3000;
  auto& a = add_node("a");
  auto& b = add_node("b");
  auto& c = add_node("c");
  for (auto* n : {&a, &b, &c}) ASSERT_TRUE(start(*n));
  Watcher wa = watch(a);
  Watcher wb = watch(b);
  Watcher wc = watch(c);

  // Through every node, 100 jobs per request.
  std::vector<LineClient> clients;
  for (auto* n : {&a, &b, &c}) clients.emplace_back(n->config.socket);
  for (std::size_t first = 0; first < kJobs; first += 100) {
    json jobs = json::array();
    for (std::size_t i = first; i < first + 100; ++i) jobs.push_back(job(i, "60ms"));
    json r = clients[first / 100 % 3].request(json{{"op", "submit"}, {"jobs", jobs}});
    ASSERT_TRUE(r.value("ok", false)) << r.dump().substr(0, 500);
  }

  // a dies mid-run, holding claims and running transfers.
  wait_finals(wa, 100);
  a.process->kill9();
  // b stops past its lease: c hands b's jobs back to the queue and runs them.
  wait_finals(wb, 100);
  b.process->signal(SIGSTOP);
  ASSERT_TRUE(c.process->wait_log("whose node stopped renewing its lease went back to the queue",
                                  deadline_in(kFailsafe)))
      << c.process->log();
  b.process->signal(SIGCONT);
  // b finds out: its transfers stop, or their files are not published (the publish fence).
  EXPECT_TRUE(b.process->wait_log("lease on", deadline_in(kFailsafe))) << b.process->log();
  // a comes back under its name and hands back what its previous process still held.
  ASSERT_TRUE(start(a));

  // The fleet's counts, from the store, in c's stats events.
  const auto deadline = deadline_in(std::chrono::minutes(3));
  for (;;) {
    auto line = wc.read_line(deadline);
    ASSERT_TRUE(line) << "the fleet did not finish; c's log:\n" << c.process->log();
    json e = json::parse(*line);
    if (e.value("event", "") == "stats" &&
        e["stats"].value("done", std::size_t{0}) + e["stats"].value("failed", std::size_t{0}) >= kJobs) {
      EXPECT_EQ(e["stats"].value("failed", -1), 0) << e.dump();
      break;
    }
  }

  const auto rows = read_rows(url_);
  ASSERT_EQ(rows.size(), kJobs);
  std::map<std::string, std::size_t> by_node;
  for (const auto& [id, row] : rows) {
    EXPECT_EQ(row.state, "done") << "job " << id;
    ++by_node[row.published_by];
  }
  EXPECT_EQ(by_node.count(""), 0U) << "a done job without the node that published it";
  EXPECT_GE(by_node.size(), 2U);  // the work was shared
  for (std::size_t i = 0; i < kJobs; ++i) {
    const std::uint64_t size = 4096 + i % 7 * 1000;
    const fs::path file = dir_.path() / "out" / ("f" + std::to_string(i) + ".bin");
    EXPECT_EQ(file_sha256_hex(file), origin::body_sha256_hex(size, i)) << file;
  }
  std::size_t parts = 0;
  for (const auto& e : fs::directory_iterator(dir_.path() / "out")) {
    if (e.path().filename().string().find(".part") != std::string::npos) ++parts;
  }
  EXPECT_EQ(parts, 0U) << ".part files left in the shared folder";

  for (auto* n : {&a, &b, &c}) {
    n->process->signal(SIGTERM);
    EXPECT_EQ(n->process->wait_exit(kFailsafe), 0) << n->name << ":\n" << n->process->log();
  }
}

TEST_F(FleetTest, ACancelOnOneNodeStopsTheTransferRunningOnAnother) {
  auto& a = add_node("a");
  ASSERT_TRUE(start(a));
  Watcher wa = watch(a);
  LineClient ca(a.config.socket);
  // A response that takes a minute: the job is surely running on a when the cancel comes.
  json r = ca.request(json{{"op", "submit"}, {"jobs", json::array({job(1, "60s")})}});
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  const auto id = r["result"]["jobs"][0]["id"].get<std::int64_t>();
  wa.read_until([](const json& e) { return e.value("event", "") == "started"; }, deadline_in(kFailsafe));

  auto& b = add_node("b");
  ASSERT_TRUE(start(b));
  LineClient cb(b.config.socket);
  const auto asked = Clock::now();
  r = cb.request(json{{"op", "cancel"}, {"id", id}});
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  EXPECT_EQ(r["result"]["job"]["state"], "cancelled");
  // a hears it (LISTEN/NOTIFY) and stops the transfer.
  wa.read_until([&](const json& e) { return e.value("event", "") == "cancelled" && e["job"]["id"] == id; },
                deadline_in(kFailsafe));
  EXPECT_LT(Clock::now() - asked, std::chrono::seconds(1));
  EXPECT_FALSE(fs::exists(dir_.path() / "out" / "f1.bin"));
  EXPECT_EQ(read_rows(url_).at(id).state, "cancelled");
}

// The database goes away while transfers run: they finish, their outcomes wait in memory, requests are
// answered "unavailable", and everything is committed once the database is back.
TEST_F(FleetTest, ADatabaseLostWhileRunningLosesNothing) {
  constexpr std::size_t kJobs = 40;
  auto& a = add_node("a", /*concurrency=*/kJobs, /*lease=*/"30s");
  ASSERT_TRUE(start(a));
  Watcher wa = watch(a);
  LineClient ca(a.config.socket);
  json jobs = json::array();
  for (std::size_t i = 0; i < kJobs; ++i) jobs.push_back(job(i, "700ms"));
  json r = ca.request(json{{"op", "submit"}, {"jobs", jobs}});
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  ASSERT_TRUE(origin_->wait_for([&](const origin::OriginStats& s) { return s.requests_total >= kJobs; },
                                std::chrono::milliseconds(60000)));

  cluster().stop();
  struct Restart {
    ~Restart() {
      try {
        if (!cluster().running()) cluster().start();
      } catch (...) {
      }
    }
  } restart_anyway;
  r = ca.request(json{{"op", "status"}, {"id", 1}});
  EXPECT_EQ(r["error"].value("code", ""), "unavailable") << r.dump();
  EXPECT_NE(r["error"].value("message", "").find("job store:"), std::string::npos) << r.dump();
  // Every response is out: the transfers finished while the database was away.
  ASSERT_TRUE(origin_->wait_for(
      [&](const origin::OriginStats& s) { return s.requests_total >= kJobs && s.requests_in_flight == 0; },
      std::chrono::milliseconds(60000)));
  cluster().start();

  wait_finals(wa, kJobs);
  for (const auto& [id, state] : wa.finals()) EXPECT_EQ(state, "done") << "job " << id;
  const auto rows = read_rows(url_);
  ASSERT_EQ(rows.size(), kJobs);
  for (const auto& [id, row] : rows) {
    EXPECT_EQ(row.state, "done") << "job " << id;
    EXPECT_EQ(row.attempts, 1) << "job " << id << " ran twice";
  }
  const auto counts = requests_.snapshot();
  EXPECT_EQ(counts.size(), kJobs);
  for (const auto& [path, n] : counts) EXPECT_EQ(n, 1U) << path << ": downloaded again";
  a.process->signal(SIGTERM);
  EXPECT_EQ(a.process->wait_exit(kFailsafe), 0) << a.process->log();
}

// A database that stalls (here: a table lock held by another session) stalls the node's commits and claims on
// the store writer's thread, never its control loop: running transfers finish and publish, and the socket
// answers.
TEST_F(FleetTest, AStalledDatabaseStallsNeitherTransfersNorTheSocket) {
  constexpr std::size_t kJobs = 40;
  auto& a = add_node("a", /*concurrency=*/8, /*lease=*/"30s");
  ASSERT_TRUE(start(a));
  LineClient ca(a.config.socket);
  json jobs = json::array();
  for (std::size_t i = 0; i < kJobs; ++i) jobs.push_back(job(i, "200ms"));
  json r = ca.request(json{{"op", "submit"}, {"jobs", jobs}});
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  ASSERT_TRUE(origin_->wait_for([](const origin::OriginStats& s) { return s.requests_total >= 8; },
                                std::chrono::milliseconds(60000)));

  PGconn* lock = PQconnectdb(url_.c_str());
  ASSERT_EQ(PQstatus(lock), CONNECTION_OK) << PQerrorMessage(lock);
  PGresult* locked = PQexec(lock, "BEGIN; LOCK TABLE fetchd.jobs IN ACCESS EXCLUSIVE MODE");
  ASSERT_EQ(PQresultStatus(locked), PGRES_COMMAND_OK) << PQerrorMessage(lock);
  PQclear(locked);

  // What the node had claimed (twice its concurrency) runs to the end, published, with the store stalled.
  ASSERT_TRUE(origin_->wait_for(
      [](const origin::OriginStats& s) { return s.requests_total >= 16 && s.requests_in_flight == 0; },
      std::chrono::milliseconds(60000)));
  const auto asked = Clock::now();
  r = ca.request(json{{"op", "ping"}});
  EXPECT_TRUE(r.value("ok", false)) << r.dump();
  EXPECT_LT(Clock::now() - asked, std::chrono::seconds(2));
  EXPECT_GE(wait_published(16, kJobs), 16U);

  PGresult* done = PQexec(lock, "ROLLBACK");
  PQclear(done);
  PQfinish(lock);
  Watcher wa = watch(a);
  const auto deadline = deadline_in(kFailsafe);
  for (;;) {
    auto line = wa.read_line(deadline);
    ASSERT_TRUE(line) << a.process->log();
    json e = json::parse(*line);
    if (e.value("event", "") == "stats" && e["stats"].value("done", std::size_t{0}) >= kJobs) break;
  }
  for (const auto& [id, row] : read_rows(url_)) EXPECT_EQ(row.state, "done") << "job " << id;
}

// An origin that answers 429 with Retry-After to one node is paused on every node: the others hear it
// (LISTEN/NOTIFY) and start nothing there until the pause is over.
TEST_F(FleetTest, ARetryAfterPausesTheOriginOnEveryNode) {
  auto& a = add_node("a", /*concurrency=*/2, /*lease=*/"30s");
  auto& b = add_node("b", /*concurrency=*/2, /*lease=*/"30s");
  ASSERT_TRUE(start(a));
  ASSERT_TRUE(start(b));
  LineClient ca(a.config.socket);
  json limited{{"url", origin_->url("/status/429") + "?retry_after=3"}, {"dest", "limited"}};
  json r = ca.request(json{{"op", "submit"}, {"jobs", json::array({limited})}});
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  // Whichever node got the 429 tells the other one.
  const auto deadline = deadline_in(kFailsafe);
  Node* told = nullptr;
  while (!told && Clock::now() < deadline) {
    for (auto* n : {&a, &b}) {
      if (n->process->wait_log("pausing it here too", deadline_in(std::chrono::milliseconds(100)))) told = n;
    }
  }
  ASSERT_NE(told, nullptr) << a.process->log() << b.process->log();
  const auto paused_at = Clock::now();
  // Only the node that was told runs now; a job for the same origin waits there until the pause is over.
  Node* other = told == &a ? &b : &a;
  other->process->signal(SIGSTOP);
  const auto before = origin_->stats().requests_total;
  LineClient ct(told->config.socket);
  r = ct.request(json{{"op", "submit"}, {"jobs", json::array({job(1, "0ms")})}});
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  // Answered (the origin counts a request before its on_request hook runs, and answers after).
  ASSERT_TRUE(origin_->wait_for(
      [&](const origin::OriginStats& s) { return s.requests_total > before && s.requests_in_flight == 0; },
      std::chrono::milliseconds(60000)));
  EXPECT_GE(Clock::now() - paused_at, std::chrono::milliseconds(2000));
  EXPECT_GE(requests_.count("/bytes/5096/f1.bin"), 1U);
  other->process->signal(SIGCONT);
}

TEST_F(FleetTest, AnUnreachableDatabaseStopsTheStartNamingIt) {
  auto& a = add_node("a");
  a.config.state_extra = "  url: \"postgresql:///nodb?host=/nonexistent-dir\"\n  node: a\n";
  write_file(a.config_path, a.config.yaml());
  DaemonProcess p(DaemonProcess::Options{.config = a.config_path, .notify = a.notify.get()});
  EXPECT_EQ(p.wait_exit(kFailsafe), 1);
  EXPECT_NE(p.log().find("database postgresql:///nodb?host=/nonexistent-dir: cannot connect"),
            std::string::npos)
      << p.log();
}

}  // namespace
}  // namespace fetchd::service_test
