// SPDX-License-Identifier: Apache-2.0
#pragma once
// Owner of a uv_loop_t, and uv_queue_work with std::function. The destructor closes what is still open and runs
// the loop until uv_loop_close() succeeds, so every close callback has run and every Box is freed.
// Thread: the thread that runs the loop.

#include <uv.h>

#include <functional>

namespace fetchd::uv {

class Loop {
 public:
  Loop();
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  uv_loop_t* get() { return &loop_; }
  int run(uv_run_mode mode = UV_RUN_DEFAULT);
  void stop() { uv_stop(&loop_); }
  // Runs until no handle is left and uv_loop_close succeeds; returns uv_loop_close's result (0 on success).
  // Handles still open are closed first (their owners must be gone or about to be).
  int close();

 private:
  uv_loop_t loop_{};
  bool closed_ = false;
};

// Runs work() on libuv's thread pool (meant for short blocking file-system calls, never for transfers) and
// after(status) back on the loop thread; status is UV_ECANCELED if the work never ran.
void queue_work(uv_loop_t* loop, std::function<void()> work, std::function<void(int status)> after);

}  // namespace fetchd::uv
