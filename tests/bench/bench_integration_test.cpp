// SPDX-License-Identifier: Apache-2.0
// End to end: the real `fetchd bench` (FETCHD_BIN) with its own origin and `fetchd run` children.

#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fetchd/bench/bench.hpp"
#include "fetchd/bench/child_process.hpp"
#include "fetchd/bench/temp_dir.hpp"

namespace fetchd::bench {
namespace {

using namespace std::chrono_literals;

constexpr auto kBenchTimeout = 60s;

class BenchBinary : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* bin = std::getenv("FETCHD_BIN");
    if (bin == nullptr || *bin == '\0') GTEST_SKIP() << "FETCHD_BIN is not set (run through meson test)";
    bin_ = bin;
    // Bench makes its row dirs under TMPDIR: point it at ours to see that they are removed.
    const char* old = std::getenv("TMPDIR");
    if (old != nullptr) old_tmpdir_ = old;
    ::setenv("TMPDIR", dir_.path().c_str(), 1);
  }
  void TearDown() override {
    if (old_tmpdir_) {
      ::setenv("TMPDIR", old_tmpdir_->c_str(), 1);
    } else {
      ::unsetenv("TMPDIR");
    }
  }

  ExitStatus run_bench_binary(std::vector<std::string> args) {
    args.insert(args.begin(), {bin_, "bench"});
    auto child = ChildProcess::spawn(args, ChildStdout::kToStderr);
    auto status = child.wait_for(kBenchTimeout);
    if (!status) {
      ADD_FAILURE() << "fetchd bench did not finish within 60s";
      return child.stop();
    }
    return *status;
  }

  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir_.path()))
      names.push_back(e.path().filename());
    return names;
  }

  TempDir dir_ = TempDir::create("fetchd-bench-it-");
  std::string bin_;
  std::optional<std::string> old_tmpdir_;
};

TEST_F(BenchBinary, TinyWorkloadProducesAVerifiedRow) {
  const auto json_path = dir_.path() / "out.json";
  auto status = run_bench_binary({"--files", "50", "--size", "1KiB", "--latency", "0ms", "--concurrency", "8",
                                  "--json", json_path.string()});
  ASSERT_TRUE(status.success()) << status.describe();

  std::ifstream in(json_path);
  ASSERT_TRUE(in) << "no " << json_path;
  auto rows = nlohmann::json::parse(in);
  ASSERT_TRUE(rows.is_array());
  ASSERT_EQ(rows.size(), 1U);
  const auto& row = rows[0];
  for (const char* key : {"strategy", "concurrency", "files", "bytes", "wall_s", "files_per_s", "mib_per_s",
                          "cpu_s", "peak_rss_mib", "failures"}) {
    EXPECT_TRUE(row.contains(key)) << key;
  }
  EXPECT_EQ(row["strategy"], "event-loop");
  EXPECT_EQ(row["concurrency"], 8);
  EXPECT_EQ(row["files"], 50);
  EXPECT_EQ(row["bytes"], 50 * 1024);
  EXPECT_EQ(row["failures"], 0);
  EXPECT_EQ(row["verify_failures"], 0);
  EXPECT_EQ(row["inline_checks"], true);
  EXPECT_GT(row["wall_s"].get<double>(), 0.0);
  EXPECT_GT(row["files_per_s"].get<double>(), 0.0);
  EXPECT_GT(row["cpu_s"].get<double>(), 0.0);
  EXPECT_GT(row["peak_rss_mib"].get<double>(), 0.0);
  EXPECT_GE(row["process_wall_s"].get<double>(), row["wall_s"].get<double>());
  // The row's temp dir is gone; only our JSON file is left.
  EXPECT_EQ(entries(), std::vector<std::string>{"out.json"});
}

TEST_F(BenchBinary, RefusesAbsurdInputsWithUsageStatus) {
  const std::vector<std::vector<std::string>> cases = {
      {"--files", "0"},          {"--concurrency", "0"},
      {"--concurrency", "8,,9"}, {"--strategies", "bogus"},
      {"--size", "12 parsecs"},  {"--latency", "soon"},
      {"--files", "-3"},         {"--json", "/nonexistent/out.json"},
  };
  for (const auto& args : cases) {
    auto status = run_bench_binary(args);
    EXPECT_EQ(status.exit_code(), 2) << args[0] << " " << args[1] << ": " << status.describe();
  }
  EXPECT_TRUE(entries().empty());
}

