// SPDX-License-Identifier: Apache-2.0
// Fault cases 27 and 28 (and 21 at the daemon level) against `fetchd serve` as a real process, for every
// strategy: kill -9 in the middle of a body, and SIGTERM with a download in flight; after the restart the job
// resumes its .part (the RecordingProxy shows Range/If-Range) and the file is whole, with no second copy.
// Built on tests/service's DaemonHarness/ServeFixture (linked, not copied). Case 26 (kill -9 right after the
// acknowledgement) is tests/service/durability_test.cpp:
// AJobAcknowledgedRightBeforeKill9IsThereAfterTheRestart. And a crash between the publish and the store's
// commit of `done`: the restart knows the file for the job's own.

#include <fmt/format.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include <cerrno>
#include <cstring>

#include "recording_proxy.hpp"
#include "serve_fixture.hpp"

namespace fetchd::service_test {
namespace {

using fault::RecordingProxy;

constexpr std::uint64_t kSize = 3000000;

// Per target, the answers in turn (the last repeats): a slow first answer, a healthy one after.
class Rewrites {
 public:
  void plan(std::string target, std::vector<std::string> answers) {
    std::lock_guard lock(state_->mutex);
    state_->plans[std::move(target)] = {std::move(answers), 0};
  }
  std::function<std::string(std::string_view)> hook() const {
    return [state = state_](std::string_view target) -> std::string {
      std::lock_guard lock(state->mutex);
      auto it = state->plans.find(target);
      if (it == state->plans.end()) return std::string(target);
      auto& [answers, seen] = it->second;
      return answers[std::min(seen++, answers.size() - 1)];
    };
  }

 private:
  struct State {
    std::mutex mutex;
    std::map<std::string, std::pair<std::vector<std::string>, std::size_t>, std::less<>> plans;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

// Size of a file, 0 when absent.
std::uint64_t size_of(const fs::path& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
}

// Polls a condition on the file system until it holds or the limit (a failsafe) passes.
// Waits until `file` holds at least `bytes`, woken by inotify on its directory (the daemon is another process,
// writing the file): every create/write there re-checks the size. The deadline is only a failsafe.
bool wait_for_size(const fs::path& file, std::uint64_t bytes, Clock::duration limit) {
  const int in = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (in < 0) return false;
  const bool watching = ::inotify_add_watch(in, file.parent_path().c_str(), IN_CREATE | IN_MODIFY) >= 0;
  const auto deadline = Clock::now() + limit;
  bool reached = false;
  while (watching && !(reached = size_of(file) >= bytes)) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) break;
    pollfd p{in, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) < 0 && errno != EINTR) break;
    char events[4096];
    while (::read(in, events, sizeof events) > 0) {
    }
  }
  ::close(in);
  return reached;
}

class DaemonFault : public ServeFixture, public ::testing::WithParamInterface<std::string> {
 protected:
  DaemonFault() {
    // The fixture's origin again, with a rewrite plan, and the proxy in front of it.
    origin_.reset();
    auto o = origin_options(requests_);
    o.rewrite = rewrites_.hook();
    origin_ = std::make_unique<origin::OriginThread>(o);
    proxy_ = std::make_unique<RecordingProxy>(origin_->port());
    config_.strategy = GetParam();
    config_.concurrency = 4;
  }
  ~DaemonFault() override {
    // Before the origin and the daemon: no relay may outlive them.
    proxy_.reset();
  }

  // The job: kSize bytes whose first answer trickles 64 KiB per 50 ms (about 4 s in all), the next healthy.
  json slow_job(const std::string& name, std::uint64_t seed) {
    const std::string target = fmt::format("/bytes/{}/{}?seed={}", kSize, name, seed);
    rewrites_.plan(target, {target + "&trickle=64KiB/50ms", target});
    return json{{"url", proxy_->url(target)},
                {"dest", name},
                {"size", kSize},
                {"sha256", origin::body_sha256_hex(kSize, seed)}};
  }

  // The Range the second request for `name` carried, as N of bytes=N-, after checking its If-Range.
  std::optional<std::uint64_t> resumed_range(const std::string& name, std::uint64_t seed) {
    auto heads = proxy_->heads_for(fmt::format("/bytes/{}/{}", kSize, name));
    EXPECT_EQ(heads.size(), 2u) << "one interrupted request, one resumed";
    if (heads.size() < 2) return std::nullopt;
    EXPECT_FALSE(heads[0].header("Range").has_value());
    EXPECT_EQ(heads[1].header("If-Range").value_or("<none>"), origin::body_etag(kSize, seed));
    auto range = heads.back().header("Range");
    if (!range || !range->starts_with("bytes=") || !range->ends_with("-")) {
      ADD_FAILURE() << "the restarted job did not resume: Range " << range.value_or("<none>");
      return std::nullopt;
    }
    return std::stoull(range->substr(6, range->size() - 7));
  }

