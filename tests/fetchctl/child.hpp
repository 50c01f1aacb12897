// SPDX-License-Identifier: Apache-2.0
#pragma once
// Runs the real fetchctl (or any program) as a child: stdin from a file, stdout and stderr captured through
// pipes (or stdout on a pseudo-terminal), waited for with a pidfd and a bounded failsafe, never with sleeps.

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "fetchd/core/unique_fd.hpp"

namespace fetchd::testing {

struct ChildOptions {
  std::string stdin_path = "/dev/null";
  std::vector<std::string> env;  // "NAME=value" added to (and replacing in) the test's environment
  std::vector<std::string> unset_env{"FETCHD_SOCKET"};
  bool stdout_tty = false;  // stdout (only) on a pseudo-terminal of tty_columns x tty_rows
  unsigned short tty_columns = 100;
  unsigned short tty_rows = 30;
};

struct ChildResult {
  int exit_code = -1;  // -1: killed by a signal (also by the failsafe)
  int signal = 0;
  std::string out;
  std::string err;
};

class Child {
 public:
  Child(const std::vector<std::string>& argv, const ChildOptions& options = {});
  ~Child();  // kills and reaps a child still running
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // Reads stdout until it contains `needle` (true) or `failsafe` passes / stdout ends (false).
  bool wait_for_output(const std::string& needle,
                       std::chrono::milliseconds failsafe = std::chrono::seconds(30));
  void kill(int signo);
  // Closes the read end of stdout, as `| head` does once it has its lines: the child's next write gets EPIPE
  // (or SIGPIPE). Everything read so far stays in out().
  void close_stdout() { out_fd_.reset(); }
  // Reads both streams to their end and reaps the child; SIGKILLs it after `failsafe`.
  ChildResult wait(std::chrono::milliseconds failsafe = std::chrono::seconds(60));
  const std::string& out() const { return out_; }

 private:
  // One poll round over the open streams and the pidfd; false when the deadline passed.
  bool pump(std::chrono::steady_clock::time_point deadline);

  pid_t pid_ = -1;
  core::UniqueFd pidfd_;
  core::UniqueFd out_fd_;
  core::UniqueFd err_fd_;
  bool exited_ = false;
  std::string out_;
  std::string err_;
};

// Convenience: run to completion.
ChildResult run_child(const std::vector<std::string>& argv, const ChildOptions& options = {});

}  // namespace fetchd::testing
