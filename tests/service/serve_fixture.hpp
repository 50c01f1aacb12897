// SPDX-License-Identifier: Apache-2.0
#pragma once
// The common fixture of the `fetchd serve` tests: a temp dir, an in-process origin whose requests are counted
// per path, an sd_notify listener, the daemon's config, and helpers to start it and talk to it.
// Thread: the test's thread (the origin runs on its own).

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "daemon_harness.hpp"
#include "fetchd/origin/body.hpp"
#include "fetchd/origin/origin.hpp"

namespace fetchd::service_test {

// A watch connection that remembers the final event (done, failed, cancelled) of every job it has read, so
// that waiting for some jobs never loses the events of others read on the way.
class Watcher {
 public:
  explicit Watcher(LineClient client) : client_(std::move(client)) {}

  std::optional<std::string> read_line(Clock::time_point deadline = deadline_in(kFailsafe)) {
    auto line = client_.read_line(deadline);
    if (line && line->starts_with("{\"event\":")) {
      json e = json::parse(*line);
      std::string ev = e.value("event", "");
      if (ev == "done" || ev == "failed" || ev == "cancelled")
        finals_[e["job"]["id"].get<std::int64_t>()] = ev;
    }
    return line;
  }
  // Reads until a line satisfying pred; throws at EOF or the deadline.
  json read_until(const std::function<bool(const json&)>& pred, Clock::time_point deadline) {
    for (;;) {
      auto line = read_line(deadline);
      if (!line) throw std::runtime_error(eof() ? "EOF while waiting for an event" : "no such event in time");
      json j = json::parse(*line);
      if (pred(j)) return j;
    }
  }
  bool eof() const { return client_.eof(); }
  LineClient& client() { return client_; }
  // Final events seen so far: id -> "done" | "failed" | "cancelled".
  const std::map<std::int64_t, std::string>& finals() const { return finals_; }

 private:
  LineClient client_;
  std::map<std::int64_t, std::string> finals_;
};

class ServeFixture : public ::testing::Test {
 protected:
  ServeFixture() {
    config_.socket = dir_.path() / "ctl.sock";
    config_.state_dir = dir_.path() / "state";
    config_.output_dir = dir_.path() / "out";
    config_path_ = dir_.path() / "fetchd.yaml";
  }

  static origin::OriginOptions origin_options(RequestCounter& counter, std::uint16_t port = 0) {
    origin::OriginOptions o;
    o.port = port;
    o.on_request = [&counter](std::string_view target) { counter.add(target); };
    return o;
  }

  fs::path db_path() const { return config_.state_dir / "jobs.db"; }
  fs::path out(const std::string& rel) const { return config_.output_dir / rel; }

  // /bytes/<size>/<name>?seed=<seed>[&latency=<latency>]
  static std::string bytes_path(std::uint64_t size, const std::string& name) {
    return "/bytes/" + std::to_string(size) + "/" + name;
  }
  std::string bytes_url(std::uint64_t size, const std::string& name, std::uint64_t seed,
                        const std::string& latency = "") const {
    std::string u = origin_->url(bytes_path(size, name)) + "?seed=" + std::to_string(seed);
    if (!latency.empty()) u += "&latency=" + latency;
    return u;
  }
  // A job object for submit, with its expected size and SHA-256 so the daemon verifies the body too.
  json job(std::uint64_t size, const std::string& name, std::uint64_t seed, const std::string& latency = "",
           std::optional<std::string> dest = {}) const {
    json j{{"url", bytes_url(size, name, seed, latency)},
           {"dest", dest ? *dest : name},
           {"size", size},
           {"sha256", origin::body_sha256_hex(size, seed)}};
    return j;
  }

  void write_config() { write_file(config_path_, config_.yaml()); }

  // Writes the config, starts the daemon and waits for READY=1; false (with a failure) when it did not.
  bool start(int listen_fd = -1) {
    write_config();
    daemon_.reset();
    daemon_ = std::make_unique<DaemonProcess>(
        DaemonProcess::Options{.config = config_path_, .notify = &notify_, .listen_fd = listen_fd});
    ready_ = daemon_->wait_ready();
    EXPECT_TRUE(ready_) << "fetchd serve did not become ready";
    return ready_;
  }

  LineClient connect() { return LineClient(config_.socket); }

  static void expect_ok(const json& r) { EXPECT_TRUE(r.value("ok", false)) << r.dump(); }
  static std::string error_code(const json& r) {
    if (r.value("ok", true) || !r.contains("error")) return "<ok: " + r.dump() + ">";
    return r["error"].value("code", "<no code>");
  }

  // Submits and returns the ids (ok expected).
  std::vector<std::int64_t> submit(LineClient& c, const json& jobs) {
    json r = c.request(json{{"op", "submit"}, {"jobs", jobs}});
    std::vector<std::int64_t> ids;
    if (!r.value("ok", false)) {
      ADD_FAILURE() << "submit failed: " << r.dump().substr(0, 2000);
      return ids;
    }
    for (const auto& j : r["result"]["jobs"]) ids.push_back(j.at("id").get<std::int64_t>());
    return ids;
  }

  // Opens a watch connection (after its {"watching":true} answer every later event reaches it).
  Watcher watch() { return watch_on(connect()); }
  static Watcher watch_on(LineClient c) {
    json r = c.request(json{{"op", "watch"}});
    EXPECT_TRUE(r.value("ok", false)) << r.dump();
    EXPECT_EQ(r["result"], (json{{"watching", true}}));
    return Watcher(std::move(c));
  }

  // Reads watch events until every id in `ids` reached a final state (or had before); returns id -> final
  // event name. A failed job is a test failure.
  static std::map<std::int64_t, std::string> wait_finished(Watcher& w, const std::set<std::int64_t>& ids,
                                                           Clock::duration limit = kFailsafe) {
    auto deadline = deadline_in(limit);
    auto missing = [&] {
      std::size_t n = 0;
      for (auto id : ids) n += w.finals().count(id) ? 0 : 1;
      return n;
    };
    while (missing() > 0) {
      if (!w.read_line(deadline)) {
        ADD_FAILURE() << (w.eof() ? "watch closed" : "timed out") << " with " << missing()
                      << " job(s) unfinished";
        break;
      }
    }
    std::map<std::int64_t, std::string> out;
    for (auto id : ids) {
      auto it = w.finals().find(id);
      if (it == w.finals().end()) continue;
      out[id] = it->second;
      if (it->second == "failed") ADD_FAILURE() << "job " << id << " failed";
    }
    return out;
  }

  // SIGTERM and the exit code within `limit` (nullopt: still running).
  std::optional<int> terminate(Clock::duration limit = kFailsafe) {
    daemon_->signal(SIGTERM);
    return daemon_->wait_exit(limit);
  }

  TempDir dir_;
  RequestCounter requests_;  // before origin_: the origin's hook uses it until the origin is stopped
  std::unique_ptr<origin::OriginThread> origin_ =
      std::make_unique<origin::OriginThread>(origin_options(requests_));
  NotifyListener notify_{dir_.path() / "notify.sock"};
  DaemonConfig config_;
  fs::path config_path_;
  std::unique_ptr<DaemonProcess> daemon_;
  bool ready_ = false;
};

}  // namespace fetchd::service_test
