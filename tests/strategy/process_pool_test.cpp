// SPDX-License-Identifier: Apache-2.0
// What only the process pool has: worker processes that can die (fault-cases.md 31), the worker pipe, and
// what a worker inherits. The conformance suite (strategy_test.cpp) covers the transfers themselves. Workers
// run the fetchd binary (FETCHD_BIN); every wait is on an event or a polled condition with a bounded
// failsafe.

#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <linux/kcmp.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "fetchd/config/config.hpp"
#include "fetchd/origin/body.hpp"
#include "fetchd/origin/origin.hpp"
#include "fetchd/strategy/process_pool_strategy.hpp"
#include "fetchd/strategy/worker_protocol.hpp"
#include "fetchd/uv/error.hpp"
#include "fetchd/uv/loop.hpp"

extern char** environ;

namespace fs = std::filesystem;
using fetchd::core::ErrorCategory;
using fetchd::core::TransferResult;
using fetchd::strategy::ProcessPoolStrategy;

namespace {

// A write to a worker that was just killed must fail with EPIPE, not kill the test: fetchd's main() ignores
// SIGPIPE (design.md §3), and so does this executable (conformance cases included).
class IgnoreSigpipe : public ::testing::Environment {
 public:
  void SetUp() override { std::signal(SIGPIPE, SIG_IGN); }
};
const auto* const kIgnoreSigpipe = ::testing::AddGlobalTestEnvironment(new IgnoreSigpipe);

std::string fetchd_bin() {
  const char* bin = std::getenv("FETCHD_BIN");
  return bin != nullptr ? bin : "FETCHD_BIN-is-not-set";
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Fields of /proc/<pid>/stat after the command name: state and parent pid; nullopt once the pid is gone.
struct ProcStat {
  char state = '?';
  pid_t ppid = 0;
};
std::optional<ProcStat> proc_stat(pid_t pid) {
  std::string s = read_file(fmt::format("/proc/{}/stat", pid));
  auto close = s.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(s.substr(close + 1));
  ProcStat st;
  rest >> st.state >> st.ppid;
  return st;
}

// Our children that died and were not reaped.
std::vector<pid_t> zombie_children() {
  std::vector<pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    pid_t pid = static_cast<pid_t>(std::atoi(e.path().filename().c_str()));
    if (pid <= 0) continue;
    auto st = proc_stat(pid);
    if (st && st->ppid == ::getpid() && st->state == 'Z') out.push_back(pid);
  }
  return out;
}

std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    pid_t pid = static_cast<pid_t>(std::atoi(e.path().filename().c_str()));
    if (pid <= 0) continue;
    auto st = proc_stat(pid);
    if (st && st->ppid == parent) out.push_back(pid);
  }
  return out;
}

// Every reaped child is gone: nothing is left for waitpid (it must not reap anything a test still owns).
bool no_children_left() {
  return ::waitpid(-1, nullptr, WNOHANG) == -1 && errno == ECHILD;
}

std::vector<int> open_fds(pid_t pid) {
  std::vector<int> fds;
  for (const auto& e : fs::directory_iterator(fmt::format("/proc/{}/fd", pid))) {
    fds.push_back(std::atoi(e.path().filename().c_str()));
  }
  std::sort(fds.begin(), fds.end());
  return fds;
}

std::string fd_target(pid_t pid, int fd) {
  std::error_code ec;
  auto t = fs::read_symlink(fmt::format("/proc/{}/fd/{}", pid, fd), ec);
  return ec ? std::string() : t.string();
}

// Runs the loop, checking `done` every millisecond; false when `limit_ms` passed first (the failsafe).
bool run_until(fetchd::uv::Loop& loop, const std::function<bool()>& done, std::uint64_t limit_ms) {
  bool met = false;
  fetchd::uv::Timer poll(loop.get());
  fetchd::uv::Timer failsafe(loop.get());
  poll.start(0, 1, [&] {
    if (!done()) return;
    met = true;
    poll.close();
    failsafe.close();
  });
  failsafe.start(limit_ms, 0, [&] {
    poll.close();
    failsafe.close();
  });
  while (poll || failsafe) loop.run(UV_RUN_ONCE);
  return met;
}

class ProcessPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::mt19937_64 rng{std::random_device{}()};
    dir_ = fs::temp_directory_path() / ("fetchd-pool-" + std::to_string(rng()));
    fs::create_directories(dir_ / "out");
  }
  void TearDown() override {
    pool_.reset();
    EXPECT_EQ(loop_.close(), 0);  // every handle the pool opened was closed
    fs::remove_all(dir_);
  }

  static fetchd::config::StrategyConfig pool_config(int concurrency, int workers,
                                                    fetchd::config::InnerKind inner = {}) {
    fetchd::config::StrategyConfig c;
    c.kind = fetchd::config::StrategyKind::kProcessPool;
    c.concurrency = concurrency;
    c.workers = workers;
    c.inner = inner;
    c.worker_exe = fetchd_bin();
    return c;
  }

  void start(const fetchd::config::StrategyConfig& config, std::uint64_t rate = 0) {
    pool_ = std::make_unique<ProcessPoolStrategy>(
        config, false, loop_.get(), [this](TransferResult r) { results_.push_back(std::move(r)); }, rate);
  }

  fetchd::core::TransferRequest request(fetchd::core::JobId id, const std::string& path,
                                        const std::string& name, std::optional<std::string> sha = {}) {
    fetchd::core::TransferRequest r;
    r.id = id;
    r.url = origin_.url(path);
    r.dest = (dir_ / "out" / name).string();
    r.sha256 = std::move(sha);
    r.on_exists = fetchd::core::OnExists::kOverwrite;
    r.fsync = false;
    r.options.timeout = std::chrono::seconds(60);
    r.options.user_agent = "fetchd-test";
    return r;
  }

  // Drains the pool and runs the loop until it is done (bounded).
  void drain() {
    bool drained = false;
    pool_->drain([&] { drained = true; });
    EXPECT_TRUE(run_until(
        loop_, [&] { return drained; }, 20000))
        << "drain did not complete";
  }

  std::size_t files_in_out() const {
    std::size_t n = 0;
    for (const auto& e : fs::directory_iterator(dir_ / "out")) n += e.is_regular_file() ? 1 : 0;
    return n;
  }

  fetchd::origin::OriginThread origin_{fetchd::origin::OriginOptions{}};
  fs::path dir_;
  fetchd::uv::Loop loop_;
  std::unique_ptr<ProcessPoolStrategy> pool_;
  std::vector<TransferResult> results_;
};

TEST_F(ProcessPoolTest, KilledWorkerIsReapedRespawnedAndItsJobCompletes) {
  start(pool_config(2, 2));
  const auto original = pool_->worker_pids();
  ASSERT_EQ(original.size(), 2u);
  auto sha = fetchd::origin::body_sha256_hex(3000, 4);
  pool_->submit(request(1, "/bytes/3000/k.bin?seed=4&latency=1s", "k.bin", sha));

  // SIGKILL the worker once the origin holds its request: it dies mid-transfer, with a .part on disk.
  pid_t killed = 0;
  ASSERT_TRUE(run_until(
      loop_,
      [&] {
        pid_t pid = pool_->worker_pid(1);
        if (pid == 0 || origin_.stats().requests_in_flight < 1) return false;
        killed = pid;
        return ::kill(pid, SIGKILL) == 0;
      },
      10000));
  EXPECT_NE(std::find(original.begin(), original.end(), killed), original.end());

  // The job moves to a live worker; the slot of the dead one gets a new process.
  pid_t rerun_in = 0;
  std::vector<pid_t> now;
  ASSERT_TRUE(run_until(
      loop_,
      [&] {
        if (pid_t pid = pool_->worker_pid(1); pid != 0 && pid != killed) rerun_in = pid;
        now = pool_->worker_pids();
        return !results_.empty() && now.size() == 2 && std::find(now.begin(), now.end(), killed) == now.end();
      },
      20000));
  EXPECT_NE(rerun_in, 0);
  EXPECT_NE(rerun_in, killed);
  EXPECT_EQ(std::count_if(
                now.begin(), now.end(),
                [&](pid_t p) { return std::find(original.begin(), original.end(), p) == original.end(); }),
            1)
      << "one new process, in the dead one's slot";
  EXPECT_FALSE(proc_stat(killed).has_value() && proc_stat(killed)->ppid == ::getpid())
      << "reaped, not a zombie";
  EXPECT_TRUE(zombie_children().empty());

  ASSERT_EQ(results_.size(), 1u);
  EXPECT_TRUE(results_[0].ok()) << results_[0].message;
  EXPECT_EQ(results_[0].id, 1u);
  EXPECT_EQ(results_[0].sha256, sha);
  EXPECT_EQ(read_file(dir_ / "out" / "k.bin").size(), 3000u);
  EXPECT_EQ(files_in_out(), 1u);  // the dead worker's .part was taken over and renamed
  EXPECT_EQ(pool_->worker_deaths(), 1u);
  EXPECT_EQ(origin_.stats().requests_total, 2u);

  drain();
  EXPECT_EQ(pool_->worker_deaths(), 1u) << "the drain's exits are not deaths";
  EXPECT_TRUE(no_children_left());
}