  // The job's final state after a restart. The watch is subscribed before the status is asked, so a job that
  // finished before the watch existed is seen by the status, and a later one by the watch.
  std::string final_state(std::int64_t id) {
    auto w = watch();
    auto c = connect();
    std::string state = c.request(json{{"op", "status"}, {"id", id}})["result"]["job"].value("state", "");
    if (state == "done" || state == "failed" || state == "cancelled") return state;
    return wait_finished(w, {id})[id];
  }

  // Everything under out/: exactly the one finished file.
  void expect_one_file(const std::string& name, std::uint64_t seed) {
    EXPECT_EQ(file_sha256_hex(out(name)), origin::body_sha256_hex(kSize, seed));
    std::size_t files = 0;
    for (const auto& e : fs::recursive_directory_iterator(config_.output_dir)) files += e.is_regular_file();
    EXPECT_EQ(files, 1u) << "a second copy or a .part remains";
  }

  Rewrites rewrites_;
  std::unique_ptr<RecordingProxy> proxy_;
};

TEST_P(DaemonFault, Case27_Kill9MidDownloadResumesAfterTheRestart) {
  ASSERT_TRUE(start());
  std::int64_t id = 0;
  {
    auto c = connect();
    auto ids = submit(c, json::array({slow_job("k.bin", 27)}));
    ASSERT_EQ(ids.size(), 1u);
    id = ids[0];
  }
  const fs::path part = out("k.bin.part");
  ASSERT_TRUE(wait_for_size(part, 128 * 1024, kFailsafe)) << daemon_->log();
  daemon_->kill9();
  const std::uint64_t kept = size_of(part);
  ASSERT_GT(kept, 0u) << "the .part did not survive kill -9";
  EXPECT_LT(kept, kSize);
  EXPECT_FALSE(fs::exists(out("k.bin")));

  ASSERT_TRUE(start());
  ASSERT_EQ(final_state(id), "done");
  auto resumed = resumed_range("k.bin", 27);
  ASSERT_TRUE(resumed.has_value());
  // process-pool: a worker may write a little more between the daemon's death and its own (PDEATHSIG).
  EXPECT_GE(*resumed, kept);
  EXPECT_GT(*resumed, 0u);
  expect_one_file("k.bin", 27);
}

TEST_P(DaemonFault, Case28_SigtermKeepsThePartAndTheNextStartResumes) {
  config_.grace = "300ms";
  ASSERT_TRUE(start());
  auto c = connect();
  auto ids = submit(c, json::array({slow_job("t.bin", 28)}));
  ASSERT_EQ(ids.size(), 1u);
  const fs::path part = out("t.bin.part");
  ASSERT_TRUE(wait_for_size(part, 128 * 1024, kFailsafe)) << daemon_->log();

  const std::size_t n0 = notify_.size();
  const auto t0 = Clock::now();
  daemon_->signal(SIGTERM);
  ASSERT_TRUE(notify_.wait_for("STOPPING=1", n0, deadline_in(kFailsafe)));
  json refused = c.request(json{{"op", "submit"}, {"jobs", json::array({job(10, "late.bin", 1)})}});
  EXPECT_EQ(error_code(refused), "unavailable") << refused.dump();
  auto code = daemon_->wait_exit(std::chrono::seconds(20));
  const double took = std::chrono::duration<double>(Clock::now() - t0).count();
  ASSERT_TRUE(code) << "still running after SIGTERM";
  EXPECT_EQ(*code, 0);
  EXPECT_LT(took, 0.3 + 5.0) << "exit took " << took << " s with a 300 ms grace";
  const std::uint64_t kept = size_of(part);
  EXPECT_GT(kept, 0u) << "the .part was not kept";
  EXPECT_FALSE(fs::exists(out("t.bin")));
  EXPECT_FALSE(fs::exists(out("late.bin")));
  auto states = read_job_states(db_path());
  EXPECT_EQ(states[ids[0]], "queued") << "interrupted by the shutdown: runs again at the next start";

  ASSERT_TRUE(start());
  ASSERT_EQ(final_state(ids[0]), "done");
  auto resumed = resumed_range("t.bin", 28);
  ASSERT_TRUE(resumed.has_value());
  EXPECT_EQ(*resumed, kept) << "the kept .part is what is resumed";
  expect_one_file("t.bin", 28);
}

// A crash after the rename and before the store committed `done` leaves the job `running` in the store and its
// published file at dest. The restart re-queues the job; with on_exists: fail the file must not be taken for a
// stranger's (the job would fail "destination exists"): it carries this job's publish record and hash, so the
// job is done without a second download. Simulated exactly: a finished job set back to `running` while the
// daemon is stopped, which is what the store holds after such a crash.
TEST_P(DaemonFault, PublishedButNotRecordedIsDoneAfterTheRestart) {
  auto start_failing_on_exists = [&] {
    std::string yaml = config_.yaml();
    auto at = yaml.find("output:\n");
    auto end = yaml.find('\n', yaml.find("dir:", at));
    if (at == std::string::npos || end == std::string::npos) return false;
    yaml.insert(end + 1, "  on_exists: fail\n");
    write_file(config_path_, yaml);
    daemon_.reset();
    daemon_ = std::make_unique<DaemonProcess>(DaemonProcess::Options{.config = config_path_, .notify = &notify_});
    return daemon_->wait_ready();
  };
  ASSERT_TRUE(start_failing_on_exists());
  auto w = watch();
  auto c = connect();
  auto ids = submit(c, json::array({job(100000, "p.bin", 31)}));
  ASSERT_EQ(ids.size(), 1u);
  ASSERT_EQ(wait_finished(w, {ids[0]})[ids[0]], "done");
  const auto fetched = requests_.count(bytes_path(100000, "p.bin"));
  ASSERT_EQ(fetched, 1u);
  auto code = terminate();
  ASSERT_TRUE(code);

  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(db_path().c_str(), &db), SQLITE_OK);
    const std::string sql =
        fmt::format("UPDATE jobs SET state = 'running', finished_ms = 0 WHERE id = {}", ids[0]);
    char* error = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
    EXPECT_EQ(rc, SQLITE_OK) << (error ? error : "");
    sqlite3_free(error);
    EXPECT_EQ(sqlite3_changes(db), 1);
    sqlite3_close(db);
  }

  ASSERT_TRUE(start_failing_on_exists());
  EXPECT_EQ(final_state(ids[0]), "done") << daemon_->log();
  EXPECT_EQ(requests_.count(bytes_path(100000, "p.bin")), fetched) << "downloaded a second time";
  EXPECT_EQ(file_sha256_hex(out("p.bin")), origin::body_sha256_hex(100000, 31));
  EXPECT_NE(daemon_->log().find("already holds this job's own download"), std::string::npos) << daemon_->log();
}

