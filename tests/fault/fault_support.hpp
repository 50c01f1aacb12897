// SPDX-License-Identifier: Apache-2.0
#pragma once
// Shared machinery of the fault suite (fault-cases.md): the four strategies as gtest parameters, a Runner
// that drives jobs through the real Scheduler and strategy on a fresh control loop and records every attempt
// (start, end, result), a RecordingProxy that shows the request heads fetchd sends (Range, If-Range), an
// origin request log with timestamps, a per-target rewrite plan for the origin ("a fault first, the healthy
// body after"), and the checks every case shares (no final file, open descriptors back to their baseline).
// Thread: everything here is used from the test's thread, except the hooks the origin and the proxy call on
// their own threads (RequestLog, RewritePlan, RecordingProxy are thread-safe).

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "fetchd/config/config.hpp"
#include "fetchd/core/transfer_types.hpp"
#include "fetchd/origin/origin.hpp"
#include "fetchd/scheduler/scheduler.hpp"
#include "fetchd/uv/handle.hpp"
#include "fetchd/uv/loop.hpp"
#include "recording_proxy.hpp"

namespace fetchd::fault {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// ------------------------------------------------------------------------------------------ small helpers

std::string read_file(const fs::path& p);
std::string file_sha256(const fs::path& p);  // lowercase hex; of "" when the file cannot be read
bool exists_nofollow(const fs::path& p);
std::size_t count_regular_files(const fs::path& dir);  // recursive
std::string list_tree(const fs::path& dir);            // for messages
std::uint16_t closed_port();                           // bound on 127.0.0.1, closed again: nothing listens
std::string fetchd_bin();                              // $FETCHD_BIN (tests/meson.build)
double ms(Clock::duration d);

// Open descriptors of this process (/proc/self/fd), and a readable list of them for a failure message.
std::size_t count_fds();
std::string describe_fds();

// A listening TCP socket on 127.0.0.1 that never accepts: proves that nothing connected to it (a refused
// redirect to ftp://, dict://, gopher:// must not even try).
class SilentListener {
 public:
  SilentListener();
  ~SilentListener();
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  std::uint16_t port() const { return port_; }
  bool connection_pending() const;  // a connection is waiting in the backlog

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

// ---------------------------------------------------------------------------------- origin-side helpers

// Every request target the origin accepted, with the time it arrived. For OriginOptions::on_request.
class RequestLog {
 public:
  struct Entry {
    std::string target;
    Clock::time_point at;
    std::chrono::system_clock::time_point wall;
  };
  std::function<void(std::string_view)> hook();
  std::vector<Entry> entries() const;
  // Requests whose target starts with prefix.
  std::vector<Entry> with_prefix(std::string_view prefix) const;
  std::size_t count(std::string_view prefix) const { return with_prefix(prefix).size(); }

 private:
  struct State {
    mutable std::mutex mutex;
    std::vector<Entry> entries;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

// Per request target, what the origin answers the 1st, 2nd, ... time it is asked (the last one repeats);
// targets without a plan are answered as they are. For OriginOptions::rewrite.
class RewritePlan {
 public:
  void plan(std::string target, std::vector<std::string> answers);
  std::function<std::string(std::string_view)> hook();

 private:
  struct State {
    std::mutex mutex;
    std::map<std::string, std::pair<std::vector<std::string>, std::size_t>, std::less<>> plans;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

// ---------------------------------------------------------------------------------------- strategies

struct StrategyParam {
  std::string name;  // gtest-safe
  config::StrategyConfig strategy;
};
std::vector<StrategyParam> all_strategies();
inline void PrintTo(const StrategyParam& p, std::ostream* os) {
  *os << p.name;
}
std::string param_name(const ::testing::TestParamInfo<StrategyParam>& info);

// ------------------------------------------------------------------------------------------- runner

struct Attempt {
  int number = 0;
  Clock::time_point started{};
  std::chrono::system_clock::time_point started_wall{};
  Clock::time_point ended{};
  bool ended_set = false;
  core::TransferResult result;
};

struct Outcome {
  core::JobId id = 0;
  bool finished = false;
  scheduler::JobState state = scheduler::JobState::kQueued;
  core::TransferResult last;
  int attempts = 0;  // attempts made (JobRecord::request.attempt at the end)
  std::vector<Attempt> log;
  Clock::time_point finished_at{};
};

// Jobs through a real Scheduler + strategy on a fresh uv loop owned by this object. run() returns once every
// job has finished and the strategy has been drained (workers exited, handles closed) and the loop closed.
// Thread: the test's thread; the hooks run on the loop (inside run()).
class Runner {
 public:
  explicit Runner(const config::Config& config);
  ~Runner();
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  core::JobId add(core::TransferRequest request);
  core::JobId add(const config::Job& job);
  // Adds the request `delay` from now (from a loop callback); run() waits for it.
  void add_later(core::TransferRequest request, std::chrono::milliseconds delay,
                 std::function<void(core::JobId)> added = {});