TEST_F(ProcessPoolTest, JobInFlightInThreeDeathsFailsAsPoison) {
  start(pool_config(1, 1));
  pool_->submit(request(1, "/bytes/100/p.bin?latency=30s", "p.bin"));
  std::vector<pid_t> killed;
  // Whichever worker holds the job dies: three times, each time in the respawned process.
  ASSERT_TRUE(run_until(
      loop_,
      [&] {
        if (!results_.empty()) return true;
        pid_t pid = pool_->worker_pid(1);
        if (pid != 0 && (killed.empty() || pid != killed.back()) && killed.size() < 3) {
          killed.push_back(pid);
          EXPECT_EQ(::kill(pid, SIGKILL), 0);
        }
        return false;
      },
      20000));
  ASSERT_EQ(killed.size(), 3u);
  ASSERT_EQ(results_.size(), 1u);
  const auto& r = results_[0];
  EXPECT_EQ(r.id, 1u);
  EXPECT_EQ(r.category, ErrorCategory::kInternal);
  EXPECT_FALSE(r.retryable);
  EXPECT_EQ(r.message.rfind("poison:", 0), 0u) << r.message;
  for (pid_t pid : killed) {
    EXPECT_NE(r.message.find(fmt::format("worker {} killed by signal {}", pid, SIGKILL)), std::string::npos)
        << r.message;
  }
  EXPECT_EQ(pool_->worker_deaths(), 3u);

  // The pool itself is fine: the respawned worker runs the next job.
  pool_->submit(request(2, "/bytes/100/h.bin", "h.bin"));
  ASSERT_TRUE(run_until(
      loop_, [&] { return results_.size() == 2; }, 20000));
  EXPECT_TRUE(results_[1].ok()) << results_[1].message;
  EXPECT_TRUE(zombie_children().empty());
  drain();
  EXPECT_TRUE(no_children_left());
}

TEST_F(ProcessPoolTest, WorkerHoldsNoDescriptorOfTheParent) {
  // Descriptors a careless parent leaks: a listening socket and a file, both without O_CLOEXEC.
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 4), 0);
  int file = ::open((dir_ / "parent.db").c_str(), O_RDWR | O_CREAT, 0600);
  ASSERT_GE(file, 0);

  start(pool_config(1, 1));
  pool_->submit(request(1, "/bytes/100/f.bin", "f.bin"));
  // A result means the worker is past its start-up (where it closes what it inherited).
  ASSERT_TRUE(run_until(
      loop_, [&] { return !results_.empty(); }, 20000));
  ASSERT_TRUE(results_[0].ok()) << results_[0].message;
  auto pids = pool_->worker_pids();
  ASSERT_EQ(pids.size(), 1u);
  const pid_t worker = pids[0];

  const auto ours = open_fds(::getpid());
  const auto theirs = open_fds(worker);
  // kcmp(KCMP_FILE) tells whether two descriptors share one open file description, i.e. one was inherited.
  auto same = [&](int their_fd, int our_fd) {
    return ::syscall(SYS_kcmp, worker, ::getpid(), KCMP_FILE, their_fd, our_fd) == 0;
  };
  bool kcmp_works = ::syscall(SYS_kcmp, ::getpid(), ::getpid(), KCMP_FILE, 2, 2) == 0;
  for (int t : theirs) {
    for (int o : ours) {
      // Only stderr is shared on purpose (fd 2, and fd 1, which the worker points at stderr).
      bool shared = kcmp_works ? same(t, o) : (fd_target(worker, t) == fd_target(::getpid(), o) && t > 2);
      bool allowed = (t == 1 || t == 2) && (kcmp_works ? same(2, o) : true);
      EXPECT_FALSE(shared && !allowed) << "worker fd " << t << " (" << fd_target(worker, t) << ") is our fd "
                                       << o << " (" << fd_target(::getpid(), o) << ")";
    }
  }
  for (int t : theirs) {
    std::string target = fd_target(worker, t);
    EXPECT_NE(target, fd_target(::getpid(), listener)) << "the listening socket leaked into fd " << t;
    EXPECT_NE(target, (dir_ / "parent.db").string()) << "the file leaked into fd " << t;
  }
  EXPECT_EQ(fd_target(worker, 0), "/dev/null") << "stdin moved off the pipe";
  drain();
  ::close(listener);
  ::close(file);
}

