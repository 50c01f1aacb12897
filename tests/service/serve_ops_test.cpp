// SPDX-License-Identifier: Apache-2.0
// Every op of the control protocol against a live `fetchd serve`: ping, submit (dedupe, conflict), status,
// list (filter, paging), cancel (queued in the window, queued beyond it, running, finished), stats, watch,
// reload; and the config's job list, enqueued idempotently at each start and reload.

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <map>
#include <set>

#include "fetchd/core/version.hpp"
#include "serve_fixture.hpp"

namespace fetchd::service_test {
namespace {

class ServeOps : public ServeFixture {};

TEST_F(ServeOps, PingAnswersVersionAndPidAndEchoesReq) {
  ASSERT_TRUE(start());
  auto c = connect();
  json r = c.request(json{{"op", "ping"}, {"req", {{"n", 1}, {"s", "x"}}}});
  expect_ok(r);
  EXPECT_EQ(r["op"], "ping");
  EXPECT_EQ(r["req"], (json{{"n", 1}, {"s", "x"}}));
  EXPECT_EQ(r["result"]["version"], core::kVersion);
  EXPECT_EQ(r["result"]["pid"], daemon_->pid());
  // Without req there is no req in the answer; "\r\n" endings are tolerated.
  ASSERT_TRUE(c.send_raw("{\"op\":\"ping\"}\r\n"));
  auto line = c.read_line();
  ASSERT_TRUE(line);
  json r2 = json::parse(*line);
  expect_ok(r2);
  EXPECT_FALSE(r2.contains("req"));
}

TEST_F(ServeOps, SubmitOneAndManyWithKeyDedupe) {
  ASSERT_TRUE(start());
  auto c = connect();
  auto w = watch();

  json one = job(1000, "one.bin", 1);
  one["key"] = "k-one";
  json r = c.request(json{{"op", "submit"}, {"req", 7}, {"jobs", json::array({one})}});
  expect_ok(r);
  EXPECT_EQ(r["req"], 7);
  ASSERT_EQ(r["result"]["jobs"].size(), 1u);
  const json& first = r["result"]["jobs"][0];
  auto id = first.at("id").get<std::int64_t>();
  EXPECT_GT(id, 0);
  EXPECT_EQ(first["existing"], false);

  // The same key again (even with another URL and dest): the existing job, not a new one.
  json again = job(2000, "other.bin", 2);
  again["key"] = "k-one";
  json r2 = c.request(json{{"op", "submit"}, {"jobs", json::array({again})}});
  expect_ok(r2);
  EXPECT_EQ(r2["result"]["jobs"][0]["id"], id);
  EXPECT_EQ(r2["result"]["jobs"][0]["existing"], true);

  json many = json::array();
  for (int i = 0; i < 50; ++i) many.push_back(job(500 + i, "many/" + std::to_string(i) + ".bin", 100 + i));
  json r3 = c.request(json{{"op", "submit"}, {"jobs", many}});
  expect_ok(r3);
  ASSERT_EQ(r3["result"]["jobs"].size(), 50u);
  std::set<std::int64_t> ids{id};
  std::int64_t previous = id;
  for (const auto& j : r3["result"]["jobs"]) {
    EXPECT_EQ(j["existing"], false);
    EXPECT_EQ(j["state"], "queued");
    auto jid = j["id"].get<std::int64_t>();
    EXPECT_GT(jid, previous) << "ids follow the request order";
    previous = jid;
    ids.insert(jid);
  }
  EXPECT_EQ(ids.size(), 51u);

  auto finished = wait_finished(w, ids);
  for (const auto& [jid, ev] : finished) EXPECT_EQ(ev, "done") << jid;
  EXPECT_EQ(file_sha256_hex(out("one.bin")), origin::body_sha256_hex(1000, 1));
  EXPECT_FALSE(fs::exists(out("other.bin")));
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(file_sha256_hex(out("many/" + std::to_string(i) + ".bin")),
              origin::body_sha256_hex(500 + i, 100 + i));
  }
  // Finished: the key still finds the job, which is not downloaded again.
  json r4 = c.request(json{{"op", "submit"}, {"jobs", json::array({one})}});
  EXPECT_EQ(r4["result"]["jobs"][0]["id"], id);
  EXPECT_EQ(r4["result"]["jobs"][0]["existing"], true);
  EXPECT_EQ(r4["result"]["jobs"][0]["state"], "done");
  EXPECT_EQ(requests_.count(bytes_path(1000, "one.bin")), 1u);
  EXPECT_EQ(requests_.count(bytes_path(2000, "other.bin")), 0u);
}

TEST_F(ServeOps, SubmitConflictOnADestOfAnUnfinishedJob) {
  config_.concurrency = 1;
  ASSERT_TRUE(start());
  auto c = connect();
  auto w = watch();
  auto slow = submit(c, json::array({job(100, "slow.bin", 1, "30s", "c.bin")}));
  ASSERT_EQ(slow.size(), 1u);

  json r = c.request(json{{"op", "submit"}, {"jobs", json::array({job(200, "other.bin", 2, "", "c.bin")})}});
  EXPECT_EQ(error_code(r), "conflict");
  EXPECT_EQ(r["op"], "submit");
  std::string msg = r["error"].value("message", "");
  EXPECT_NE(msg.find("jobs[0]"), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::to_string(slow[0])), std::string::npos) << msg;

