// SPDX-License-Identifier: Apache-2.0
#include "fetchd/bench/origin_process.hpp"

#include <gtest/gtest.h>

#include <csignal>

namespace fetchd::bench {
namespace {

using namespace std::chrono_literals;

// A stand-in origin, a shell script. Where it "exec sleep"s, the sleep is the process waiting to be stopped,
// not a synchronisation.
std::vector<std::string> fake_origin(const std::string& script) {
  return {"/bin/sh", "-c", script};
}

TEST(ParseListeningLine, TakesTheUrl) {
  EXPECT_EQ(parse_listening_line("listening on http://127.0.0.1:8080"), "http://127.0.0.1:8080");
  EXPECT_EQ(parse_listening_line("listening on http://127.0.0.1:1\r"), "http://127.0.0.1:1");
  EXPECT_EQ(parse_listening_line("listening on http://[::1]:65535"), "http://[::1]:65535");
}

TEST(ParseListeningLine, RefusesAnythingElse) {
  for (std::string_view line :
       {"", "listening on", "listening on 127.0.0.1:80", "listening on https://h:1",
        "listening on http://127.0.0.1", "listening on http://127.0.0.1:", "listening on http://127.0.0.1:0",
        "listening on http://127.0.0.1:65536", "listening on http://127.0.0.1:80/x",
        "listening on http://:80", "Listening on http://127.0.0.1:80", "listening on http://127.0.0.1:8a"}) {
    EXPECT_FALSE(parse_listening_line(line)) << line;
  }
}

TEST(OriginArgv, PassesLatencyAndAnEphemeralPort) {
  auto argv = origin_argv("/proc/self/exe", 25ms);
  EXPECT_EQ(argv, (std::vector<std::string>{"/proc/self/exe", "origin", "--host", "127.0.0.1", "--port", "0",
                                            "--latency", "25ms"}));
}

TEST(OriginProcess, ReadsTheAddressAndStops) {
  auto origin =
      OriginProcess::start(fake_origin("echo 'listening on http://127.0.0.1:4321'; exec sleep 1000"));
  EXPECT_EQ(origin.base_url(), "http://127.0.0.1:4321");
  EXPECT_GT(origin.pid(), 0);
  EXPECT_FALSE(origin.exited());
  auto status = origin.stop();
  EXPECT_EQ(status.term_signal(), SIGTERM);
  EXPECT_EQ(origin.stop().wait_status, status.wait_status);  // idempotent
}

TEST(OriginProcess, StopReportsHowTheOriginEnded) {
  // Exits 7 on SIGTERM, as an origin that fails its shutdown would. The shell spins (we stop it at once)
  // rather than wait for a background sleep: a signal to a just-forked child can be lost before it execs,
  // leaving a stray.
  auto origin = OriginProcess::start(
      fake_origin("trap 'exit 7' TERM; echo 'listening on http://127.0.0.1:4321'; while :; do :; done"));
  EXPECT_EQ(origin.stop().exit_code(), 7);
  EXPECT_EQ(origin.exited(), "exit 7");
}

TEST(OriginProcess, ExitBeforeTheAddressIsAClearError) {
  try {
    OriginProcess::start(fake_origin("echo 'bind: address in use' >&2; exit 5"));
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("origin did not announce its address"), std::string::npos) << what;
    EXPECT_NE(what.find("exit 5"), std::string::npos) << what;
  }
}

TEST(OriginProcess, SomethingElseThanTheAddressIsAClearError) {
  try {
    OriginProcess::start(fake_origin("echo 'hello world'; exec sleep 1000"));
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("printed 'hello world' instead of"), std::string::npos) << e.what();
  }
}

TEST(OriginProcess, SilenceIsBoundedByTheTimeout) {
  try {
    OriginProcess::start(fake_origin("exec sleep 1000"), 50ms);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("within 50ms: nothing printed"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace fetchd::bench
