// SPDX-License-Identifier: Apache-2.0
#include "fetchd/bench/child_process.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <system_error>
#include <thread>
#include <utility>

namespace fetchd::bench {

namespace {

constexpr double kKiBPerMiB = 1024.0;
// Only without pidfd (kernel < 5.3): how often wait_for looks again.
constexpr std::chrono::milliseconds kWaitPollStep{10};

double seconds(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

std::system_error os_error(int err, const std::string& what) {
  return std::system_error(err, std::generic_category(), what);
}

int poll_ms(std::chrono::steady_clock::time_point deadline) {
  auto left =
      std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
  return static_cast<int>(std::max<decltype(left)>(left, 0));
}

}  // namespace

bool ExitStatus::success() const {
  return exit_code() == 0;
}

std::optional<int> ExitStatus::exit_code() const {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  return std::nullopt;
}

std::optional<int> ExitStatus::term_signal() const {
  if (WIFSIGNALED(wait_status)) return WTERMSIG(wait_status);
  return std::nullopt;
}

std::string ExitStatus::describe() const {
  if (auto code = exit_code()) return fmt::format("exit {}", *code);
  if (auto sig = term_signal()) return fmt::format("signal {} ({})", *sig, ::strsignal(*sig));
  return fmt::format("wait status {:#x}", wait_status);
}

ChildProcess ChildProcess::spawn(const std::vector<std::string>& argv, ChildStdout out) {
  if (argv.empty()) throw std::invalid_argument("ChildProcess::spawn: empty argv");
  // Everything the child needs is prepared before fork: after it, only async-signal-safe calls (design.md
  // §3).
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw os_error(errno, "pipe2");
  UniqueFd exec_error_read(fds[0]);
  UniqueFd exec_error_write(fds[1]);
  UniqueFd stdout_read;
  UniqueFd stdout_write;
  const bool to_pipe = out == ChildStdout::kPipe || out == ChildStdout::kPipeWithStderr;
  if (to_pipe) {
    if (::pipe2(fds, O_CLOEXEC) != 0) throw os_error(errno, "pipe2");
    stdout_read.reset(fds[0]);
    stdout_write.reset(fds[1]);
  }
  sigset_t empty_mask;
  sigemptyset(&empty_mask);

  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw os_error(errno, "fork");
  if (pid == 0) {
    // The child: an orphan is sent SIGTERM; the getppid() check closes the race with a parent already gone.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);
    ::sigprocmask(SIG_SETMASK, &empty_mask, nullptr);
    int target = to_pipe ? stdout_write.get() : out == ChildStdout::kToStderr ? STDERR_FILENO : -1;
    // dup2 onto itself would keep O_CLOEXEC (possible only if bench was started with stdout closed).
    bool failed = target == STDOUT_FILENO ? ::fcntl(target, F_SETFD, 0) < 0
                                          : target >= 0 && ::dup2(target, STDOUT_FILENO) < 0;
    if (!failed && out == ChildStdout::kPipeWithStderr) failed = ::dup2(STDOUT_FILENO, STDERR_FILENO) < 0;
    if (failed) {
      int err = errno;
      [[maybe_unused]] auto n = ::write(exec_error_write.get(), &err, sizeof err);
      ::_exit(127);
    }
    // Only stdin, stdout and stderr reach the child: descriptors bench itself inherited without O_CLOEXEC (a
    // shell's, a CI runner's) would otherwise pass on to `fetchd run` and its workers. Best effort: before
    // Linux 5.11 there is no close_range, and nothing else async-signal-safe closes them all.
    ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    ::execv(args[0], args.data());
    int err = errno;
    [[maybe_unused]] auto n = ::write(exec_error_write.get(), &err, sizeof err);
    ::_exit(127);
  }

  // pidfd_open before anything can reap it, so the pid cannot have been reused.
  // The raw syscall: glibc 2.36's <sys/pidfd.h> lacks extern "C", so its wrapper cannot be linked from C++.
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0U)));
  ChildProcess child(pid, std::move(pidfd), std::move(stdout_read));
  exec_error_write.reset();
  stdout_write.reset();
  int err = 0;
  ssize_t n = 0;
  do {
    n = ::read(exec_error_read.get(), &err, sizeof err);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof err)) {
    child.wait();
    throw os_error(err, fmt::format("cannot execute {}", argv[0]));
  }
  return child;
}