  // The conflicting job in second place of a request: the message names jobs[1].
  json r2 =
      c.request(json{{"op", "submit"},
                     {"jobs", json::array({job(300, "d.bin", 3), job(200, "other.bin", 2, "", "c.bin")})}});
  EXPECT_EQ(error_code(r2), "conflict");
  EXPECT_NE(r2["error"].value("message", "").find("jobs[1]"), std::string::npos) << r2.dump();
  // The other job of that request was stored, and the answer says so: the client knows its id.
  const json& outcome = r2["error"]["jobs"];
  ASSERT_TRUE(outcome.is_array()) << r2.dump();
  ASSERT_EQ(outcome.size(), 2u);
  EXPECT_EQ(outcome[0]["existing"], false);
  const auto stored = outcome[0]["id"].get<std::int64_t>();
  EXPECT_EQ(outcome[1], (json{{"error", "conflict"}, {"conflicts_with", slow[0]}}));
  EXPECT_EQ(c.request(json{{"op", "status"}, {"id", stored}})["result"]["job"]["dest"],
            out("d.bin").string());

  // Once the first job is finished (cancelled here), the dest is free again.
  json cancel = c.request(json{{"op", "cancel"}, {"id", slow[0]}});
  expect_ok(cancel);
  wait_finished(w, {slow[0]});
  auto again = submit(c, json::array({job(200, "other.bin", 2, "", "c.bin")}));
  ASSERT_EQ(again.size(), 1u);
  EXPECT_NE(again[0], slow[0]);
  auto finished = wait_finished(w, {again[0]});
  EXPECT_EQ(finished[again[0]], "done");
  EXPECT_EQ(file_sha256_hex(out("c.bin")), origin::body_sha256_hex(200, 2));
}

// on_exists: skip (the default) with the destination already there: the job ends done, says skipped: true in
// status, list and its watch event, and the file is left alone; a job that downloaded says skipped: false.
TEST_F(ServeOps, AJobWhoseDestinationExistsIsDoneWithSkippedTrue) {
  fs::create_directories(config_.output_dir);
  write_file(out("there.bin"), "kept");
  ASSERT_TRUE(start());
  auto c = connect();
  auto w = watch();
  auto ids = submit(c, json::array({job(1000, "there.bin", 1), job(1000, "fresh.bin", 2)}));
  ASSERT_EQ(ids.size(), 2u);
  const auto there = ids[0];
  const auto fresh = ids[1];
  std::map<std::int64_t, json> done_events;
  w.read_until(
      [&](const json& e) {
        if (e.value("event", "") == "done") done_events[e["job"]["id"].get<std::int64_t>()] = e["job"];
        return done_events.size() == 2;
      },
      deadline_in(kFailsafe));
  EXPECT_EQ(done_events[there]["skipped"], true) << done_events[there].dump();
  EXPECT_EQ(done_events[fresh]["skipped"], false) << done_events[fresh].dump();

  json s1 = c.request(json{{"op", "status"}, {"id", there}})["result"]["job"];
  EXPECT_EQ(s1["state"], "done");
  EXPECT_EQ(s1["skipped"], true) << s1.dump();
  EXPECT_EQ(s1["bytes"], 0);
  json s2 = c.request(json{{"op", "status"}, {"id", fresh}})["result"]["job"];
  EXPECT_EQ(s2["state"], "done");
  EXPECT_EQ(s2["skipped"], false) << s2.dump();
  EXPECT_EQ(s2["bytes"], 1000);

  auto listed = list_all(c, 1000, std::string("done"));
  ASSERT_EQ(listed.size(), 2u);
  for (const auto& j : listed) EXPECT_EQ(j["skipped"], j["id"] == there) << j.dump();

  EXPECT_EQ(read_file(out("there.bin")), "kept") << "on_exists: skip leaves the file as it was";
  EXPECT_EQ(requests_.count(bytes_path(1000, "there.bin")), 0u) << "nothing was downloaded";
  EXPECT_EQ(file_sha256_hex(out("fresh.bin")), origin::body_sha256_hex(1000, 2));

  // It is stored: a restart still says so.
  ASSERT_EQ(terminate(), 0);
  ASSERT_TRUE(start());
  auto c2 = connect();
  EXPECT_EQ(c2.request(json{{"op", "status"}, {"id", there}})["result"]["job"]["skipped"], true);
  EXPECT_EQ(c2.request(json{{"op", "status"}, {"id", fresh}})["result"]["job"]["skipped"], false);
}