  // Called on the loop: every kTick while running; when attempts start, fail with a retry, or finish.
  std::function<void(Runner&)> on_tick;
  std::function<void(Runner&, const scheduler::JobRecord&)> on_started;
  std::function<void(Runner&, const scheduler::JobRecord&)> on_retry;
  std::function<void(Runner&, const scheduler::JobRecord&)> on_finished;

  // False when the failsafe fired (everything is cancelled then, and the test should fail).
  bool run(std::chrono::milliseconds failsafe = 30s);

  // A healthy job every run() adds once the test's own jobs are finished, on the same strategy, and expects
  // done: the fault left the strategy working ("the daemon is still working", fault-cases.md). Set by the
  // fixture for the duration of a test; none when empty.
  static void set_liveness_probe(std::function<core::TransferRequest()> make);

  const Outcome& outcome(core::JobId id) const;
  scheduler::Scheduler& scheduler() { return *scheduler_; }
  uv_loop_t* loop() { return loop_.get(); }
  const config::Config& config() const { return config_; }
  // The longest gap between two heartbeats of the control loop (a blocked loop shows here).
  Clock::duration max_loop_gap() const { return max_gap_; }
  int loop_close_result() const { return loop_close_result_; }
  bool drained() const { return drained_; }

  static constexpr std::uint64_t kTickMs = 5;

 private:
  void finish();

  config::Config config_;
  uv::Loop loop_;
  std::unique_ptr<scheduler::Scheduler> scheduler_;
  std::map<core::JobId, Outcome> outcomes_;
  std::vector<std::unique_ptr<uv::Timer>> later_;
  int pending_adds_ = 0;
  uv::Timer heartbeat_;
  uv::Timer failsafe_;
  Clock::time_point last_beat_{};
  Clock::duration max_gap_{};
  bool finishing_ = false;
  bool failsafe_fired_ = false;
  core::JobId probe_ = 0;  // the liveness probe's job, once added
  bool drained_ = false;
  int loop_close_result_ = -1;
};

// ------------------------------------------------------------------------------------------- fixture

// The base of the per-strategy cases: a temp dir with out/ (and a canary dir beside it), an origin on
// 127.0.0.1 with a request log and a rewrite plan, a RecordingProxy in front of it, a config with tiny retry
// backoff, and the descriptor baseline (taken before the origin and the proxy exist; TearDown stops both and
// checks it).
class FaultTest : public ::testing::TestWithParam<StrategyParam> {
 protected:
  FaultTest();  // the origin and the proxy start in SetUp, after the descriptor baseline
  void SetUp() override;
  void TearDown() override;

  // A job for origin path `path` (through the proxy when via_proxy), saved as dest.
  config::Job job(const std::string& path, const std::string& dest, bool via_proxy = false) const;
  core::TransferRequest request(const config::Job& job) const;
  core::TransferRequest request(const std::string& path, const std::string& dest,
                                bool via_proxy = false) const {
    return request(job(path, dest, via_proxy));
  }

  static constexpr std::uint64_t kProbeSize = 1234;
  static constexpr std::uint64_t kProbeSeed = 4242;
  fs::path alive_dir() const { return fs::path(dir_.string() + "-alive"); }
  fs::path out() const { return dir_ / "out"; }
  fs::path out(const std::string& rel) const { return dir_ / "out" / rel; }
  std::string part(const std::string& rel) const { return (dir_ / "out" / rel).string() + ".part"; }
  const std::string& strategy_name() const { return GetParam().name; }
  bool is_process_pool() const { return config_.strategy.kind == config::StrategyKind::kProcessPool; }

  // Nothing under dest, and no .part unless part_allowed.
  void expect_no_file(const std::string& rel, bool part_allowed = false) const;

  RequestLog requests_;
  RewritePlan rewrite_;
  std::unique_ptr<origin::OriginThread> origin_;
  std::unique_ptr<RecordingProxy> proxy_;
  fs::path dir_;
  config::Config config_;
  std::size_t fd_baseline_ = 0;
  std::string fd_baseline_list_;
};

// Whether this process has at most `baseline` descriptors again. Checked, not waited for: everything that owns
// one is stopped synchronously before (the strategy drained, the origin's and the proxy's threads joined, or
// the origin seen with no connection left), so a descriptor still open then is a leak.
bool fds_back(std::size_t baseline);

// The job failed (state kFailed) after exactly `attempts` attempts, with `category`, and its message holds
// every one of `words`.
::testing::AssertionResult failed_with(const Outcome& o, core::ErrorCategory category,
                                       const std::vector<std::string>& words, int attempts);
// The job is done after exactly `attempts` attempts.
::testing::AssertionResult done_after(const Outcome& o, int attempts);

}  // namespace fetchd::fault
