// SPDX-License-Identifier: Apache-2.0
#pragma once
// Test helpers for running real programs: a child with stdout/stderr sent to files, waited for with a bounded
// failsafe, and a free loopback port.

#include <chrono>
#include <string>
#include <vector>

namespace fetchd::testing {

struct ProcessResult {
  int exit_code = -1;  // -1: killed by a signal or by the failsafe
  std::string out;
  std::string err;
};

// Runs argv[0] (a path) to completion; kills it after `limit` (a failsafe, never the expected path).
ProcessResult run_process(const std::vector<std::string>& argv, std::chrono::seconds limit = std::chrono::seconds(120));

// Starts argv in the background with output to files in `log_dir`; returns the pid.
int spawn_process(const std::vector<std::string>& argv, const std::string& log_dir);

// Waits for `pid` to exit, killing it with SIGKILL after `limit`; returns its exit code (-1 if signalled).
int wait_process(int pid, std::chrono::seconds limit);

// True once something accepts TCP connections on 127.0.0.1:port, within `limit`.
bool wait_for_port(int port, std::chrono::seconds limit);

// A port on 127.0.0.1 that was free a moment ago (bound to port 0, then closed).
int free_port();

}  // namespace fetchd::testing