TEST_F(ServeOps, StatusOfQueuedRunningDoneAndUnknownJobs) {
  config_.concurrency = 1;
  ASSERT_TRUE(start());
  auto c = connect();
  auto w = watch();
  auto ids = submit(c, json::array({job(4096, "s1.bin", 11, "1500ms"), job(100, "s2.bin", 12)}));
  ASSERT_EQ(ids.size(), 2u);
  w.read_until([&](const json& e) { return e.value("event", "") == "started" && e["job"]["id"] == ids[0]; },
               deadline_in(kFailsafe));
  json running = c.request(json{{"op", "status"}, {"id", ids[0]}});
  expect_ok(running);
  EXPECT_EQ(running["result"]["job"]["state"], "running");
  json queued = c.request(json{{"op", "status"}, {"id", ids[1]}});
  EXPECT_EQ(queued["result"]["job"]["state"], "queued");

  wait_finished(w, {ids[0], ids[1]});
  json r = c.request(json{{"op", "status"}, {"id", ids[0]}, {"req", "s"}});
  expect_ok(r);
  EXPECT_EQ(r["req"], "s");
  const json& j = r["result"]["job"];
  EXPECT_EQ(j["id"], ids[0]);
  EXPECT_EQ(j["state"], "done");
  EXPECT_EQ(j["dest"], out("s1.bin").string());
  EXPECT_EQ(j["attempts"], 1);
  EXPECT_EQ(j["error"], "");
  EXPECT_EQ(j["bytes"], 4096);
  EXPECT_EQ(j["size"], 4096);
  EXPECT_EQ(j["sha256"], origin::body_sha256_hex(4096, 11));
  EXPECT_EQ(j["priority"], 0);
  EXPECT_TRUE(j["key"].is_null());
  // The query may carry credentials: its values are never shown (security.redact_query defaults to "*").
  EXPECT_EQ(j["url"].get<std::string>().find("seed=11"), std::string::npos) << j["url"];
  EXPECT_NE(j["url"].get<std::string>().find("seed=…"), std::string::npos) << j["url"];
  for (const char* t : {"created", "updated", "finished"}) {
    ASSERT_TRUE(j[t].is_string()) << t << ": " << j.dump();
    EXPECT_EQ(j[t].get<std::string>().back(), 'Z') << j[t];
  }

  json missing = c.request(json{{"op", "status"}, {"id", 999999}});
  EXPECT_EQ(error_code(missing), "not_found");
  EXPECT_EQ(missing["op"], "status");
}

