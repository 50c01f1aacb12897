// SPDX-License-Identifier: Apache-2.0
// The daemon's life cycle as systemd sees it: READY=1, SIGTERM drain within shutdown.grace (fault case 28),
// SIGHUP reload with RELOADING=1/READY=1, an invalid config on SIGHUP (case 30), socket activation, and the
// start-up errors with their exit codes (78 config, 1 store/socket).

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <iostream>
#include <set>

#include "serve_fixture.hpp"

namespace fetchd::service_test {
namespace {

class Lifecycle : public ServeFixture {
 protected:
  // The value of "NAME=" in a notify message, or "".
  static std::string field(const std::string& message, std::string_view name) {
    std::string key = std::string(name) + "=";
    for (std::size_t pos = 0; pos < message.size();) {
      auto nl = message.find('\n', pos);
      auto end = nl == std::string::npos ? message.size() : nl;
      if (message.compare(pos, key.size(), key) == 0)
        return message.substr(pos + key.size(), end - pos - key.size());
      pos = end + 1;
    }
    return "";
  }

  // Replaces the origin by a new one on the same port (so the stored URLs stay valid) with another latency.
  void restart_origin(std::chrono::milliseconds latency) {
    auto port = origin_ ? origin_->port() : std::uint16_t{0};
    origin_.reset();
    auto o = origin_options(requests_, port);
    o.latency = latency;
    origin_ = std::make_unique<origin::OriginThread>(o);
  }

