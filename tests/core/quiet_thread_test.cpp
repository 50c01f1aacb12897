// SPDX-License-Identifier: Apache-2.0
// A quiet thread blocks every signal from its first instruction, and its creator's mask is left as it was.

#include "fetchd/core/quiet_thread.hpp"

#include <gtest/gtest.h>

namespace fetchd::core {
namespace {

bool blocked(int signum) {
  sigset_t mask;
  pthread_sigmask(SIG_BLOCK, nullptr, &mask);
  return sigismember(&mask, signum) == 1;
}

TEST(QuietThread, BlocksEverySignalInTheThreadOnly) {
  ASSERT_FALSE(blocked(SIGTERM));
  bool term = false;
  bool hup = false;
  bool chld = false;
  auto t = start_quiet_thread([&] {
    term = blocked(SIGTERM);
    hup = blocked(SIGHUP);
    chld = blocked(SIGCHLD);
  });
  t.join();
  EXPECT_TRUE(term);
  EXPECT_TRUE(hup);
  EXPECT_TRUE(chld);
  EXPECT_FALSE(blocked(SIGTERM)) << "the creator's mask must be restored";
}

}  // namespace
}  // namespace fetchd::core