TEST_F(ServeOps, ListFiltersByStateAndPagesWithAfter) {
  config_.concurrency = 1;
  ASSERT_TRUE(start());
  auto c = connect();
  auto w = watch();
  json fast = json::array();
  for (int i = 0; i < 10; ++i) fast.push_back(job(100, "l/f" + std::to_string(i), 200 + i));
  auto done_ids = submit(c, fast);
  ASSERT_EQ(done_ids.size(), 10u);
  wait_finished(w, std::set<std::int64_t>(done_ids.begin(), done_ids.end()));

  json rest = json::array({job(100, "l/slow", 300, "30s")});
  for (int i = 0; i < 5; ++i) rest.push_back(job(100, "l/q" + std::to_string(i), 310 + i));
  auto rest_ids = submit(c, rest);
  ASSERT_EQ(rest_ids.size(), 6u);
  w.read_until(
      [&](const json& e) { return e.value("event", "") == "started" && e["job"]["id"] == rest_ids[0]; },
      deadline_in(kFailsafe));

  auto count = [&](const char* state) {
    json r = c.request(json{{"op", "list"}, {"state", state}});
    expect_ok(r);
    for (const auto& j : r["result"]["jobs"]) EXPECT_EQ(j["state"], state);
    EXPECT_EQ(r["result"]["jobs"].size(), r["result"]["total"].get<std::size_t>());
    return r["result"]["total"].get<std::uint64_t>();
  };
  EXPECT_EQ(count("done"), 10u);
  EXPECT_EQ(count("running"), 1u);
  EXPECT_EQ(count("queued"), 5u);
  EXPECT_EQ(count("failed"), 0u);

  // Keyset paging: pages of 3, each starting after the last id of the one before, until next_after is null.
  std::vector<std::int64_t> paged;
  std::uint64_t after = 0;
  int pages = 0;
  for (; pages < 20; ++pages) {
    json r = c.request(json{{"op", "list"}, {"limit", 3}, {"after", after}});
    expect_ok(r);
    EXPECT_EQ(r["result"]["total"], 16);
    EXPECT_LE(r["result"]["jobs"].size(), 3u);
    for (const auto& j : r["result"]["jobs"]) paged.push_back(j["id"].get<std::int64_t>());
    if (r["result"]["next_after"].is_null()) break;
    EXPECT_EQ(r["result"]["next_after"], paged.back());
    after = r["result"]["next_after"].get<std::uint64_t>();
  }
  EXPECT_GE(pages, 5);
  std::vector<std::int64_t> all(done_ids);
  all.insert(all.end(), rest_ids.begin(), rest_ids.end());
  EXPECT_EQ(paged, all);

  // offset within a state filter.
  json r = c.request(json{{"op", "list"}, {"state", "done"}, {"offset", 2}, {"limit", 3}});
  expect_ok(r);
  ASSERT_EQ(r["result"]["jobs"].size(), 3u);
  EXPECT_EQ(r["result"]["jobs"][0]["id"], done_ids[2]);
  EXPECT_EQ(r["result"]["jobs"][2]["id"], done_ids[4]);
}

TEST_F(ServeOps, CancelQueuedInAndBeyondTheWindowRunningAndFinished) {
  // Every slot is held by a slow job, so the rest stays queued: the first 1024 in the scheduler's window (its
  // minimum size), the others only in the store.
  config_.concurrency = 4;
  ASSERT_TRUE(start());
  auto c = connect();
  auto w = watch();
  auto first = submit(c, json::array({job(100, "done.bin", 1)}));
  ASSERT_EQ(first.size(), 1u);
  wait_finished(w, {first[0]});

  json slow_jobs = json::array();
  for (int i = 0; i < 4; ++i)
    slow_jobs.push_back(job(100000, "slow" + std::to_string(i) + ".bin", 2 + i, "30s"));
  auto slow = submit(c, slow_jobs);
  ASSERT_EQ(slow.size(), 4u);
  for (int started = 0; started < 4;) {
    w.read_until([&](const json& e) { return e.value("event", "") == "started"; }, deadline_in(kFailsafe));
    ++started;
  }

  json flood = json::array();
  for (int i = 0; i < 1100; ++i) flood.push_back(job(10, "q/" + std::to_string(i), 1000 + i));
  auto queued = submit(c, flood);
  ASSERT_EQ(queued.size(), 1100u);

  // A queued job in the scheduler's window, and the last one, which only the store holds.
  for (auto id : {queued[1], queued.back()}) {
    SCOPED_TRACE(id);
    json r = c.request(json{{"op", "cancel"}, {"id", id}});
    expect_ok(r);
    EXPECT_EQ(r["result"]["job"]["state"], "cancelled");
    json s = c.request(json{{"op", "status"}, {"id", id}});
    EXPECT_EQ(s["result"]["job"]["state"], "cancelled");
  }

  // The running ones: answered "running" (the transfer stops) or "cancelled"; they end cancelled, no file.
  for (auto id : slow) {
    json r = c.request(json{{"op", "cancel"}, {"id", id}});
    expect_ok(r);
    std::string state = r["result"]["job"]["state"];
    EXPECT_TRUE(state == "running" || state == "cancelled") << state;
  }
  auto finished = wait_finished(w, std::set<std::int64_t>(slow.begin(), slow.end()));
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(finished[slow[i]], "cancelled");
    EXPECT_EQ(c.request(json{{"op", "status"}, {"id", slow[i]}})["result"]["job"]["state"], "cancelled");
    EXPECT_FALSE(fs::exists(out("slow" + std::to_string(i) + ".bin")));
  }

  // The slot is free: the rest runs; the two cancelled ones never do.
  std::set<std::int64_t> rest(queued.begin(), queued.end());
  rest.erase(queued[1]);
  rest.erase(queued.back());
  auto done = wait_finished(w, rest);
  EXPECT_EQ(done.size(), rest.size());
  for (auto id : {queued[1], queued.back()}) {
    EXPECT_EQ(c.request(json{{"op", "status"}, {"id", id}})["result"]["job"]["state"], "cancelled");
  }
  EXPECT_FALSE(fs::exists(out("q/1")));
  EXPECT_FALSE(fs::exists(out("q/1099")));
  EXPECT_EQ(requests_.count(bytes_path(10, "q/1")), 0u);
  EXPECT_EQ(requests_.count(bytes_path(10, "q/1099")), 0u);

  // A finished job: ok, state unchanged; an unknown id: not_found.
  json fin = c.request(json{{"op", "cancel"}, {"id", first[0]}});
  expect_ok(fin);
  EXPECT_EQ(fin["result"]["job"]["state"], "done");
  EXPECT_TRUE(fs::exists(out("done.bin")));
  EXPECT_EQ(error_code(c.request(json{{"op", "cancel"}, {"id", 999999}})), "not_found");
}