  // Runs the daemon with the current config and returns its exit code (nullopt: did not exit within limit).
  std::optional<int> run_to_exit(Clock::duration limit = kFailsafe) {
    write_config();
    daemon_.reset();
    daemon_ =
        std::make_unique<DaemonProcess>(DaemonProcess::Options{.config = config_path_, .notify = &notify_});
    return daemon_->wait_exit(limit);
  }
};

TEST_F(Lifecycle, SigtermLetsAnInFlightTransferFinishWithinTheGrace) {
  config_.grace = "10s";
  ASSERT_TRUE(start());
  auto c = connect();
  auto w = watch();
  auto ids = submit(c, json::array({job(100000, "drain.bin", 1, "1s")}));
  ASSERT_EQ(ids.size(), 1u);
  w.read_until([&](const json& e) { return e.value("event", "") == "started"; }, deadline_in(kFailsafe));

  std::size_t n0 = notify_.size();
  auto t0 = Clock::now();
  daemon_->signal(SIGTERM);
  ASSERT_TRUE(notify_.wait_for("STOPPING=1", n0, deadline_in(kFailsafe)));
  auto extend = notify_.wait_prefix("EXTEND_TIMEOUT_USEC=", n0, deadline_in(kFailsafe));
  ASSERT_TRUE(extend) << "EXTEND_TIMEOUT_USEC while draining";
  EXPECT_EQ(field(notify_.messages()[*extend], "EXTEND_TIMEOUT_USEC"),
            std::to_string((10 + 15) * 1'000'000LL))
      << "grace + 15 s asked for";

  // Draining: the open connection gets `unavailable` for a submit; a new connection is refused.
  json r = c.request(json{{"op", "submit"}, {"jobs", json::array({job(10, "late.bin", 2)})}});
  EXPECT_EQ(error_code(r), "unavailable") << r.dump();
  int error = 0;
  EXPECT_FALSE(LineClient::try_connect(config_.socket, &error)) << "the listener is closed while draining";

  auto code = daemon_->wait_exit(kFailsafe);
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 0);
  std::cout << "[ measure ] SIGTERM with a 1 s transfer in flight: exit after "
            << std::chrono::duration<double>(Clock::now() - t0).count() << " s\n";
  EXPECT_EQ(file_sha256_hex(out("drain.bin")), origin::body_sha256_hex(100000, 1));
  auto states = read_job_states(db_path());
  ASSERT_EQ(states.size(), 1u) << "the refused submit stored nothing";
  EXPECT_EQ(states[ids[0]], "done");
  EXPECT_FALSE(fs::exists(out("late.bin")));
  EXPECT_FALSE(fs::exists(config_.socket)) << "the socket file is removed at exit";
}

TEST_F(Lifecycle, SigtermAfterTheGraceLeavesTheJobQueuedForTheNextStart) {
  config_.grace = "200ms";
  restart_origin(std::chrono::seconds(30));  // every response is held back 30 s
  ASSERT_TRUE(start());
  auto c = connect();
  auto w = watch();
  auto ids = submit(c, json::array({job(5000, "held.bin", 7)}));
  ASSERT_EQ(ids.size(), 1u);
  w.read_until([&](const json& e) { return e.value("event", "") == "started"; }, deadline_in(kFailsafe));

  std::size_t n0 = notify_.size();
  auto t0 = Clock::now();
  daemon_->signal(SIGTERM);
  auto code = daemon_->wait_exit(std::chrono::seconds(20));
  double took = std::chrono::duration<double>(Clock::now() - t0).count();
  ASSERT_TRUE(code) << "still running 20 s after SIGTERM with a 200 ms grace";
  EXPECT_EQ(*code, 0);
  EXPECT_LT(took, 10.0);
  std::cout << "[ measure ] SIGTERM, grace 200ms, transfer held 30 s: exit after " << took << " s\n";
  EXPECT_TRUE(notify_.find("STOPPING=1", n0));
  EXPECT_TRUE(notify_.find("EXTEND_TIMEOUT_USEC=" + std::to_string(15'200'000), n0))
      << json(notify_.messages()).dump();
  EXPECT_TRUE(daemon_->wait_log("grace period over", deadline_in(std::chrono::seconds(5))));

  auto states = read_job_states(db_path());
  EXPECT_EQ(states[ids[0]], "queued") << "interrupted by the shutdown: runs again at the next start";
  EXPECT_FALSE(fs::exists(out("held.bin")));

  restart_origin(std::chrono::milliseconds(0));
  ASSERT_TRUE(start());
  auto w2 = watch();
  w2.read_until([](const json& e) { return e.value("event", "") == "stats" && e["stats"]["done"] == 1; },
                deadline_in(kFailsafe));
  auto c2 = connect();
  json s = c2.request(json{{"op", "status"}, {"id", ids[0]}});
  EXPECT_EQ(s["result"]["job"]["state"], "done");
  EXPECT_EQ(s["result"]["job"]["attempts"], 1) << "the interrupted attempt does not count";
  EXPECT_EQ(file_sha256_hex(out("held.bin")), origin::body_sha256_hex(5000, 7));
  EXPECT_EQ(requests_.count(bytes_path(5000, "held.bin")), 2u);
}

// Only the attempts the shutdown interrupted are "interrupted by shutdown": the jobs queued behind them (in
// the window in memory and beyond it) and a job waiting to retry stay queued as they were, and none of them
// counts as failed in the final throughput line.
TEST_F(Lifecycle, SigtermMarksOnlyInterruptedAttemptsAndCountsNoneAsFailed) {
  config_.grace = "200ms";
  config_.concurrency = 4;
  ASSERT_TRUE(start());
  auto c = connect();
  auto w = watch();

  // A job waiting to retry (a 503 and an hour of backoff), with its error stored.
  json retrying{{"url", origin_->url("/status/503")},
                {"dest", "retrying.bin"},
                {"retries", 3},
                {"backoff", {{"initial", "1h"}, {"max", "1h"}, {"jitter", "none"}}}};
  auto retry_ids = submit(c, json::array({retrying}));
  ASSERT_EQ(retry_ids.size(), 1u);
  w.read_until(
      [&](const json& e) {
        return e.value("event", "") == "queued" && e["job"]["id"] == retry_ids[0] &&
               e["job"]["attempts"] == 1;
      },
      deadline_in(kFailsafe));

  // 2,000 jobs whose responses are held back 30 s: 4 run, ~1,000 wait in the window, the rest in the store.
  constexpr int kJobs = 2000;
  json jobs = json::array();
  for (int i = 0; i < kJobs; ++i) jobs.push_back(job(5000, "held-" + std::to_string(i) + ".bin", 7, "30s"));
  auto ids = submit(c, jobs);
  ASSERT_EQ(ids.size(), static_cast<std::size_t>(kJobs));
  std::set<std::int64_t> started;
  w.read_until(
      [&](const json& e) {
        if (e.value("event", "") == "started") started.insert(e["job"]["id"].get<std::int64_t>());
        return started.size() == 4;
      },
      deadline_in(kFailsafe));

  std::size_t log0 = daemon_->log_size();
  auto code = terminate();
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 0);
  ASSERT_TRUE(daemon_->wait_log("serve: stopped", deadline_in(kFailsafe), log0));