INSTANTIATE_TEST_SUITE_P(AllStrategies, DaemonFault,
                         ::testing::Values("event-loop", "curl-multi", "thread-pool", "process-pool"),
                         [](const auto& info) {
                           std::string n = info.param;
                           n.erase(std::remove(n.begin(), n.end(), '-'), n.end());
                           return n;
                         });

// Case 21 at the daemon level: a full disk fails that job (stored as failed with the reason); the daemon
// keeps serving and the next job on the same file system is done.
class DaemonDiskFull : public ServeFixture {};

TEST_F(DaemonDiskFull, Case21_DiskFullFailsTheJobAndTheDaemonKeepsServing) {
  fs::create_directories(config_.output_dir);
  if (::mount("tmpfs", config_.output_dir.c_str(), "tmpfs", 0, "size=1m,mode=0755") != 0) {
    GTEST_SKIP() << "cannot mount a small tmpfs on " << config_.output_dir << ": " << std::strerror(errno);
  }
  struct Unmount {
    fs::path p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{config_.output_dir};
  config_.retries = 3;
  ASSERT_TRUE(start());
  auto w = watch();
  auto c = connect();
  auto big = submit(c, json::array({job(3 << 20, "big.bin", 1)}));
  ASSERT_EQ(big.size(), 1u);
  json failed =
      w.read_until([&](const json& e) { return e.value("event", "") == "failed"; }, deadline_in(kFailsafe));
  EXPECT_EQ(failed["job"]["id"], big[0]);
  EXPECT_EQ(failed["job"]["attempts"], 1) << "a full disk is not retried";
  json status = c.request(json{{"op", "status"}, {"id", big[0]}});
  EXPECT_EQ(status["result"]["job"]["state"], "failed") << status.dump();
  EXPECT_NE(status["result"]["job"].value("error", "").find("No space left on device"), std::string::npos)
      << status.dump();
  EXPECT_FALSE(fs::exists(out("big.bin")));
  EXPECT_FALSE(fs::exists(out("big.bin.part")));

  expect_ok(c.request(json{{"op", "ping"}}));
  auto small = submit(c, json::array({job(10000, "small.bin", 2)}));
  ASSERT_EQ(small.size(), 1u);
  auto finals = wait_finished(w, {small[0]});
  EXPECT_EQ(finals[small[0]], "done");
  EXPECT_EQ(file_sha256_hex(out("small.bin")), origin::body_sha256_hex(10000, 2));
  // The store agrees after a clean stop.
  auto code = terminate();
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 0);
  auto states = read_job_states(db_path());
  EXPECT_EQ(states[big[0]], "failed");
  EXPECT_EQ(states[small[0]], "done");
}

}  // namespace
}  // namespace fetchd::service_test