TEST_F(ServeOps, StatsCountsJobsByState) {
  ASSERT_TRUE(start());
  auto c = connect();
  auto w = watch();
  json jobs = json::array();
  for (int i = 0; i < 5; ++i) jobs.push_back(job(1000, "st" + std::to_string(i), i));
  jobs.push_back(json{{"url", origin_->url("/status/404")}, {"dest", "missing.bin"}});
  auto ids = submit(c, jobs);
  ASSERT_EQ(ids.size(), 6u);
  std::set<std::int64_t> ok_ids(ids.begin(), ids.end() - 1);
  // The 404 fails (permanent, no retry); read its event without counting it as a test failure.
  std::set<std::int64_t> pending(ids.begin(), ids.end());
  auto deadline = deadline_in(kFailsafe);
  while (!pending.empty()) {
    json e = w.read_until(
        [](const json& e) {
          auto ev = e.value("event", "");
          return ev == "done" || ev == "failed";
        },
        deadline);
    pending.erase(e["job"]["id"].get<std::int64_t>());
    EXPECT_EQ(e["event"], e["job"]["id"] == ids.back() ? "failed" : "done") << e.dump();
  }

  json r = c.request(json{{"op", "stats"}, {"req", 1}});
  expect_ok(r);
  const json& s = r["result"];
  EXPECT_EQ(s["strategy"], "event-loop");
  EXPECT_EQ(s["concurrency"], config_.concurrency);
  EXPECT_EQ(s["done"], 5);
  EXPECT_EQ(s["failed"], 1);
  EXPECT_EQ(s["queued"], 0);
  EXPECT_EQ(s["cancelled"], 0);
  EXPECT_EQ(s["active"], 0);
  EXPECT_GE(s["bytes"].get<std::uint64_t>(), 5000u);
  for (const char* f : {"files_per_s", "mib_per_s", "uptime_s"}) EXPECT_TRUE(s[f].is_number()) << f;
  EXPECT_GT(s["uptime_s"].get<double>(), 0.0);
  EXPECT_EQ(s.value("store", std::string()), db_path().string())
      << "where the job store is (state.dir/jobs.db)";
  json failed = c.request(json{{"op", "status"}, {"id", ids.back()}})["result"]["job"];
  EXPECT_EQ(failed["state"], "failed");
  EXPECT_NE(failed["error"].get<std::string>().find("404"), std::string::npos) << failed.dump();
  EXPECT_FALSE(fs::exists(out("missing.bin")));
}