  // The final throughput line: the last "strategy=" line of the log.
  std::string log = daemon_->log();
  auto at = log.rfind("strategy=event-loop active=");
  ASSERT_NE(at, std::string::npos) << log;
  ASSERT_GT(at, log0) << "a throughput line after SIGTERM";
  std::string final_line = log.substr(at, log.find('\n', at) - at);
  EXPECT_NE(final_line.find(" failed=0 "), std::string::npos) << final_line;
  EXPECT_EQ(log.find("failed after", log0), std::string::npos) << "no job failed: " << log.substr(log0);

  auto stored = read_jobs(db_path());
  ASSERT_EQ(stored.size(), static_cast<std::size_t>(kJobs + 1));
  std::size_t interrupted = 0;
  for (auto id : ids) {
    const StoredJob& j = stored.at(id);
    EXPECT_EQ(j.state, "queued") << "job " << id;
    EXPECT_EQ(j.attempts, 0) << "job " << id << ": an interrupted attempt does not count";
    if (started.count(id) != 0) {
      EXPECT_EQ(j.error, "interrupted by shutdown") << "job " << id;
      ++interrupted;
    } else {
      EXPECT_EQ(j.error, "") << "job " << id << " never started";
    }
  }
  EXPECT_EQ(interrupted, 4u);
  const StoredJob& r = stored.at(retry_ids[0]);
  EXPECT_EQ(r.state, "queued");
  EXPECT_EQ(r.attempts, 1);
  EXPECT_NE(r.error.find("503"), std::string::npos) << "the previous error is kept: " << r.error;
}

TEST_F(Lifecycle, ASecondSigtermExitsAtOnce) {
  config_.grace = "60s";
  ASSERT_TRUE(start());
  auto c = connect();
  auto w = watch();
  auto ids = submit(c, json::array({job(5000, "second.bin", 3, "30s")}));
  ASSERT_EQ(ids.size(), 1u);
  w.read_until([&](const json& e) { return e.value("event", "") == "started"; }, deadline_in(kFailsafe));
  std::size_t n0 = notify_.size();
  daemon_->signal(SIGTERM);
  ASSERT_TRUE(notify_.wait_for("STOPPING=1", n0, deadline_in(kFailsafe)));
  auto t0 = Clock::now();
  daemon_->signal(SIGTERM);
  auto code = daemon_->wait_exit(std::chrono::seconds(20));
  ASSERT_TRUE(code) << "a second SIGTERM must not wait for the 60 s grace";
  EXPECT_EQ(*code, 0);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 10.0);
  auto states = read_job_states(db_path());
  EXPECT_TRUE(states[ids[0]] == "running" || states[ids[0]] == "queued") << states[ids[0]];

  restart_origin(std::chrono::milliseconds(0));  // (the URL's own latency still applies: 30 s)
  ASSERT_TRUE(start());
  auto c2 = connect();
  EXPECT_EQ(c2.request(json{{"op", "status"}, {"id", ids[0]}})["result"]["job"]["state"], "running")
      << "re-queued at the start and running again";
}

