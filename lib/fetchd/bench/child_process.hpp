// SPDX-License-Identifier: Apache-2.0
#pragma once
// A child process that bench starts and always reaps: fork + exec (nothing but async-signal-safe calls
// between), its CPU time and peak RSS from wait4(), and a bounded stop (SIGTERM, grace period, SIGKILL). The
// child gets SIGTERM if bench dies first (PR_SET_PDEATHSIG), so an origin never outlives its bench. Thread:
// one thread owns a ChildProcess; nothing here is shared.

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "fetchd/core/unique_fd.hpp"

namespace fetchd::bench {

using core::UniqueFd;

struct ExitStatus {
  int wait_status = 0;  // as filled in by wait4()
  double cpu_user_s = 0;
  double cpu_sys_s = 0;
  double peak_rss_mib = 0;
  double wall_s = 0;  // from spawn to reap

  bool success() const;
  std::optional<int> exit_code() const;    // when it exited
  std::optional<int> term_signal() const;  // when a signal killed it
  std::string describe() const;            // "exit 0", "exit 78", "signal 15 (Terminated)"
};

enum class ChildStdout {
  kInherit,
  kToStderr,        // keeps bench's own stdout for the table
  kPipe,            // readable through stdout_fd()
  kPipeWithStderr,  // stdout and stderr both readable through stdout_fd()
};

class ChildProcess {
 public:
  static constexpr std::chrono::milliseconds kStopGrace{5000};

  // Runs argv[0] (a path; no PATH search) with argv. Throws std::system_error when the process cannot be
  // started, including when exec fails (the child reports errno through a close-on-exec pipe before it
  // exits).
  static ChildProcess spawn(const std::vector<std::string>& argv, ChildStdout out = ChildStdout::kInherit);

  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  // A child still running is stopped (see stop()); it is always reaped.
  ~ChildProcess();

  pid_t pid() const { return pid_; }  // -1 once reaped
  bool reaped() const { return pid_ < 0; }
  int stdout_fd() const { return stdout_.get(); }  // -1 unless ChildStdout::kPipe or kPipeWithStderr
  void close_stdout() { stdout_.reset(); }

  // Sends a signal unless the child was already reaped.
  void kill(int signum) const;
  // Blocks until the child exits. EINTR is retried: a signal handler that wants the child gone must kill it.
  ExitStatus wait();
  // std::nullopt when the child is still running after `timeout`.
  std::optional<ExitStatus> wait_for(std::chrono::milliseconds timeout);
  // SIGTERM, up to `grace` for it to exit, then SIGKILL.
  ExitStatus stop(std::chrono::milliseconds grace = kStopGrace);

 private:
  ChildProcess(pid_t pid, UniqueFd pidfd, UniqueFd stdout_fd);
  std::optional<ExitStatus> reap(int options);

  pid_t pid_ = -1;
  UniqueFd pidfd_;  // pollable for exit; absent on kernels without pidfd_open
  UniqueFd stdout_;
  std::chrono::steady_clock::time_point started_;
};

struct LineResult {
  enum class Status { kLine, kEndOfOutput, kTimeout, kTooLong, kCancelled, kError };
  Status status = Status::kError;
  std::string text;  // the line (without '\n') for kLine, else what went wrong

  bool ok() const { return status == Status::kLine; }
};

// Reads from `fd` up to the first '\n' within `timeout`; never consumes more than that line. Fails on end of
// file, timeout, a read error, a line longer than `max_bytes`, or when `cancelled` says so after a signal.
LineResult read_first_line(int fd, std::chrono::milliseconds timeout,
                           const std::function<bool()>& cancelled = {}, std::size_t max_bytes = 4096);

// Reads from `fd` until end of file, `timeout`, or `max_bytes` (the rest is left unread). What was read.
std::string read_output(int fd, std::chrono::milliseconds timeout, std::size_t max_bytes = 16384);

}  // namespace fetchd::bench