TEST_F(ServeOps, WatchSendsJobEventsInOrderAndStatsEverySecond) {
  ASSERT_TRUE(start());
  auto c = connect();
  auto w = watch();
  auto ids = submit(c, json::array({job(3000, "w.bin", 5, "300ms")}));
  ASSERT_EQ(ids.size(), 1u);
  std::vector<std::string> events;
  bool stats_seen = false;
  auto deadline = deadline_in(kFailsafe);
  for (int i = 0; i < 10'000 && (events.empty() || events.back() != "done" || !stats_seen); ++i) {
    auto line = w.read_line(deadline);
    ASSERT_TRUE(line) << "watch ended early; events so far: " << json(events).dump();
    json e = json::parse(*line);
    ASSERT_TRUE(e.contains("event")) << *line;
    if (e["event"] == "stats") {
      stats_seen = true;
      for (const char* f : {"strategy", "active", "queued", "done", "failed", "bytes", "uptime_s"}) {
        EXPECT_TRUE(e["stats"].contains(f)) << f << " in " << *line;
      }
      continue;
    }
    if (e["job"]["id"] != ids[0]) continue;
    if (e["event"] == "progress") continue;
    events.push_back(e["event"]);
    const json& j = e["job"];
    for (const char* f : {"url", "dest", "state", "attempts", "bytes", "size", "error"}) {
      EXPECT_TRUE(j.contains(f)) << f << " in " << *line;
    }
    if (e["event"] == "done") {
      EXPECT_EQ(j["state"], "done");
      EXPECT_EQ(j["bytes"], 3000);
      EXPECT_EQ(j["dest"], out("w.bin").string());
    }
  }
  EXPECT_EQ(events, (std::vector<std::string>{"queued", "started", "done"}));
  EXPECT_TRUE(stats_seen);
}

TEST_F(ServeOps, ReloadOpAppliesAValidConfigAndRefusesAnInvalidOne) {
  config_.jobs.push_back({bytes_url(100, "cfg1.bin", 1), "cfg1.bin"});
  ASSERT_TRUE(start());
  auto c = connect();
  auto w = watch();

  config_.jobs.push_back({bytes_url(200, "cfg2.bin", 2), "cfg2.bin"});
  write_config();
  json r = c.request(json{{"op", "reload"}, {"req", "r1"}});
  expect_ok(r);
  EXPECT_EQ(r["req"], "r1");
  EXPECT_EQ(r["result"]["reloaded"], true);
  // docs: {"reloaded":true,"jobs_added":N}; cfg2.bin is the one new job of the list.
  EXPECT_TRUE(r["result"].contains("jobs_added")) << r.dump();
  EXPECT_EQ(r["result"].value("jobs_added", json()), 1) << r.dump();
  w.read_until(
      [&](const json& e) {
        return e.value("event", "") == "done" && e["job"]["dest"] == out("cfg2.bin").string();
      },
      deadline_in(kFailsafe));
  EXPECT_EQ(file_sha256_hex(out("cfg2.bin")), origin::body_sha256_hex(200, 2));

  std::string good_yaml = config_.yaml();
  write_file(config_path_, good_yaml + "bogus_section: 1\nstrategy_typo: {}\n");
  std::size_t log_from = daemon_->log_size();
  json bad = c.request(json{{"op", "reload"}});
  EXPECT_EQ(error_code(bad), "reload_failed");
  EXPECT_EQ(bad["op"], "reload");
  std::string msg = bad["error"].value("message", "");
  EXPECT_NE(msg.find("bogus_section"), std::string::npos) << msg;
  EXPECT_NE(msg.find("strategy_typo"), std::string::npos) << msg;
  EXPECT_NE(msg.find('\n'), std::string::npos) << "one line per error: " << msg;
  EXPECT_TRUE(daemon_->wait_log("bogus_section", deadline_in(kFailsafe), log_from)) << "the error is logged";

  // Still serving, with the old config.
  expect_ok(c.request(json{{"op", "ping"}}));
  auto ids = submit(c, json::array({job(300, "after.bin", 3)}));
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_EQ(wait_finished(w, {ids[0]})[ids[0]], "done");
  EXPECT_EQ(requests_.count(bytes_path(100, "cfg1.bin")), 1u);
  EXPECT_EQ(requests_.count(bytes_path(200, "cfg2.bin")), 1u);
}

TEST_F(ServeOps, ConfigJobsAreEnqueuedOnceAcrossRestartsAndReloads) {
  config_.jobs.push_back({bytes_url(100, "a.bin", 1), "a.bin"});
  config_.jobs.push_back({bytes_url(200, "b.bin", 2), "sub/b.bin"});
  ASSERT_TRUE(start());
  {
    auto c = connect();
    auto w = watch();
    // Both may be done before the watch began: wait on the stats events instead.
    w.read_until([](const json& e) { return e.value("event", "") == "stats" && e["stats"]["done"] == 2; },
                 deadline_in(kFailsafe));
    auto jobs = list_all(c);
    ASSERT_EQ(jobs.size(), 2u);
    for (const auto& j : jobs) {
      EXPECT_EQ(j["state"], "done");
      EXPECT_TRUE(j["key"].is_null()) << "a config key embeds the URL: never shown";
    }
    expect_ok(c.request(json{{"op", "reload"}}));
    EXPECT_EQ(list_all(c).size(), 2u);
  }
  ASSERT_EQ(terminate(), 0);
  ASSERT_TRUE(start());
  auto c = connect();
  EXPECT_EQ(list_all(c).size(), 2u);
  EXPECT_EQ(requests_.count(bytes_path(100, "a.bin")), 1u);
  EXPECT_EQ(requests_.count(bytes_path(200, "b.bin")), 1u);
  EXPECT_EQ(file_sha256_hex(out("sub/b.bin")), origin::body_sha256_hex(200, 2));
}