TEST_F(Lifecycle, SighupReloadsAValidConfigAndAddsItsJobs) {
  config_.jobs.push_back({bytes_url(100, "h1.bin", 1), "h1.bin"});
  ASSERT_TRUE(start());
  auto w = watch();
  std::size_t n0 = notify_.size();
  config_.jobs.push_back({bytes_url(200, "h2.bin", 2), "h2.bin"});
  write_config();
  timespec before{};
  clock_gettime(CLOCK_MONOTONIC, &before);
  daemon_->signal(SIGHUP);

  auto reloading = notify_.wait_for("RELOADING=1", n0, deadline_in(kFailsafe));
  ASSERT_TRUE(reloading) << "no RELOADING=1";
  std::string usec = field(notify_.messages()[*reloading], "MONOTONIC_USEC");
  ASSERT_FALSE(usec.empty()) << "RELOADING=1 comes with MONOTONIC_USEC: " << notify_.messages()[*reloading];
  long long then = before.tv_sec * 1'000'000LL + before.tv_nsec / 1000;
  EXPECT_GE(std::stoll(usec), then);
  EXPECT_LT(std::stoll(usec), then + 60'000'000LL);
  EXPECT_TRUE(notify_.wait_for("READY=1", *reloading + 1, deadline_in(kFailsafe)))
      << "READY=1 after the reload";

  w.read_until(
      [&](const json& e) {
        return e.value("event", "") == "done" && e["job"]["dest"] == out("h2.bin").string();
      },
      deadline_in(kFailsafe));
  EXPECT_EQ(file_sha256_hex(out("h2.bin")), origin::body_sha256_hex(200, 2));
  auto c = connect();
  EXPECT_EQ(list_all(c).size(), 2u);
  EXPECT_EQ(requests_.count(bytes_path(100, "h1.bin")), 1u);
}

TEST_F(Lifecycle, SighupWithAnInvalidConfigKeepsTheOldOneAndStaysReady) {
  config_.concurrency = 3;
  ASSERT_TRUE(start());
  auto c = connect();
  std::size_t n0 = notify_.size();
  std::size_t log0 = daemon_->log_size();
  write_file(config_path_, "strategy:\n  concurrency: lots\n  kind: warp-drive\noutput: [\n");
  daemon_->signal(SIGHUP);
  ASSERT_TRUE(daemon_->wait_log("the configuration stays as it was", deadline_in(kFailsafe), log0))
      << "the failed reload is logged";
  std::string log = daemon_->log().substr(log0);
  EXPECT_NE(log.find(config_path_.filename().string()), std::string::npos)
      << "the error names the file: " << log;

  write_file(config_path_, "strategy:\n  concurrency: lots\n  kind: warp-drive\n");
  std::size_t log1 = daemon_->log_size();
  daemon_->signal(SIGHUP);
  ASSERT_TRUE(daemon_->wait_log("the configuration stays as it was", deadline_in(kFailsafe), log1));
  log = daemon_->log().substr(log1);
  EXPECT_NE(log.find("strategy.concurrency"), std::string::npos) << log;
  EXPECT_NE(log.find("strategy.kind"), std::string::npos) << log;

  // Nothing was reloaded or stopped; status updates go on; the old config is in force.
  std::size_t n1 = notify_.size();
  EXPECT_FALSE(notify_.find("RELOADING=1", n0)) << "no RELOADING=1 for a reload that failed";
  EXPECT_FALSE(notify_.find("STOPPING=1", n0));
  // STATUS= comes every second.
  EXPECT_TRUE(notify_.wait_prefix("STATUS=active=", n1, deadline_in(std::chrono::seconds(10))))
      << "the daemon still reports its status";
  EXPECT_TRUE(daemon_->running());
  json st = c.request(json{{"op", "stats"}});
  EXPECT_EQ(st["result"]["concurrency"], 3);
  auto w = watch();
  auto ids = submit(c, json::array({job(1000, "still.bin", 4)}));
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_EQ(wait_finished(w, {ids[0]})[ids[0]], "done");
}

