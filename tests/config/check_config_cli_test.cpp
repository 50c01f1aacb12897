// SPDX-License-Identifier: Apache-2.0
// Runs the real `fetchd check-config` (path in FETCHD_BIN) and checks exit codes and output streams.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "temp_dir.hpp"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using fetchd::testing::TempDir;

struct RunResult {
  int status = -1;  // exit status, or -1 when it did not exit normally
  std::string out;
  std::string err;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class CheckConfigCli : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* bin = std::getenv("FETCHD_BIN");
    if (bin == nullptr || *bin == '\0') GTEST_SKIP() << "FETCHD_BIN is not set (run through meson test)";
    bin_ = bin;
  }

  RunResult run(std::vector<std::string> args) {
    args.insert(args.begin(), bin_);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    auto out_path = dir_ / "stdout";
    auto err_path = dir_ / "stderr";
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, bin_.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    RunResult r;
    if (rc != 0) {
      ADD_FAILURE() << "posix_spawn " << bin_ << ": " << std::strerror(rc);
      return r;
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status)) r.status = WEXITSTATUS(status);
    r.out = slurp(out_path);
    r.err = slurp(err_path);
    return r;
  }

  std::string bin_;
  TempDir dir_;
};

TEST_F(CheckConfigCli, ValidConfigExitsZeroAndPrintsIt) {
  auto file = dir_.write("ok.yaml",
                         "defaults: {headers: {Authorization: 'Bearer s3cret'}}\n"
                         "jobs:\n  - url: http://u:pw@127.0.0.1:8080/bytes/16\n");
  RunResult r = run({"check-config", file.string()});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_NE(r.out.find("strategy:\n  kind: event-loop"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("dest: \"16\""), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("s3cret"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("u:pw"), std::string::npos) << r.out;

  RunResult shown = run({"check-config", "--show-secrets", file.string()});
  EXPECT_EQ(shown.status, 0) << shown.err;
  EXPECT_NE(shown.out.find("Bearer s3cret"), std::string::npos) << shown.out;
  EXPECT_NE(shown.out.find("u:pw@"), std::string::npos) << shown.out;
}

TEST_F(CheckConfigCli, InvalidConfigExits78WithOneErrorPerLine) {
  auto file = dir_.write("bad.yaml",
                         "strategy:\n  concurency: 5\n  kind: warp\njobs:\n  - url: file:///etc/passwd\n");
  RunResult r = run({"check-config", file.string()});
  EXPECT_EQ(r.status, 78);
  EXPECT_EQ(r.out, "");
  std::string f = file.string();
  EXPECT_EQ(
      r.err,
      f + ":2:3: strategy.concurency: unknown key 'concurency' in strategy; did you mean 'concurrency'?\n" +
          f +
          ":3:9: strategy.kind: unknown strategy kind 'warp'; expected one of: event-loop, curl-multi, "
          "thread-pool, process-pool\n" +
          f + ":5:10: jobs[0].url: URL scheme 'file' is not allowed (use http or https)\n");
}

TEST_F(CheckConfigCli, MissingFileExits78) {
  RunResult r = run({"check-config", (dir_ / "missing.yaml").string()});
  EXPECT_EQ(r.status, 78);
  EXPECT_NE(r.err.find("missing.yaml: cannot read the config file: No such file or directory"),
            std::string::npos)
      << r.err;
}

TEST_F(CheckConfigCli, ShippedExamplesAreValid) {
  for (const char* name : {"config/fetchd.example.yaml", "config/demo.yaml"}) {
    RunResult r = run({"check-config", (fs::path(FETCHD_SOURCE_ROOT) / name).string()});
    EXPECT_EQ(r.status, 0) << name << ":\n" << r.err;
  }
}

}  // namespace