// "priority: higher runs first" (protocol v1): with the only slot busy, a job submitted later with a higher
// priority starts before an earlier one with the default priority, whether they came in one request or two.
TEST_F(ServeOps, AHigherPriorityJobStartsFirst) {
  config_.concurrency = 1;
  ASSERT_TRUE(start());
  auto c = connect();
  auto w = watch();
  auto slow = submit(c, json::array({job(100, "busy.bin", 1, "30s")}));
  ASSERT_EQ(slow.size(), 1u);
  w.read_until([](const json& e) { return e.value("event", "") == "started"; }, deadline_in(kFailsafe));

  json low = job(100, "low.bin", 2);
  json high = job(100, "high.bin", 3);
  high["priority"] = 5;
  auto low_id = submit(c, json::array({low}));
  auto high_id = submit(c, json::array({high}));
  json low2 = job(100, "low2.bin", 4);
  json high2 = job(100, "high2.bin", 5);
  high2["priority"] = 7;
  auto pair = submit(c, json::array({low2, high2}));
  ASSERT_EQ(low_id.size() + high_id.size() + pair.size(), 4u);
  EXPECT_EQ(c.request(json{{"op", "status"}, {"id", high_id[0]}})["result"]["job"]["priority"], 5);

  expect_ok(c.request(json{{"op", "cancel"}, {"id", slow[0]}}));
  std::vector<std::int64_t> order;
  while (order.size() < 4) {
    json e =
        w.read_until([](const json& e) { return e.value("event", "") == "started"; }, deadline_in(kFailsafe));
    order.push_back(e["job"]["id"].get<std::int64_t>());
  }
  EXPECT_EQ(order, (std::vector<std::int64_t>{pair[1], high_id[0], low_id[0], pair[0]}))
      << "expected priority 7, 5, then the two with priority 0 in submit order";
}

// Outcomes are committed in groups, a little after the transfers end; the window must never read a job that
// finished meanwhile as still queued and run it again. Higher-priority submits in the middle make the window
// read the queue again from its start, over jobs that just finished.
TEST_F(ServeOps, EveryJobRunsOnceWhileTheWindowRereadsTheQueue) {
  config_.concurrency = 16;
  ASSERT_TRUE(start());
  auto c = connect();
  auto w = watch();
  constexpr int kJobs = 2500;  // more than the window (1,024 jobs): the rest is read from the store
  json jobs = json::array();
  for (int i = 0; i < kJobs; ++i) jobs.push_back(job(10, "w" + std::to_string(i), static_cast<std::uint64_t>(i)));
  auto ids = submit(c, jobs);
  ASSERT_EQ(ids.size(), static_cast<std::size_t>(kJobs));
  std::set<std::int64_t> all(ids.begin(), ids.end());
  for (int i = 0; i < 20; ++i) {
    // Each after some more jobs finished.
    w.read_until([](const json& e) { return e.value("event", "") == "done"; }, deadline_in(kFailsafe));
    json urgent = job(10, "u" + std::to_string(i), 10000 + static_cast<std::uint64_t>(i));
    urgent["priority"] = 1;
    auto id = submit(c, json::array({urgent}));
    ASSERT_EQ(id.size(), 1u);
    all.insert(id[0]);
  }
  auto finals = wait_finished(w, all);
  ASSERT_EQ(finals.size(), all.size());
  for (const auto& [path, n] : requests_.snapshot()) EXPECT_EQ(n, 1u) << path << " was downloaded " << n << " times";
  EXPECT_EQ(requests_.snapshot().size(), all.size());
  // A second run would find its own published file, and say so.
  EXPECT_EQ(daemon_->log().find("already holds this job's own download"), std::string::npos)
      << "a finished job ran again";
  json listed = c.request(json{{"op", "list"}, {"limit", 10000}});
  expect_ok(listed);
  ASSERT_EQ(listed["result"]["jobs"].size(), all.size());
  for (const auto& j : listed["result"]["jobs"]) {
    EXPECT_EQ(j["state"], "done") << j.dump();
    EXPECT_EQ(j["attempts"], 1) << j.dump();
    EXPECT_EQ(j["skipped"], false) << j.dump();
  }
}