TEST_F(Lifecycle, SocketActivationServesOnThePassedSocketOnly) {
  fs::path activated = dir_.path() / "activated.sock";
  core::UniqueFd listener(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(listener);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, activated.c_str());
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  ASSERT_EQ(listen(listener.get(), 16), 0);

  ASSERT_TRUE(start(listener.get()));
  LineClient c(activated);
  json r = c.request(json{{"op", "ping"}});
  expect_ok(r);
  EXPECT_EQ(r["result"]["pid"], daemon_->pid());
  EXPECT_FALSE(fs::exists(config_.socket)) << "control.socket is not created when systemd passes the socket";
  EXPECT_TRUE(daemon_->wait_log("socket activation", deadline_in(std::chrono::seconds(5))));

  auto w = watch_on(LineClient(activated));
  auto ids = submit(c, json::array({job(2000, "sa.bin", 9)}));
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_EQ(wait_finished(w, {ids[0]})[ids[0]], "done");

  ASSERT_EQ(terminate(), 0);
  EXPECT_TRUE(fs::exists(activated)) << "the socket file belongs to systemd: never removed by the daemon";
  EXPECT_FALSE(fs::exists(config_.socket));
}

TEST_F(Lifecycle, StartupFailsWithExit1OnACorruptDatabase) {
  fs::create_directories(config_.state_dir);
  std::string garbage;
  for (int i = 0; i < 4096; ++i) garbage += static_cast<char>((i * 7919 + 13) & 0xff);
  write_file(db_path(), garbage);
  auto code = run_to_exit();
  ASSERT_TRUE(code) << "still running with a corrupt jobs.db";
  EXPECT_EQ(*code, 1);
  EXPECT_NE(daemon_->log().find(db_path().string()), std::string::npos) << "the message names the database";
  EXPECT_FALSE(fs::exists(config_.socket));
  EXPECT_EQ(read_file(db_path()), garbage) << "the file is left as it was";
}

TEST_F(Lifecycle, StartupFailsWithExit78OnAnInvalidConfig) {
  write_config();
  write_file(config_path_, config_.yaml() + "strategy_kind: fast\n");
  daemon_ =
      std::make_unique<DaemonProcess>(DaemonProcess::Options{.config = config_path_, .notify = &notify_});
  auto code = daemon_->wait_exit(kFailsafe);
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 78);
  EXPECT_NE(daemon_->log().find("strategy_kind"), std::string::npos) << daemon_->log();
  EXPECT_FALSE(fs::exists(config_.socket));
  EXPECT_FALSE(notify_.find("READY=1"));
}

TEST_F(Lifecycle, StartupFailsWithExit1WhenAnotherDaemonHoldsTheSocket) {
  ASSERT_TRUE(start());
  auto first = std::move(daemon_);
  auto c = connect();

  DaemonConfig second = config_;
  second.state_dir = dir_.path() / "state2";
  second.output_dir = dir_.path() / "out2";
  fs::path second_path = dir_.path() / "second.yaml";
  write_file(second_path, second.yaml());
  DaemonProcess other(DaemonProcess::Options{.config = second_path, .notify = &notify_});
  auto code = other.wait_exit(kFailsafe);
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 1);
  EXPECT_NE(other.log().find(config_.socket.string()), std::string::npos) << "names the socket:\n"
                                                                          << other.log();

  // The first one is unharmed, its socket file still there.
  EXPECT_TRUE(fs::exists(config_.socket));
  json r = c.request(json{{"op", "ping"}});
  EXPECT_EQ(r["result"]["pid"], first->pid());
  LineClient fresh(config_.socket);
  EXPECT_EQ(fresh.request(json{{"op", "ping"}})["result"]["pid"], first->pid());
}

