// SPDX-License-Identifier: Apache-2.0
#include "child.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <system_error>

extern char** environ;

namespace fetchd::testing {

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void throw_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

std::vector<std::string> build_env(const ChildOptions& options) {
  std::map<std::string, std::string> vars;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string::npos) vars[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& name : options.unset_env) vars.erase(name);
  for (const auto& kv : options.env) {
    auto eq = kv.find('=');
    vars[kv.substr(0, eq)] = eq == std::string::npos ? "" : kv.substr(eq + 1);
  }
  std::vector<std::string> out;
  for (const auto& [k, v] : vars) out.push_back(k + "=" + v);
  return out;
}

int poll_ms(Clock::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, INT_MAX));
}

}  // namespace

Child::Child(const std::vector<std::string>& argv, const ChildOptions& options) {
  int out_pipe[2] = {-1, -1};
  int err_pipe[2] = {-1, -1};
  core::UniqueFd out_write;
  if (options.stdout_tty) {
    out_fd_.reset(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!out_fd_ || ::grantpt(out_fd_.get()) != 0 || ::unlockpt(out_fd_.get()) != 0)
      throw_errno("posix_openpt");
    winsize ws{};
    ws.ws_col = options.tty_columns;
    ws.ws_row = options.tty_rows;
    if (::ioctl(out_fd_.get(), TIOCSWINSZ, &ws) != 0) throw_errno("TIOCSWINSZ");
    out_write.reset(::open(::ptsname(out_fd_.get()), O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!out_write) throw_errno("open pts");
    // Raw output: no "\n" -> "\r\n" translation, so the test sees exactly what fetchctl wrote.
    termios t{};
    if (::tcgetattr(out_write.get(), &t) == 0) {
      t.c_oflag &= ~static_cast<tcflag_t>(OPOST);
      ::tcsetattr(out_write.get(), TCSANOW, &t);
    }
  } else {
    if (::pipe2(out_pipe, O_CLOEXEC) != 0) throw_errno("pipe2");
    out_fd_.reset(out_pipe[0]);
    out_write.reset(out_pipe[1]);
  }
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) throw_errno("pipe2");
  err_fd_.reset(err_pipe[0]);
  core::UniqueFd err_write(err_pipe[1]);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, options.stdin_path.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_write.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, err_write.get(), 2);
  std::vector<std::string> args = argv;
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  std::vector<std::string> env = build_env(options);
  std::vector<char*> cenv;
  for (auto& e : env) cenv.push_back(e.data());
  cenv.push_back(nullptr);
  // The child must start with default signal handling and an empty mask whatever the test runner set.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty;
  sigemptyset(&empty);
  sigset_t all;
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  int rc = ::posix_spawn(&pid_, args[0].c_str(), &actions, &attr, cargs.data(), cenv.data());
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::system_error(rc, std::generic_category(), "posix_spawn " + args[0]);
  pidfd_.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0)));
  if (!pidfd_) throw_errno("pidfd_open");
}

Child::~Child() {
  if (pid_ > 0 && !exited_) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

bool Child::pump(Clock::time_point deadline) {
  pollfd fds[3];
  nfds_t n = 0;
  int out_i = -1, err_i = -1, pid_i = -1;
  if (out_fd_) out_i = static_cast<int>(n), fds[n++] = {out_fd_.get(), POLLIN, 0};
  if (err_fd_) err_i = static_cast<int>(n), fds[n++] = {err_fd_.get(), POLLIN, 0};
  if (!exited_) pid_i = static_cast<int>(n), fds[n++] = {pidfd_.get(), POLLIN, 0};
  if (n == 0) return true;
  int rc = ::poll(fds, n, poll_ms(deadline));
  if (rc < 0 && errno == EINTR) return true;
  if (rc < 0) throw_errno("poll");
  if (rc == 0) return false;
  char buf[65536];
  auto drain = [&](int index, core::UniqueFd& fd, std::string& into) {
    if (index < 0 || fds[index].revents == 0) return;
    ssize_t r = ::read(fd.get(), buf, sizeof buf);
    if (r > 0) {
      into.append(buf, static_cast<std::size_t>(r));
    } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
      fd.reset();  // EOF (a pty master reports EIO once the last slave fd is closed)
    }
  };
  drain(out_i, out_fd_, out_);
  drain(err_i, err_fd_, err_);
  if (pid_i >= 0 && fds[pid_i].revents != 0) exited_ = true;
  return true;
}

bool Child::wait_for_output(const std::string& needle, std::chrono::milliseconds failsafe) {
  auto deadline = Clock::now() + failsafe;
  while (out_.find(needle) == std::string::npos) {
    if (!out_fd_ || !pump(deadline)) return false;
  }
  return true;
}

void Child::kill(int signo) {
  if (pid_ > 0 && !exited_) ::kill(pid_, signo);
}

ChildResult Child::wait(std::chrono::milliseconds failsafe) {
  auto deadline = Clock::now() + failsafe;
  // A pty master never reports EOF while the child may still write; once the child exited, drain what is
  // buffered without blocking and stop.
  bool killed = false;
  while (out_fd_ || err_fd_ || !exited_) {
    if (!pump(deadline)) {
      if (killed) break;
      ::kill(pid_, SIGKILL);
      killed = true;
      deadline = Clock::now() + std::chrono::seconds(10);
      continue;
    }
    if (exited_ && out_fd_) {
      pollfd p{out_fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, 0) <= 0) out_fd_.reset();
    }
  }
  ChildResult r;
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  r.out = out_;
  r.err = err_;
  pid_ = -1;
  return r;
}

ChildResult run_child(const std::vector<std::string>& argv, const ChildOptions& options) {
  Child child(argv, options);
  return child.wait();
}

}  // namespace fetchd::testing