TEST_F(BenchBinary, SigintStopsTheRowAndCleansUp) {
  const auto json_path = dir_.path() / "out.json";
  // A latency no row would sit out within the test's time limit: only the interrupt can end it.
  std::vector<std::string> args = {bin_, "bench",         "--files", "50",     "--latency",
                                   "1h", "--concurrency", "8",       "--json", json_path.string()};
  auto bench = ChildProcess::spawn(args, ChildStdout::kPipe);
  // The workload and output lines, then the table header: the row starts right after.
  for (const char* what : {"workload", "output", "strategy"}) {
    auto line = read_first_line(bench.stdout_fd(), kBenchTimeout);
    ASSERT_TRUE(line.ok()) << line.text;
    ASSERT_EQ(line.text.rfind(what, 0), 0U) << line.text;
  }
  bench.kill(SIGINT);
  auto status = bench.wait_for(kBenchTimeout);
  ASSERT_TRUE(status) << "fetchd bench ignored SIGINT";
  EXPECT_EQ(status->exit_code(), 130) << status->describe();
  // Whatever was measured is in the JSON, marked failed; the row's temp dir is gone.
  std::ifstream in(json_path);
  ASSERT_TRUE(in);
  auto rows = nlohmann::json::parse(in);
  for (const auto& row : rows) {
    EXPECT_GT(row["failures"].get<int>(), 0);
    EXPECT_TRUE(row["files_per_s"].is_null());
  }
  EXPECT_EQ(entries(), std::vector<std::string>{"out.json"});
}

// In-process, with a digest function that disagrees with the origin: fetchd's inline check and bench's own
// verification must both fail the row, and it must not show a rate.
TEST_F(BenchBinary, WrongFilesAreFailuresNeverAResult) {
  BenchOptions options;
  options.workload = {.files = 10, .size = 1000, .latency = 0ms, .fsync = false};
  options.strategies = {"event-loop"};
  options.concurrency = {4};
  options.self_exe = bin_;
  options.expected_sha256 = [](std::uint64_t, std::uint64_t) { return std::string(64, '0'); };
  std::ostringstream out;
  auto result = run_bench(options, out);
  EXPECT_FALSE(result.ok());
  EXPECT_TRUE(result.error.empty()) << result.error;
  ASSERT_EQ(result.rows.size(), 1U);
  const auto& row = result.rows[0];
  EXPECT_EQ(row.failures, 10U);
  EXPECT_EQ(row.child_failed, 10U);  // fetchd's inline check
  EXPECT_EQ(row.verify_failures, 10U);
  EXPECT_FALSE(row.files_per_s());
  EXPECT_EQ(row.child_status, "exit 1");
  EXPECT_NE(out.str().find("workload: 10 files"), std::string::npos) << out.str();
}

// Without checksums in the job list (too big for the loader), fetchd run succeeds; bench's own check must
// still catch files that are not what they should be.
TEST_F(BenchBinary, BenchCatchesWhatFetchdDidNotCheck) {
  BenchOptions options;
  options.workload = {.files = 10, .size = 1000, .latency = 0ms, .fsync = false};
  options.strategies = {"event-loop"};
  options.concurrency = {4};
  options.self_exe = bin_;
  options.expected_sha256 = [](std::uint64_t, std::uint64_t) { return std::string(64, '0'); };
  options.job_list_limits.max_config_bytes = 500;  // forces the URL-file job list
  std::ostringstream out;
  auto result = run_bench(options, out);
  EXPECT_FALSE(result.ok());
  ASSERT_EQ(result.rows.size(), 1U);
  const auto& row = result.rows[0];
  EXPECT_FALSE(row.inline_checks);
  EXPECT_EQ(row.child_status, "exit 0");
  EXPECT_EQ(row.child_failed, 0U);
  EXPECT_EQ(row.verify_failures, 10U);
  EXPECT_EQ(row.failures, 10U);
  EXPECT_NE(row.error.find("reported success, but 10 of 10 files are missing or wrong"), std::string::npos)
      << row.error;
  EXPECT_NE(out.str().find("note: 10 jobs with checksums exceed"), std::string::npos) << out.str();
}

TEST_F(BenchBinary, AnOriginThatCannotStartIsAClearError) {
  BenchOptions options;
  options.strategies = {"event-loop"};
  options.concurrency = {1};
  options.self_exe = "/bin/false";  // exits at once, printing nothing
  std::ostringstream out;
  auto result = run_bench(options, out);
  EXPECT_FALSE(result.ok());
  EXPECT_NE(result.error.find("origin did not announce its address"), std::string::npos) << result.error;
  EXPECT_TRUE(result.rows.empty());
}

}  // namespace
}  // namespace fetchd::bench