TEST_F(ProcessPoolTest, TransfersAreSpreadWithinEachWorkersShare) {
  // 5 over 3 workers: shares 2, 2 and 1.
  start(pool_config(5, 3));
  ASSERT_EQ(pool_->workers(), 3);
  std::uint64_t total = 0;
  for (int i = 1; i <= 40; ++i) {
    std::uint64_t size = 1000 + static_cast<std::uint64_t>(i) * 37;
    total += size;
    pool_->submit(request(static_cast<fetchd::core::JobId>(i),
                          fmt::format("/bytes/{}/s{}.bin?seed={}&latency=20ms", size, i, i),
                          fmt::format("s{}", i),
                          fetchd::origin::body_sha256_hex(size, static_cast<std::uint64_t>(i))));
  }
  std::size_t max_per_worker = 0;
  std::size_t max_total = 0;
  std::map<pid_t, std::size_t> ever_used;
  ASSERT_TRUE(run_until(
      loop_,
      [&] {
        std::map<pid_t, std::size_t> load;
        for (fetchd::core::JobId id = 1; id <= 40; ++id) {
          if (pid_t pid = pool_->worker_pid(id)) ++load[pid];
        }
        std::size_t sum = 0;
        for (auto [pid, n] : load) {
          max_per_worker = std::max(max_per_worker, n);
          sum += n;
          ever_used[pid] += n;
        }
        max_total = std::max(max_total, sum);
        return results_.size() == 40;
      },
      30000));
  for (const auto& r : results_) EXPECT_TRUE(r.ok()) << r.id << ": " << r.message;
  EXPECT_LE(max_per_worker, 2u);
  EXPECT_LE(max_total, 5u);
  EXPECT_EQ(ever_used.size(), 3u) << "every worker took a share";
  EXPECT_LE(origin_.stats().max_requests_in_flight, 5u);
  drain();
  auto snap = pool_->snapshot();
  EXPECT_EQ(snap.active, 0u);
  EXPECT_EQ(snap.bytes, total) << "the workers' final byte totals";
  EXPECT_EQ(pool_->worker_deaths(), 0u);
  EXPECT_TRUE(no_children_left());
}

TEST_F(ProcessPoolTest, CancelReachesTheWorkerAndQueuedJobs) {
  start(pool_config(1, 1));
  pool_->submit(request(1, "/bytes/100/c1.bin?latency=30s", "c1.bin"));
  pool_->submit(request(2, "/bytes/100/c2.bin", "c2.bin"));  // queued: the one slot is taken
  EXPECT_EQ(pool_->worker_pid(2), 0);
  pool_->cancel(2);
  EXPECT_TRUE(results_.empty()) << "never delivered from inside cancel()";
  ASSERT_TRUE(run_until(
      loop_, [&] { return origin_.stats().requests_in_flight >= 1; }, 10000));
  pool_->cancel(1);
  ASSERT_TRUE(run_until(
      loop_, [&] { return results_.size() == 2; }, 10000));
  for (const auto& r : results_)
    EXPECT_EQ(r.category, ErrorCategory::kCancelled) << r.id << ": " << r.message;
  EXPECT_EQ(files_in_out(), 0u);
  drain();
}

