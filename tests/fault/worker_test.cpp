// SPDX-License-Identifier: Apache-2.0
// Fault case 31 (process-pool only), through the whole stack: the Scheduler, a worker killed with SIGKILL in
// the middle of a body. tests/strategy/process_pool_test.cpp already covers the pool on its own (reaping,
// respawn, poison jobs, what a first-generation worker inherits); this adds what only the full path shows:
// the job completes within its one scheduler attempt, the respawned worker resumes the dead one's .part with
// Range/If-Range, no zombie remains, and the *respawned* worker (spawned while the parent holds transfer
// sockets, a database file and a listening socket, some deliberately without O_CLOEXEC) holds none of them.

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/kcmp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <sstream>

#include "fault_support.hpp"
#include "fetchd/origin/body.hpp"
#include "fetchd/strategy/process_pool_strategy.hpp"

namespace fetchd::fault {
namespace {

// Our children that died and were not reaped.
std::vector<pid_t> zombie_children() {
  std::vector<pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    pid_t pid = static_cast<pid_t>(std::atoi(e.path().filename().c_str()));
    if (pid <= 0) continue;
    std::string s = read_file(e.path() / "stat");
    auto close = s.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(s.substr(close + 1));
    char state = '?';
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == ::getpid() && state == 'Z') out.push_back(pid);
  }
  return out;
}

// fd -> what it is ("socket:[123]", "/path"), for a process.
std::map<int, std::string> fd_targets(pid_t pid) {
  std::map<int, std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fmt::format("/proc/{}/fd", pid), ec)) {
    std::error_code ec2;
    auto t = fs::read_symlink(e.path(), ec2);
    if (!ec2) out[std::atoi(e.path().filename().c_str())] = t.string();
  }
  return out;
}

class WorkerFault : public FaultTest {};

TEST_P(WorkerFault, Case31_WorkerKilledMidBodyIsReplacedAndTheJobResumesAndCompletes) {
  ASSERT_TRUE(is_process_pool());
  config_.strategy.workers = 1;        // the respawned worker must be the one that finishes the job
  config_.defaults.retry.retries = 0;  // a worker's death is not a failed attempt
  constexpr std::uint64_t kSize = 2000000;
  const std::string target = fmt::format("/bytes/{}/k.bin?seed=31", kSize);
  // The first answer trickles (64 KiB per 50 ms), so the kill lands mid-body; the second is healthy.
  rewrite_.plan(target, {target + "&trickle=64KiB/50ms", target});

  // What a careless parent would leak: a listening socket and a "database" without O_CLOEXEC.
  struct Fd {
    int fd;
    ~Fd() {
      if (fd >= 0) ::close(fd);
    }
  };
  Fd listen_fd{::socket(AF_INET, SOCK_STREAM, 0)};
  const int listener = listen_fd.fd;
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 4), 0);
  Fd db{::open((dir_ / "jobs.db").c_str(), O_RDWR | O_CREAT, 0600)};
  ASSERT_GE(db.fd, 0);

  Runner r(config_);
  auto& pool = dynamic_cast<strategy::ProcessPoolStrategy&>(r.scheduler().strategy());
  const auto original = pool.worker_pids();
  ASSERT_EQ(original.size(), 1u);
  auto req = request(target, "k.bin", /*via_proxy=*/true);
  req.sha256 = origin::body_sha256_hex(kSize, 31);
  auto id = r.add(req);
  pid_t killed = 0;
  std::uint64_t part_at_kill = 0;
  std::map<int, std::string> ours;
  std::map<int, std::string> theirs;
  pid_t respawned = 0;
  std::vector<std::string> leaks;
  std::uint64_t deaths = 0;
  r.on_tick = [&](Runner&) {
    if (killed != 0) return;
    struct stat st {};
    if (::stat(part("k.bin").c_str(), &st) != 0 || st.st_size < 128 * 1024) return;
    pid_t pid = pool.worker_pid(id);
    if (pid == 0) return;
    part_at_kill = static_cast<std::uint64_t>(st.st_size);
    killed = pid;
    EXPECT_EQ(::kill(pid, SIGKILL), 0);
  };
  // The result came from the respawned worker: it is past its start-up, so look at what it holds now.
  r.on_finished = [&](Runner&, const scheduler::JobRecord&) {
    auto pids = pool.worker_pids();
    for (pid_t p : pids) {
      if (std::find(original.begin(), original.end(), p) == original.end()) respawned = p;
    }
    deaths = pool.worker_deaths();
    if (respawned == 0) return;
    ours = fd_targets(::getpid());
    theirs = fd_targets(respawned);
    // kcmp(KCMP_FILE) tells whether two descriptors are one open file description, i.e. inherited; without
    // it, compare what they point to (unique for sockets and files; not for anonymous inodes and pipe ends).
    const bool kcmp_works = ::syscall(SYS_kcmp, ::getpid(), ::getpid(), KCMP_FILE, 2, 2) == 0;
    for (const auto& [t, their_target] : theirs) {
      if (t <= 2) continue;  // stdin is /dev/null; stdout and stderr are our stderr on purpose
      for (const auto& [o, our_target] : ours) {
        const bool shared = kcmp_works
                                ? ::syscall(SYS_kcmp, respawned, ::getpid(), KCMP_FILE, t, o) == 0
                                : their_target == our_target && !their_target.starts_with("anon_inode:") &&
                                      !their_target.starts_with("pipe:");
        if (shared) {
          leaks.push_back(
              fmt::format("respawned worker fd {} ({}) is our fd {} ({})", t, their_target, o, our_target));
        }
      }
    }
  };
  ASSERT_TRUE(r.run());

  ASSERT_NE(killed, 0) << "the transfer never got under way";
  const Outcome& o = r.outcome(id);
  ASSERT_TRUE(done_after(o, 1)) << "the pool re-ran the job; the scheduler saw one attempt";
  EXPECT_EQ(file_sha256(out("k.bin")), origin::body_sha256_hex(kSize, 31));
  EXPECT_EQ(count_regular_files(out()), 1u) << list_tree(out());
  EXPECT_EQ(deaths, 1u);  // read on the loop: the pool is gone after run()
  auto heads = proxy_->heads_for("/bytes/");
  ASSERT_EQ(heads.size(), 2u);
  // The dead worker's .part (with its resume record) was taken over: bytes=N- with N at least what was on
  // disk when it died.
  auto range = heads[1].header("Range");
  ASSERT_TRUE(range.has_value()) << "the respawned worker started from zero";
  EXPECT_EQ(*range, fmt::format("bytes={}-", o.last.resumed_from));
  EXPECT_GE(o.last.resumed_from, part_at_kill);
  EXPECT_EQ(heads[1].header("If-Range").value_or("<none>"), origin::body_etag(kSize, 31));

  ASSERT_NE(respawned, 0) << "no new worker process";
  EXPECT_NE(respawned, killed);
  for (const auto& leak : leaks) ADD_FAILURE() << leak;
  EXPECT_EQ(theirs.count(0) ? theirs[0] : "", "/dev/null");
  EXPECT_TRUE(zombie_children().empty()) << "a zombie remains";
}

INSTANTIATE_TEST_SUITE_P(ProcessPool, WorkerFault, ::testing::Values(all_strategies().back()), param_name);

}  // namespace
}  // namespace fetchd::fault
