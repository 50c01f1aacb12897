// SPDX-License-Identifier: Apache-2.0
#include "fetchd/bench/child_process.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <system_error>

namespace fetchd::bench {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> sh(const std::string& script) {
  return {"/bin/sh", "-c", script};
}

TEST(ChildProcess, ReportsTheExitCode) {
  auto child = ChildProcess::spawn(sh("exit 3"));
  EXPECT_GT(child.pid(), 0);
  auto status = child.wait();
  EXPECT_TRUE(child.reaped());
  EXPECT_EQ(status.exit_code(), 3);
  EXPECT_FALSE(status.success());
  EXPECT_EQ(status.describe(), "exit 3");
  EXPECT_GE(status.wall_s, 0.0);
}

TEST(ChildProcess, MeasuresTheChildsOwnResources) {
  // A busy loop in the child: its CPU time shows up in the child's rusage.
  auto child = ChildProcess::spawn(sh("i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"));
  auto status = child.wait();
  EXPECT_TRUE(status.success());
  EXPECT_GT(status.cpu_user_s + status.cpu_sys_s, 0.0);
  EXPECT_GT(status.peak_rss_mib, 0.0);
}

// What bench relies on for process pools: wait4() on a child reports, with the child's own CPU, that of every
// descendant the child reaped (RUSAGE_CHILDREN semantics). Here the outer shell only starts a second shell (a
// separate process: it is not the last command, so it is not exec'd in place) and waits for it; the inner one
// burns the CPU.
TEST(ChildProcess, CpuIncludesTheDescendantsItReaped) {
  auto child =
      ChildProcess::spawn(sh("/bin/sh -c 'i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done'; exit 0"));
  auto status = child.wait();
  ASSERT_TRUE(status.success()) << status.describe();
  // The grandchild's loop takes well over 0.1 s of CPU on any machine; the shell's own fork+wait is a few ms.
  EXPECT_GT(status.cpu_user_s + status.cpu_sys_s, 0.1);
  EXPECT_GE(status.wall_s, status.cpu_user_s + status.cpu_sys_s - 0.05);
}

TEST(ChildProcess, InheritsNoDescriptorButTheStandardThree) {
  UniqueFd leaky(::open("/dev/null", O_RDONLY));  // no O_CLOEXEC, as a careless parent of bench might leave
  ASSERT_TRUE(leaky);
  const auto fd = std::to_string(leaky.get());
  auto child =
      ChildProcess::spawn(sh("if [ -e /proc/$$/fd/" + fd + " ]; then exit 1; fi; [ -e /proc/$$/fd/2 ]"));
  EXPECT_EQ(child.wait().exit_code(), 0);
}

TEST(ChildProcess, ExecFailureIsAnExceptionNotAnExitCode) {
  try {
    ChildProcess::spawn({"/nonexistent/fetchd", "run"});
    FAIL() << "expected std::system_error";
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot execute /nonexistent/fetchd"), std::string::npos)
        << e.what();
    EXPECT_EQ(e.code().value(), ENOENT);
  }
}

TEST(ChildProcess, StopTerminatesARunningChild) {
  auto child = ChildProcess::spawn({"/bin/sleep", "1000"});
  EXPECT_FALSE(child.wait_for(0ms));  // still running
  auto status = child.stop();
  EXPECT_EQ(status.term_signal(), SIGTERM);
  EXPECT_NE(status.describe().find("signal 15"), std::string::npos) << status.describe();
  EXPECT_TRUE(child.reaped());
}

TEST(ChildProcess, StopEscalatesToSigkill) {
  // The shell ignores SIGTERM and tells us so before we stop it, so the grace period really runs out.
  auto child = ChildProcess::spawn(sh("trap '' TERM; echo ready; while :; do :; done"), ChildStdout::kPipe);
  auto line = read_first_line(child.stdout_fd(), 10s);
  ASSERT_TRUE(line.ok()) << line.text;
  ASSERT_EQ(line.text, "ready");
  auto status = child.stop(50ms);
  EXPECT_EQ(status.term_signal(), SIGKILL);
}

TEST(ChildProcess, DestructorStopsAndReaps) {
  pid_t pid = 0;
  {
    auto child = ChildProcess::spawn({"/bin/sleep", "1000"});
    pid = child.pid();
  }
  // Reaped: the pid is no longer our child.
  errno = 0;
  EXPECT_EQ(::waitpid(pid, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

TEST(ChildProcess, MovedFromIsEmpty) {
  auto a = ChildProcess::spawn(sh("exit 0"));
  auto b = std::move(a);
  EXPECT_TRUE(a.reaped());  // NOLINT(bugprone-use-after-move): checking the moved-from state is the point
  EXPECT_TRUE(b.wait().success());
}

TEST(ReadFirstLine, ReadsOnlyTheFirstLine) {
  auto child = ChildProcess::spawn(sh("echo hello; echo world"), ChildStdout::kPipe);
  auto first = read_first_line(child.stdout_fd(), 10s);
  EXPECT_TRUE(first.ok());
  EXPECT_EQ(first.text, "hello");
  EXPECT_EQ(read_first_line(child.stdout_fd(), 10s).text, "world");
  EXPECT_TRUE(child.wait().success());
}

TEST(ReadFirstLine, EndOfOutputWithoutANewline) {
  auto child = ChildProcess::spawn(sh("printf abc"), ChildStdout::kPipe);
  auto line = read_first_line(child.stdout_fd(), 10s);
  EXPECT_EQ(line.status, LineResult::Status::kEndOfOutput);
  EXPECT_EQ(line.text, "end of output after 'abc'");
}

TEST(ReadFirstLine, TimesOutOnASilentChild) {
  auto child = ChildProcess::spawn({"/bin/sleep", "1000"}, ChildStdout::kPipe);
  auto line = read_first_line(child.stdout_fd(), 50ms);
  EXPECT_EQ(line.status, LineResult::Status::kTimeout);
  EXPECT_EQ(line.text, "nothing printed");
}

TEST(ReadFirstLine, RefusesAnEndlessLine) {
  auto child = ChildProcess::spawn(sh("printf '%0100d'"), ChildStdout::kPipe);
  auto line = read_first_line(child.stdout_fd(), 10s, {}, 10);
  EXPECT_EQ(line.status, LineResult::Status::kTooLong);
  EXPECT_EQ(line.text, "first line longer than 10 bytes");
}

TEST(ChildStdout, ToStderrKeepsStdoutFree) {
  auto child = ChildProcess::spawn(sh("echo to-stderr"), ChildStdout::kToStderr);
  EXPECT_EQ(child.stdout_fd(), -1);
  EXPECT_TRUE(child.wait().success());
}

TEST(ChildStdout, PipeWithStderrCapturesBoth) {
  auto child = ChildProcess::spawn(sh("echo out; echo err >&2"), ChildStdout::kPipeWithStderr);
  auto output = read_output(child.stdout_fd(), 10s);
  EXPECT_EQ(output, "out\nerr\n");
  EXPECT_TRUE(child.wait().success());
}

TEST(ReadOutput, StopsAtTheByteLimitAndAtTheTimeout) {
  auto chatty = ChildProcess::spawn(sh("printf '%0100d'"), ChildStdout::kPipe);
  EXPECT_EQ(read_output(chatty.stdout_fd(), 10s, 10), std::string(10, '0'));
  auto silent = ChildProcess::spawn({"/bin/sleep", "1000"}, ChildStdout::kPipe);
  EXPECT_EQ(read_output(silent.stdout_fd(), 20ms), "");
}

TEST(UniqueFd, ClosesOnReset) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  UniqueFd a(fds[0]);
  UniqueFd b(fds[1]);
  EXPECT_TRUE(a);
  UniqueFd c = std::move(a);
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(c.get(), fds[0]);
  c.reset();
  EXPECT_EQ(::fcntl(fds[0], F_GETFD), -1);
}

}  // namespace
}  // namespace fetchd::bench