TEST_F(ProcessPoolTest, WorkerThatBreaksTheProtocolIsKilled) {
  // A stand-in worker that answers its first request with a line the parent cannot accept, then hangs.
  fs::path fake = dir_ / "fake-worker";
  std::ofstream(fake) << "#!/bin/sh\nread request\necho '{\"op\":\"result\",\"id\":\"x\"}'\nexec sleep 30\n";
  fs::permissions(fake, fs::perms::owner_all);
  auto config = pool_config(1, 1);
  config.worker_exe = fake.string();
  start(config);
  pool_->submit(request(1, "/bytes/100/b.bin", "b.bin"));
  ASSERT_TRUE(run_until(
      loop_, [&] { return !results_.empty(); }, 20000));
  // Killed (not left hanging) three times, then the job is taken to be the cause.
  const auto& r = results_[0];
  EXPECT_EQ(r.category, ErrorCategory::kInternal);
  EXPECT_EQ(r.message.rfind("poison:", 0), 0u) << r.message;
  EXPECT_NE(r.message.find("killed by signal 9"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("unreadable line"), std::string::npos) << r.message;
  EXPECT_EQ(pool_->worker_deaths(), 3u);
  drain();  // also cancels the respawn that is still waiting out its backoff
  EXPECT_TRUE(no_children_left());
}

TEST_F(ProcessPoolTest, BadSettingsFailAtStart) {
  auto blocking = pool_config(4, 2, fetchd::config::InnerKind::kBlocking);
  EXPECT_THROW(ProcessPoolStrategy(blocking, false, loop_.get(), [](TransferResult) {}),
               std::invalid_argument);
  auto missing = pool_config(2, 2);
  missing.worker_exe = (dir_ / "no-such-fetchd").string();
  try {
    ProcessPoolStrategy pool(missing, false, loop_.get(), [](TransferResult) {});
    ADD_FAILURE() << "started without a worker executable";
  } catch (const fetchd::uv::Error& e) {
    EXPECT_EQ(e.code(), UV_ENOENT) << e.what();
  }
  EXPECT_TRUE(no_children_left());
}

// Runs `fetchd run` on a process-pool config, kills it with SIGKILL (no chance to clean up), and checks that
// its workers die too: PR_SET_PDEATHSIG. The test becomes a subreaper so that the orphaned workers are
// reparented to it and can be waited for, instead of to init.
TEST_F(ProcessPoolTest, WorkersDieWithTheirParent) {
  std::ofstream(dir_ / "run.yaml") << fmt::format(
      "strategy: {{kind: process-pool, concurrency: 2, workers: 2}}\n"
      "output: {{dir: out, fsync: false}}\n"
      "log: {{level: warn}}\n"
      "jobs:\n  - url: {}\n",
      origin_.url("/bytes/100/slow.bin?latency=30s"));
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  std::string bin = fetchd_bin();
  std::string config = (dir_ / "run.yaml").string();
  std::string log = (dir_ / "run.log").string();
  std::vector<char*> argv{bin.data(), const_cast<char*>("run"), const_cast<char*>("-c"), config.data(),
                          nullptr};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t run_pid = 0;
  ASSERT_EQ(::posix_spawn(&run_pid, bin.c_str(), &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);

  // Once the origin holds the request, both workers are up and one is mid-transfer.
  bool in_flight = run_until(
      loop_, [&] { return origin_.stats().requests_in_flight >= 1; }, 20000);
  std::vector<pid_t> workers = children_of(run_pid);
  ::kill(run_pid, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(run_pid, &status, 0), run_pid);
  ASSERT_TRUE(in_flight) << read_file(log);
  ASSERT_EQ(workers.size(), 2u) << read_file(log);

  int killed = 0;
  for (pid_t w : workers) {
    // A pidfd becomes readable when the process exits: an event to wait for, with a bound.
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, w, 0));
    if (pidfd >= 0) {
      pollfd p{pidfd, POLLIN, 0};
      EXPECT_EQ(::poll(&p, 1, 10000), 1) << "worker " << w << " outlived its parent";
      ::close(pidfd);
    }
    siginfo_t info{};
    ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(w), &info, WEXITED | WNOHANG), 0) << "worker " << w;
    EXPECT_EQ(info.si_pid, w) << "worker " << w << " has not exited";
    if (info.si_code == CLD_KILLED && info.si_status == SIGKILL) {
      ++killed;
    } else {
      // Two ways for an idle worker to beat the signal. The kernel closes a dying process's descriptors
      // before it signals the children, so it may see EOF on its stdin and exit 0 first. Or it was still
      // starting when its parent died: it then finds another parent after PR_SET_PDEATHSIG and exits 70. A
      // busy worker can do neither: it would wait for its 30 s transfer.
      EXPECT_EQ(info.si_code, CLD_EXITED) << "worker " << w;
      EXPECT_TRUE(info.si_status == 0 || info.si_status == 70)
          << "worker " << w << " exited with " << info.si_status << "\n"
          << read_file(log);
    }
  }
  EXPECT_GE(killed, 1) << "the worker running the transfer ends only by PR_SET_PDEATHSIG";
  ::prctl(PR_SET_CHILD_SUBREAPER, 0);
  EXPECT_TRUE(no_children_left());
}

