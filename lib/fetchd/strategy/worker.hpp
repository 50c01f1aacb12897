// SPDX-License-Identifier: Apache-2.0
#pragma once
// The body of `fetchd worker`, a process of the process-pool strategy: on its own fresh loop it reads
// requests from the worker pipe (worker_protocol.hpp), runs them with an inner strategy (an EventLoopStrategy
// for many transfers at once, or one blocking curl_easy_perform at a time on a thread), and writes results
// and its byte total back. It exits 0 once its input reaches EOF and every transfer it was given has
// reported. Thread: run_worker() owns the calling thread and the loop it creates.

#include "fetchd/config/config.hpp"

namespace fetchd::strategy {

struct WorkerOptions {
  int concurrency = 1;  // transfers this worker runs at once (the parent never sends more)
  bool fsync = true;    // sizes the file threads, as output.fsync does for event-loop
  config::InnerKind inner = config::InnerKind::kEventLoop;  // kBlocking needs concurrency == 1
  int in_fd = 0;                                            // requests; read until EOF
  int out_fd = 1;                                           // results and progress, nothing else
};

// Runs until the input's EOF and every transfer reported; returns the process exit status: 0, or 70
// (EX_SOFTWARE) when the pipe broke (the parent is gone or sent something unreadable).
int run_worker(const WorkerOptions& options);

}  // namespace fetchd::strategy