TEST_F(ServeOps, SocketModeAndALoopbackTcpListener) {
  // A port that was free a moment ago: the daemon's config needs a number.
  int port = 0;
  {
    core::UniqueFd probe(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    socklen_t len = sizeof addr;
    getsockname(probe.get(), reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
  }
  config_.control_extra = "  mode: \"0600\"\n  tcp: \"127.0.0.1:" + std::to_string(port) + "\"\n";
  ASSERT_TRUE(start());
  struct stat st {};
  ASSERT_EQ(stat(config_.socket.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto tcp = LineClient::connect_tcp(port);
  json r = tcp.request(json{{"op", "ping"}});
  expect_ok(r);
  EXPECT_EQ(r["result"]["pid"], daemon_->pid());
  auto ids = submit(tcp, json::array({job(100, "tcp.bin", 1)}));
  EXPECT_EQ(ids.size(), 1u);
}

TEST_F(ServeOps, ConnectionsBeyondMaxConnectionsAreClosedAtOnce) {
  config_.control_extra = "  max_connections: 3\n";
  ASSERT_TRUE(start());
  std::vector<LineClient> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(connect());
    expect_ok(clients.back().request(json{{"op", "ping"}}));
  }
  auto extra = connect();  // the kernel accepts it into the backlog; the daemon closes it
  extra.send(json{{"op", "ping"}});
  EXPECT_FALSE(extra.read_line(deadline_in(kFailsafe)));
  EXPECT_TRUE(extra.eof()) << "refused with EOF, not left hanging";
  expect_ok(clients[0].request(json{{"op", "ping"}}));

  // One closes: room for another. The daemon notices the close asynchronously, so a new client may still
  // be refused a few times; each attempt ends on an event (an answer or EOF).
  clients.pop_back();
  bool served = false;
  for (int attempt = 0; attempt < 200 && !served; ++attempt) {
    auto next = connect();
    next.send(json{{"op", "ping"}});
    served = next.read_line(deadline_in(kFailsafe)).has_value();
    if (!served) expect_ok(clients[0].request(json{{"op", "ping"}}));  // lets the daemon's loop go round
  }
  EXPECT_TRUE(served);
}

TEST_F(ServeOps, FinishedJobsBeyondTheHistoryLimitArePrunedAtStart) {
  config_.state_extra = "  history:\n    max_jobs: 3\n";
  ASSERT_TRUE(start());
  std::vector<std::int64_t> ids;
  {
    auto c = connect();
    auto w = watch();
    json jobs = json::array();
    for (int i = 0; i < 10; ++i) jobs.push_back(job(100, "p" + std::to_string(i), i));
    ids = submit(c, jobs);
    ASSERT_EQ(ids.size(), 10u);
    wait_finished(w, std::set<std::int64_t>(ids.begin(), ids.end()));
  }
  // The three that finished last (by finish time, then id: the store's order) are the ones to keep. Transfers
  // run concurrently, so that is not necessarily the last three ids.
  std::vector<std::pair<std::string, std::int64_t>> by_finish;
  {
    auto c = connect();
    for (const auto& j : list_all(c)) by_finish.emplace_back(j["finished"].get<std::string>(), j["id"]);
  }
  ASSERT_EQ(by_finish.size(), 10u);
  std::sort(by_finish.begin(), by_finish.end());
  std::set<std::int64_t> newest;
  for (std::size_t i = 7; i < 10; ++i) newest.insert(by_finish[i].second);
  ASSERT_EQ(terminate(), 0);
  ASSERT_TRUE(start());
  auto c = connect();
  auto jobs = list_all(c);
  ASSERT_EQ(jobs.size(), 3u) << "at most history.max_jobs finished jobs are kept";
  std::set<std::int64_t> kept;
  for (const auto& j : jobs) kept.insert(j["id"].get<std::int64_t>());
  EXPECT_EQ(kept, newest) << "the most recently finished stay";
  auto more = submit(c, json::array({job(100, "p10", 10)}));
  ASSERT_EQ(more.size(), 1u);
  EXPECT_GT(more[0], ids[9]);
}

}  // namespace
}  // namespace fetchd::service_test