TEST(WorkerProtocol, RequestAndResultSurviveTheRoundTrip) {
  using namespace fetchd::strategy::protocol;
  fetchd::core::TransferRequest r;
  r.id = 42;
  r.url = "http://user:pw@127.0.0.1:8080/a%20b?x=1";
  r.dest = "/tmp/out/caf\xc3\xa9/\xff\xfe-not-utf8.bin";  // a path may hold any bytes
  r.sha256 = std::string(64, 'a');
  r.expected_size = 1234567890123;
  r.on_exists = fetchd::core::OnExists::kFail;
  r.fsync = false;
  r.publish_record = true;
  r.attempt = 3;
  r.options.timeout = std::chrono::milliseconds(1500);
  r.options.connect_timeout = std::chrono::milliseconds(250);
  r.options.low_speed_limit = 0;
  r.options.low_speed_time = std::chrono::seconds(7);
  r.options.max_redirects = 0;
  r.options.user_agent = "ua \"quoted\"\t";
  r.options.headers = {{"Authorization", "Bearer s3cret"}, {"X-Bin", std::string("\x80\x01", 2)}};
  std::string line = encode(ToWorker{Submit{r}});
  ASSERT_EQ(line.back(), '\n');
  EXPECT_EQ(std::count(line.begin(), line.end(), '\n'), 1);
  std::string error;
  auto back = decode_to_worker(std::string_view(line).substr(0, line.size() - 1), &error);
  ASSERT_TRUE(back.has_value()) << error;
  const auto& got = std::get<Submit>(*back).request;
  EXPECT_EQ(got.id, r.id);
  EXPECT_EQ(got.url, r.url);
  EXPECT_EQ(got.dest, r.dest);
  EXPECT_EQ(got.sha256, r.sha256);
  EXPECT_EQ(got.expected_size, r.expected_size);
  EXPECT_EQ(got.on_exists, r.on_exists);
  EXPECT_EQ(got.fsync, r.fsync);
  EXPECT_EQ(got.publish_record, r.publish_record);
  EXPECT_EQ(got.attempt, r.attempt);
  EXPECT_EQ(got.options.timeout, r.options.timeout);
  EXPECT_EQ(got.options.connect_timeout, r.options.connect_timeout);
  EXPECT_EQ(got.options.low_speed_limit, r.options.low_speed_limit);
  EXPECT_EQ(got.options.low_speed_time, r.options.low_speed_time);
  EXPECT_EQ(got.options.max_redirects, r.options.max_redirects);
  EXPECT_EQ(got.options.user_agent, r.options.user_agent);
  EXPECT_EQ(got.options.headers, r.options.headers);

  TransferResult res;
  res.id = 42;
  res.category = ErrorCategory::kHttpStatus;
  res.curl_code = 22;
  res.http_status = 503;
  res.message = "http://127.0.0.1/?…: 503 Service Unavailable";
  res.bytes = 99;
  res.retryable = true;
  res.retry_after = std::chrono::seconds(120);
  res.sha256 = "";
  line = encode(FromWorker{Result{res}});
  auto res_back = decode_from_worker(std::string_view(line).substr(0, line.size() - 1), &error);
  ASSERT_TRUE(res_back.has_value()) << error;
  const auto& gr = std::get<Result>(*res_back).result;
  EXPECT_EQ(gr.id, res.id);
  EXPECT_EQ(gr.category, res.category);
  EXPECT_EQ(gr.curl_code, res.curl_code);
  EXPECT_EQ(gr.http_status, res.http_status);
  EXPECT_EQ(gr.message, res.message);
  EXPECT_EQ(gr.bytes, res.bytes);
  EXPECT_EQ(gr.skipped, res.skipped);
  EXPECT_EQ(gr.retryable, res.retryable);
  EXPECT_EQ(gr.retry_after, res.retry_after);

  line = encode(FromWorker{Progress{1ULL << 40}});
  auto p = decode_from_worker(std::string_view(line).substr(0, line.size() - 1), &error);
  ASSERT_TRUE(p.has_value()) << error;
  EXPECT_EQ(std::get<Progress>(*p).bytes, 1ULL << 40);
}

