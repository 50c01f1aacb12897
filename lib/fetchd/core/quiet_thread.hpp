// SPDX-License-Identifier: Apache-2.0
#pragma once
// Helper threads that never take a process signal. SIGTERM, SIGINT, SIGHUP and SIGCHLD belong to the control
// loop (libuv signal handles); the kernel may deliver a process signal to any thread that does not block it,
// and on a helper blocked in a condition wait its handling then waits for that thread (under ThreadSanitizer,
// which runs handlers at the receiving thread's next interceptor, it never came: SIGTERM was lost).
// Thread: any.

#include <signal.h>  // NOLINT(modernize-deprecated-headers): pthread_sigmask is POSIX, not in <csignal>

#include <thread>
#include <utility>

namespace fetchd::core {

// Starts fn on a new thread with every signal blocked: the mask is set before the thread exists (a thread
// inherits its creator's), so no signal can reach it first; the caller's own mask is restored at once.
template <typename Fn>
std::thread start_quiet_thread(Fn&& fn) {
  sigset_t all;
  sigset_t old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  struct Restore {
    const sigset_t* mask;
    ~Restore() { pthread_sigmask(SIG_SETMASK, mask, nullptr); }
  } restore{&old};
  return std::thread(std::forward<Fn>(fn));
}

}  // namespace fetchd::core