// A new user's first run: the socket's folder does not exist yet. It is created (0755 or tighter, like the
// state folder), and the log says where the store is.
TEST_F(Lifecycle, TheSocketsFolderIsCreatedWhenMissing) {
  config_.socket = dir_.path() / "run" / "fetchd" / "ctl.sock";
  ASSERT_TRUE(start());
  struct stat st {};
  ASSERT_EQ(::stat(config_.socket.parent_path().c_str(), &st), 0) << std::strerror(errno);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777 & ~0755U, 0u) << std::oct << (st.st_mode & 07777);
  expect_ok(connect().request(json{{"op", "ping"}}));
  EXPECT_TRUE(daemon_->wait_log("store=" + db_path().string(), deadline_in(kFailsafe)))
      << "the ready line names the store:\n"
      << daemon_->log();
  ASSERT_EQ(terminate(), 0);
}

// When the folder cannot be made, the error says which setting to change.
TEST_F(Lifecycle, ASocketFolderThatCannotBeMadeNamesControlSocket) {
  write_file(dir_.path() / "not-a-folder", "x");
  config_.socket = dir_.path() / "not-a-folder" / "ctl.sock";
  auto code = run_to_exit();
  ASSERT_TRUE(code) << "still running";
  EXPECT_EQ(*code, 1);
  const std::string log = daemon_->log();
  EXPECT_NE(log.find((dir_.path() / "not-a-folder").string()), std::string::npos) << log;
  EXPECT_NE(log.find("control.socket"), std::string::npos) << "says what to set:\n" << log;
  EXPECT_FALSE(notify_.find("READY=1"));
}

// config/local.yaml, the README's first run, copied to a folder of its own: everything it writes lands in
// fetchd-data/ next to it, whatever the working directory.
TEST_F(Lifecycle, TheShippedLocalConfigKeepsEverythingNextToIt) {
  const fs::path folder = dir_.path() / "mine";
  fs::create_directories(folder);
  fs::copy_file(fs::path(FETCHD_SOURCE_ROOT) / "config" / "local.yaml", folder / "local.yaml");
  const fs::path data = folder / "fetchd-data";
  daemon_ = std::make_unique<DaemonProcess>(
      DaemonProcess::Options{.config = folder / "local.yaml", .notify = &notify_});
  ASSERT_TRUE(daemon_->wait_ready()) << daemon_->log();
  LineClient c(data / "fetchd.sock");
  json stats = c.request(json{{"op", "stats"}})["result"];
  EXPECT_EQ(stats["store"], (data / "jobs.db").string());
  auto w = watch_on(LineClient(data / "fetchd.sock"));
  auto ids = submit(c, json::array({job(1000, "first.bin", 1)}));
  ASSERT_EQ(ids.size(), 1u);
  wait_finished(w, {ids[0]});
  EXPECT_EQ(file_sha256_hex(data / "downloads" / "first.bin"), origin::body_sha256_hex(1000, 1));
  struct stat st {};
  ASSERT_EQ(::stat((data / "fetchd.sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "only this user";
  ASSERT_EQ(terminate(), 0);
}

TEST_F(Lifecycle, TimeFromSpawnToReady) {
  std::vector<double> ms;
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(start());
    ms.push_back(daemon_->ready_ms());
    ASSERT_EQ(terminate(), 0);
  }
  std::sort(ms.begin(), ms.end());
  std::cout << "[ measure ] spawn -> READY=1: median " << ms[ms.size() / 2] << " ms (min " << ms.front()
            << ", max " << ms.back() << ", 5 starts)\n";
  EXPECT_LT(ms[ms.size() / 2], 10'000.0);
}

}  // namespace
}  // namespace fetchd::service_test