// limits.rate: equal shares at start, then shares in proportion to the transfers each worker runs.
TEST_F(ProcessPoolTest, RateSharesFollowTheWorkersTransfers) {
  constexpr std::uint64_t kRate = std::uint64_t{3} << 20;
  constexpr std::uint64_t kSize = std::uint64_t{3} << 20;
  start(pool_config(4, 2), kRate);
  EXPECT_EQ(pool_->rate_share(0), kRate / 2);
  EXPECT_EQ(pool_->rate_share(1), kRate / 2);
  // Least-loaded dispatch puts jobs 1 and 3 on worker 0 and job 2 on worker 1; 9 MiB at 3 MiB/s run for about
  // 3 s, past the first rebalance.
  std::vector<std::string> shas;
  for (fetchd::core::JobId id = 1; id <= 3; ++id) {
    shas.push_back(fetchd::origin::body_sha256_hex(kSize, id));
    pool_->submit(request(id, fmt::format("/bytes/{}/s{}.bin?seed={}", kSize, id, id),
                          fmt::format("s{}.bin", id), shas.back()));
  }
  EXPECT_TRUE(run_until(
      loop_, [&] { return pool_->rate_share(0) == 2 * kRate / 3 && pool_->rate_share(1) == kRate / 3; },
      20000))
      << "shares " << pool_->rate_share(0) << " and " << pool_->rate_share(1);
  ASSERT_TRUE(run_until(
      loop_, [&] { return results_.size() == 3; }, 60000));
  for (const auto& r : results_) {
    EXPECT_TRUE(r.ok()) << r.message;
    EXPECT_EQ(r.sha256, shas[r.id - 1]);
  }
  drain();
}

TEST(WorkerProtocol, RateRoundTrips) {
  using namespace fetchd::strategy::protocol;
  const std::string line = encode(ToWorker{Rate{123456789}});
  EXPECT_EQ(line, "{\"bytes_per_s\":123456789,\"op\":\"rate\"}\n");
  std::string error;
  auto back = decode_to_worker(std::string_view(line).substr(0, line.size() - 1), &error);
  ASSERT_TRUE(back.has_value()) << error;
  EXPECT_EQ(std::get<Rate>(*back).bytes_per_s, 123456789u);
  EXPECT_FALSE(decode_to_worker(R"({"op":"rate","bytes_per_s":-1})", &error).has_value());
  EXPECT_FALSE(decode_to_worker(R"({"op":"rate"})", &error).has_value());
}

TEST(WorkerProtocol, BadLinesAreRefusedWithoutQuotingThem) {
  using namespace fetchd::strategy::protocol;
  for (std::string_view bad : {
           R"({"op":"submit","id":1,"url":"http://h/","headers":[["Authorization","s3cret"]]})",  // fields
                                                                                                  // missing
           R"({"op":"result","id":"s3cret"})",
           R"({"op":"launch","token":"s3cret"})",
           R"(["s3cret"])",
           R"({"op":"submit", s3cret)",
           R"({"op":"progress","bytes":-1,"x":"s3cret"})",
       }) {
    std::string to_error;
    std::string from_error;
    EXPECT_FALSE(decode_to_worker(bad, &to_error).has_value()) << bad;
    EXPECT_FALSE(decode_from_worker(bad, &from_error).has_value()) << bad;
    for (const auto& e : {to_error, from_error}) {
      EXPECT_FALSE(e.empty()) << bad;
      EXPECT_EQ(e.find("s3cret"), std::string::npos) << e;
    }
  }
}

TEST(WorkerProtocol, LineBufferSplitsAcrossReadsAndBoundsALine) {
  using namespace fetchd::strategy::protocol;
  LineBuffer lines;
  std::vector<std::string> got;
  auto collect = [&](std::string_view l) { got.emplace_back(l); };
  std::string a = "one\ntw";
  std::string b = "o\n\nthree";
  EXPECT_TRUE(lines.feed(a.data(), a.size(), collect));
  EXPECT_TRUE(lines.feed(b.data(), b.size(), collect));
  EXPECT_EQ(got, (std::vector<std::string>{"one", "two", ""}));
  EXPECT_FALSE(lines.empty());  // "three" waits for its '\n'
  std::string huge(kMaxLineBytes + 1, 'x');
  EXPECT_FALSE(lines.feed(huge.data(), huge.size(), collect));
}

}  // namespace
