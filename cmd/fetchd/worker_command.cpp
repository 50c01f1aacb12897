// SPDX-License-Identifier: Apache-2.0
// `fetchd worker`: one process of the process-pool strategy, started by the parent with uv_spawn as
// `/proc/self/exe worker --concurrency K --fsync 0|1 --inner event-loop|blocking --parent-pid P`. Not meant
// to be run by hand (it is hidden from --help). The worker pipe (docs/protocol.md) is its stdin and stdout;
// stdout carries nothing but protocol lines. Logs go to the inherited stderr, prefixed "worker[pid]", so they
// land in the daemon's log. Exit status: 0 after stdin's EOF once every transfer reported, 70 when the pipe
// broke.

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "commands.hpp"
#include "fetchd/config/config.hpp"
#include "fetchd/curl/curl.hpp"
#include "fetchd/strategy/worker.hpp"
#include "logging.hpp"

namespace fetchd::cmd {

namespace {

struct WorkerArgs {
  int concurrency = 1;
  int fsync = 1;
  std::string inner = "event-loop";
  long parent_pid = 0;  // 0: whoever our parent is at start-up (by hand; racy, see below)
  std::string log_level = "info";
};

// Bound to our parent's life: SIGKILL when it dies (even by SIGKILL, where it could not tell us), set first
// so nothing runs unprotected. PR_SET_PDEATHSIG fires when the *thread* that forked us exits; the pool spawns
// from the control loop thread, which outlives the pool. If the parent died before prctl, we were already
// reparented and no signal will come: getppid() no longer names the parent we were started by.
bool bind_to_parent(pid_t expected_parent) {
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
    std::cerr << "fetchd worker: prctl(PR_SET_PDEATHSIG): " << std::strerror(errno) << "\n";
    return false;
  }
  return expected_parent == 0 || ::getppid() == expected_parent;
}

// The worker lives on stdin EOF and PR_SET_PDEATHSIG, not on signals meant for the parent: ^C in a terminal
// reaches the whole process group, and systemd's KillMode=control-group sends SIGTERM to every process of the
// service. Either would kill transfers mid-flight that the parent is about to cancel or finish in order.
void ignore_parent_signals() {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) std::signal(sig, SIG_IGN);
}

// Closes every descriptor above stderr. uv_spawn passes only the three stdio descriptors on purpose, and
// every descriptor fetchd opens is O_CLOEXEC; anything found here leaked from a parent that broke that rule
// (a library, a socket-activated listener) and must not stay open in a worker: a leaked listening socket or
// transfer socket keeps the parent's connections alive. Runs first thing in the subcommand: main() has
// opened nothing before it (curl_global_init opens no descriptor). Returns what was closed, for the log.
std::vector<std::string> close_inherited_descriptors() {
  std::vector<std::string> closed;
  std::vector<int> fds;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) {
    // Without /proc: close them unnamed (glibc 2.34+, Linux 5.9+; on failure nothing is closed, as before).
    ::close_range(3, ~0U, 0);
    return closed;
  }
  const int own = ::dirfd(dir);
  while (dirent* e = ::readdir(dir)) {
    char* end = nullptr;
    long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd <= 2 || fd == own) continue;
    fds.push_back(static_cast<int>(fd));
  }
  ::closedir(dir);
  for (int fd : fds) {
    std::string link = "/proc/self/fd/" + std::to_string(fd);
    std::string target(256, '\0');
    ssize_t n = ::readlink(link.c_str(), target.data(), target.size());
    target.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    ::close(fd);
    closed.push_back(std::to_string(fd) + " (" + target + ")");
  }
  return closed;
}

// The pipe moves to private O_CLOEXEC descriptors, and fds 0 and 1 become /dev/null and stderr: a library
// that reads stdin or prints to stdout can then neither steal nor corrupt protocol lines.
bool take_protocol_descriptors(int* in_fd, int* out_fd) {
  *in_fd = ::fcntl(0, F_DUPFD_CLOEXEC, 3);
  *out_fd = ::fcntl(1, F_DUPFD_CLOEXEC, 3);
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (*in_fd < 0 || *out_fd < 0 || null_fd < 0) return false;
  bool ok = ::dup2(null_fd, 0) == 0 && ::dup2(2, 1) == 1;
  ::close(null_fd);
  return ok;
}

int run_worker_command(const WorkerArgs& args) {
  if (!bind_to_parent(static_cast<pid_t>(args.parent_pid))) {
    // Logging is not set up yet, and this needs no more than one line.
    std::cerr << "fetchd worker[" << ::getpid() << "]: parent " << args.parent_pid << " is gone; exiting\n";
    return kExitSoftware;
  }
  ignore_parent_signals();
  auto inherited = close_inherited_descriptors();

  setup_logging(args.log_level);
  curl::redacted_query_from_env();  // the parent's security.redact_query
  spdlog::set_pattern(fmt::format("%Y-%m-%dT%H:%M:%S.%e %^%l%$ worker[{}] %v", ::getpid()));
  if (!inherited.empty()) {
    std::string list;
    for (const auto& s : inherited) list += (list.empty() ? "" : ", ") + s;
    spdlog::warn("closed {} descriptor(s) inherited without O_CLOEXEC: {}", inherited.size(), list);
  }

  strategy::WorkerOptions options;
  options.concurrency = args.concurrency;
  options.fsync = args.fsync != 0;
  options.inner = args.inner == "blocking" ? config::InnerKind::kBlocking : config::InnerKind::kEventLoop;
  if (options.inner == config::InnerKind::kBlocking && options.concurrency != 1) {
    spdlog::error("--inner blocking runs one transfer: --concurrency must be 1, got {}", options.concurrency);
    return kExitUsage;
  }
  if (!take_protocol_descriptors(&options.in_fd, &options.out_fd)) {
    spdlog::error("setting up the worker pipe: {}", std::strerror(errno));
    return kExitSoftware;
  }
  spdlog::debug("started: concurrency {}, inner {}, fsync {}", options.concurrency,
                config::to_string(options.inner), options.fsync);
  int code = strategy::run_worker(options);
  spdlog::debug("exiting with status {}", code);
  return code;
}

}  // namespace

void register_worker(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<WorkerArgs>();
  auto* sub =
      app.add_subcommand("worker", "A process of the process-pool strategy (started by fetchd itself)");
  sub->group("");  // hidden from --help: only the pool starts it
  sub->add_option("--concurrency", args->concurrency, "Transfers at once")->check(CLI::PositiveNumber);
  sub->add_option("--fsync", args->fsync, "1: output.fsync is on (more file threads)")
      ->check(CLI::Range(0, 1));
  sub->add_option("--inner", args->inner, "event-loop | blocking")
      ->check(CLI::IsMember({"event-loop", "blocking"}));
  sub->add_option("--parent-pid", args->parent_pid, "Exit at once unless this is still our parent");
  sub->add_option("--log-level", args->log_level, "trace|debug|info|warn|error|off");
  sub->callback([args, &exit_code] {
    try {
      exit_code = run_worker_command(*args);
    } catch (const std::exception& e) {
      spdlog::critical("worker: {}", e.what());
      exit_code = kExitSoftware;
    }
  });
}

}  // namespace fetchd::cmd