ChildProcess::ChildProcess(pid_t pid, UniqueFd pidfd, UniqueFd stdout_fd)
    : pid_(pid),
      pidfd_(std::move(pidfd)),
      stdout_(std::move(stdout_fd)),
      started_(std::chrono::steady_clock::now()) {}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::move(other.pidfd_)),
      stdout_(std::move(other.stdout_)),
      started_(other.started_) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    if (!reaped()) {
      try {
        stop();
      } catch (...) {  // reaping is best effort in a move
      }
    }
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::move(other.pidfd_);
    stdout_ = std::move(other.stdout_);
    started_ = other.started_;
  }
  return *this;
}

ChildProcess::~ChildProcess() {
  if (reaped()) return;
  try {
    stop();
  } catch (...) {  // a destructor must not throw; stop() only throws if someone else reaped the child
  }
}

void ChildProcess::kill(int signum) const {
  if (!reaped()) ::kill(pid_, signum);
}

std::optional<ExitStatus> ChildProcess::reap(int options) {
  ExitStatus status;
  rusage usage{};
  pid_t r = 0;
  do {
    r = ::wait4(pid_, &status.wait_status, options, &usage);
  } while (r < 0 && errno == EINTR);
  if (r < 0) throw os_error(errno, fmt::format("wait4({})", pid_));
  if (r == 0) return std::nullopt;  // WNOHANG, still running
  status.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  status.cpu_user_s = seconds(usage.ru_utime);
  status.cpu_sys_s = seconds(usage.ru_stime);
  status.peak_rss_mib = static_cast<double>(usage.ru_maxrss) / kKiBPerMiB;  // ru_maxrss is in KiB on Linux
  pid_ = -1;
  pidfd_.reset();
  return status;
}

ExitStatus ChildProcess::wait() {
  if (reaped()) throw std::logic_error("ChildProcess::wait: already reaped");
  return *reap(0);
}

std::optional<ExitStatus> ChildProcess::wait_for(std::chrono::milliseconds timeout) {
  if (reaped()) throw std::logic_error("ChildProcess::wait_for: already reaped");
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (auto status = reap(WNOHANG)) return status;
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    if (pidfd_) {
      pollfd p{pidfd_.get(), POLLIN, 0};
      int r = ::poll(&p, 1, poll_ms(deadline));
      if (r < 0 && errno != EINTR) throw os_error(errno, "poll(pidfd)");
    } else {
      std::this_thread::sleep_for(std::min(kWaitPollStep, timeout));
    }
  }
}

ExitStatus ChildProcess::stop(std::chrono::milliseconds grace) {
  kill(SIGTERM);
  if (auto status = wait_for(grace)) return *status;
  kill(SIGKILL);
  return wait();
}

LineResult read_first_line(int fd, std::chrono::milliseconds timeout, const std::function<bool()>& cancelled,
                           std::size_t max_bytes) {
  using Status = LineResult::Status;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string line;
  char c = 0;
  while (true) {
    // One byte at a time: never consume more than the first line (the rest belongs to whoever reads next).
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, poll_ms(deadline));
    if (r < 0) {
      if (errno != EINTR) return {Status::kError, fmt::format("poll: {}", std::strerror(errno))};
      if (cancelled && cancelled()) return {Status::kCancelled, "interrupted"};
      continue;
    }
    if (r == 0) {
      return {Status::kTimeout,
              line.empty() ? "nothing printed" : fmt::format("no end of line after '{}'", line)};
    }
    ssize_t n = ::read(fd, &c, 1);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return {Status::kError, fmt::format("read: {}", std::strerror(errno))};
    }
    if (n == 0) {
      return {Status::kEndOfOutput,
              line.empty() ? "end of output" : fmt::format("end of output after '{}'", line)};
    }
    if (c == '\n') return {Status::kLine, std::move(line)};
    if (line.size() >= max_bytes)
      return {Status::kTooLong, fmt::format("first line longer than {} bytes", max_bytes)};
    line += c;
  }
}

std::string read_output(int fd, std::chrono::milliseconds timeout, std::size_t max_bytes) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string out;
  char buffer[4096];
  while (out.size() < max_bytes) {
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, poll_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    ssize_t n = ::read(fd, buffer, std::min(sizeof buffer, max_bytes - out.size()));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;
    out.append(buffer, static_cast<std::size_t>(n));
  }
  return out;
}

}  // namespace fetchd::bench
