// SPDX-License-Identifier: Apache-2.0
// End to end: the real `fetchd bench` (FETCHD_BIN) with its own origin and `fetchd run` children.

#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "fetchd/bench/bench.hpp"
#include "fetchd/bench/child_process.hpp"
#include "fetchd/bench/temp_dir.hpp"

namespace fetchd::bench {
namespace {

using namespace std::chrono_literals;

constexpr auto kBenchTimeout = 60s;

Profile custom(WorkloadSpec workload, std::vector<int> concurrency) {
  return {"custom", "test", workload, std::move(concurrency)};
}

nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << "no " << path;
  return in ? nlohmann::json::parse(in) : nlohmann::json();
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

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
                                  "--strategies", "event-loop", "--json", json_path.string()});
  ASSERT_TRUE(status.success()) << status.describe();

  auto rows = read_json(json_path);
  ASSERT_TRUE(rows.is_array());
  ASSERT_EQ(rows.size(), 1U);
  const auto& row = rows[0];
  for (const char* key :
       {"strategy", "concurrency", "files", "bytes", "wall_s", "files_per_s", "mib_per_s", "cpu_s",
        "peak_rss_mib", "failures", "profile", "cpu_percent", "tree_peak_rss_mib", "refused", "workers"}) {
    EXPECT_TRUE(row.contains(key)) << key;
  }
  EXPECT_EQ(row["profile"], "custom");
  EXPECT_EQ(row["strategy"], "event-loop");
  EXPECT_TRUE(row["refused"].is_null());
  EXPECT_TRUE(row["workers"].is_null());
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
  EXPECT_GT(row["cpu_percent"].get<double>(), 0.0);
  EXPECT_GE(row["process_wall_s"].get<double>(), row["wall_s"].get<double>());
  // The row's temp dir is gone; only our JSON file is left.
  EXPECT_EQ(entries(), std::vector<std::string>{"out.json"});
}

// The daemon's real path: `fetchd serve` started per row, the jobs submitted over its control socket.
TEST_F(BenchBinary, ServeRowSubmitsToTheDaemonAndVerifiesEveryFile) {
  const auto json_path = dir_.path() / "out.json";
  const auto csv_path = dir_.path() / "out.csv";
  auto status = run_bench_binary({"--via", "serve", "--files", "50", "--size", "4KiB", "--latency", "0ms",
                                  "--concurrency", "8", "--strategies", "event-loop", "--json",
                                  json_path.string(), "--csv", csv_path.string()});
  ASSERT_TRUE(status.success()) << status.describe();

  auto rows = read_json(json_path);
  ASSERT_TRUE(rows.is_array());
  ASSERT_EQ(rows.size(), 1U);
  const auto& row = rows[0];
  EXPECT_EQ(row["via"], "serve");
  EXPECT_EQ(row["strategy"], "event-loop");
  EXPECT_EQ(row["concurrency"], 8);
  EXPECT_EQ(row["files"], 50);
  EXPECT_EQ(row["bytes"], 50 * 4096);
  EXPECT_EQ(row["failures"], 0);
  EXPECT_EQ(row["verify_failures"], 0);
  EXPECT_EQ(row["child_failed"], 0);
  EXPECT_EQ(row["inline_checks"], true);
  EXPECT_EQ(row["child_status"], "exit 0");  // it stopped cleanly on bench's SIGTERM
  ASSERT_TRUE(row["submit_ack_s"].is_number()) << row;
  EXPECT_GT(row["submit_ack_s"].get<double>(), 0.0);
  ASSERT_TRUE(row["wall_s"].is_number()) << row;
  EXPECT_GT(row["wall_s"].get<double>(), 0.0);
  EXPECT_GT(row["files_per_s"].get<double>(), 0.0);
  // The daemon's own CPU and memory, from wait4() after it exited.
  EXPECT_GT(row["cpu_s"].get<double>(), 0.0);
  EXPECT_GT(row["maxrss_mib"].get<double>(), 0.0);
  EXPECT_GT(row["tree_samples"].get<int>(), 0);
  // It lived longer than the jobs took: start-up before the first submit, shutdown after the last job.
  EXPECT_GT(row["process_wall_s"].get<double>(), row["wall_s"].get<double>());
  EXPECT_FALSE(row.contains("error"));

  const auto csv = read_text(csv_path);
  EXPECT_EQ(csv.rfind("profile,strategy,via,", 0), 0U) << csv;
  EXPECT_NE(csv.find(",serve,"), std::string::npos) << csv;
  // The row's temp dir (config, store, socket, downloads) is gone.
  std::set<std::string> names;
  for (const auto& name : entries()) names.insert(name);
  EXPECT_EQ(names, (std::set<std::string>{"out.json", "out.csv"}));
}

TEST_F(BenchBinary, RefusesAbsurdInputsWithUsageStatus) {
  const std::vector<std::vector<std::string>> cases = {
      {"--files", "0"},
      {"--concurrency", "0"},
      {"--concurrency", "8,,9"},
      {"--strategies", "bogus"},
      {"--size", "12 parsecs"},
      {"--latency", "soon"},
      {"--files", "-3"},
      {"--json", "/nonexistent/out.json"},
      {"--profile", "disk"},
      {"--profile", "cpu", "--files", "10"},
      {"--workers", "0"},
      {"--csv", "/nonexistent/out.csv"},
      {"--plot", "/nonexistent/out.svg"},
      {"--via", "daemon"},
      {"--via", ""},
  };
  for (const auto& args : cases) {
    auto status = run_bench_binary(args);
    std::string given;
    for (const auto& a : args) given += a + " ";
    EXPECT_EQ(status.exit_code(), 2) << given << ": " << status.describe();
  }
  EXPECT_TRUE(entries().empty());
}

TEST_F(BenchBinary, SigintStopsTheRowAndCleansUp) {
  const auto json_path = dir_.path() / "out.json";
  // A latency no row would sit out within the test's time limit: only the interrupt can end it.
  std::vector<std::string> args = {bin_,           "bench",      "--files",       "50",
                                   "--latency",    "1h",         "--concurrency", "8",
                                   "--strategies", "event-loop", "--json",        json_path.string()};
  auto bench = ChildProcess::spawn(args, ChildStdout::kPipe);
  // Lines up to the table header: the row starts right after.
  for (int lines = 0;; ++lines) {
    ASSERT_LT(lines, 20) << "no table header";
    auto line = read_first_line(bench.stdout_fd(), kBenchTimeout);
    ASSERT_TRUE(line.ok()) << line.text;
    if (line.text.rfind("strategy ", 0) == 0) break;
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
  options.profiles = {custom({.files = 10, .size = 1000, .latency = 0ms, .fsync = false}, {4})};
  options.strategies = {"event-loop"};
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

// The daemon's failed jobs are the row's failures: found by `stats`, listed for their finish times.
TEST_F(BenchBinary, ServeRowCountsTheDaemonsFailedJobs) {
  BenchOptions options;
  options.profiles = {custom({.files = 10, .size = 1000, .latency = 0ms, .fsync = false}, {4})};
  options.strategies = {"event-loop"};
  options.self_exe = bin_;
  options.via = Via::kServe;
  options.expected_sha256 = [](std::uint64_t, std::uint64_t) { return std::string(64, '0'); };
  std::ostringstream out;
  auto result = run_bench(options, out);
  EXPECT_FALSE(result.ok());
  EXPECT_TRUE(result.error.empty()) << result.error;
  ASSERT_EQ(result.rows.size(), 1U);
  const auto& row = result.rows[0];
  EXPECT_EQ(row.via, "serve");
  EXPECT_EQ(row.child_failed, 10U);  // the daemon's inline check
  EXPECT_EQ(row.verify_failures, 10U);
  EXPECT_EQ(row.failures, 10U);
  EXPECT_FALSE(row.files_per_s());
  ASSERT_TRUE(row.wall_s);  // the failed jobs' finish times still end the row
  EXPECT_GT(*row.wall_s, 0.0);
  EXPECT_EQ(row.child_status, "exit 0");
  EXPECT_EQ(row.error, "fetchd serve: 10 of 10 jobs failed");
  EXPECT_NE(out.str().find("(via serve)"), std::string::npos) << out.str();
}

// Without checksums in the job list (too big for the loader), fetchd run succeeds; bench's own check must
// still catch files that are not what they should be.
TEST_F(BenchBinary, BenchCatchesWhatFetchdDidNotCheck) {
  BenchOptions options;
  options.profiles = {custom({.files = 10, .size = 1000, .latency = 0ms, .fsync = false}, {4})};
  options.strategies = {"event-loop"};
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
  options.profiles = {custom({.files = 1, .size = 1, .latency = 0ms}, {1})};
  options.self_exe = "/bin/false";  // exits at once, printing nothing
  std::ostringstream out;
  auto result = run_bench(options, out);
  EXPECT_FALSE(result.ok());
  EXPECT_NE(result.error.find("origin did not announce its address"), std::string::npos) << result.error;
  EXPECT_TRUE(result.rows.empty());
}

// The sweep of issue 3 in miniature: every strategy, two concurrencies, all three output files. A strategy
// this binary lacks must show up as a refused row, never as a failure.
TEST_F(BenchBinary, TinySweepOfEveryStrategyWritesJsonCsvAndPlot) {
  const auto json_path = dir_.path() / "out.json";
  const auto csv_path = dir_.path() / "out.csv";
  const auto svg_path = dir_.path() / "out.svg";
  auto status = run_bench_binary({"--files", "40", "--size", "1KiB", "--latency", "0ms", "--concurrency",
                                  "4,8", "--strategies", "all", "--json", json_path.string(), "--csv",
                                  csv_path.string(), "--plot", svg_path.string()});
  ASSERT_TRUE(status.success()) << status.describe();

  auto rows = read_json(json_path);
  ASSERT_TRUE(rows.is_array());
  const std::vector<std::string> strategies = {"event-loop", "curl-multi", "thread-pool", "process-pool",
                                               "process-pool-blocking"};
  ASSERT_EQ(rows.size(), strategies.size() * 2);
  std::size_t measured = 0;
  std::set<std::string> measured_strategies;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& row = rows[i];
    const auto& strategy = strategies[i / 2];
    SCOPED_TRACE(strategy + " x" + row["concurrency"].dump());
    EXPECT_EQ(row["strategy"], strategy);
    EXPECT_EQ(row["profile"], "custom");
    EXPECT_EQ(row["concurrency"], i % 2 == 0 ? 4 : 8);
    EXPECT_EQ(row["files"], 40);
    EXPECT_EQ(row["failures"], 0);
    for (const char* key :
         {"strategy", "concurrency", "files", "bytes", "wall_s", "files_per_s", "mib_per_s", "cpu_s",
          "peak_rss_mib", "failures", "profile", "cpu_percent", "tree_peak_rss_mib", "refused", "workers"}) {
      EXPECT_TRUE(row.contains(key)) << key;
    }
    if (!row["refused"].is_null()) {
      // Only a strategy the binary does not have may be refused in so small a sweep.
      EXPECT_EQ(row["refused"].get<std::string>().rfind("unavailable: ", 0), 0U) << row["refused"];
      EXPECT_TRUE(row["files_per_s"].is_null());
      continue;
    }
    ++measured;
    measured_strategies.insert(strategy);
    EXPECT_EQ(row["bytes"], 40 * 1024);
    EXPECT_GT(row["files_per_s"].get<double>(), 0.0);
    EXPECT_GT(row["cpu_s"].get<double>(), 0.0);
    EXPECT_GT(row["peak_rss_mib"].get<double>(), 0.0);
    EXPECT_GT(row["cpu_percent"].get<double>(), 0.0);
    if (strategy == "process-pool") {
      EXPECT_LE(row["workers"].get<int>(),
                row["concurrency"].get<int>());  // one per CPU, at most one per transfer
      EXPECT_GE(row["workers"].get<int>(), 1);
    } else if (strategy == "process-pool-blocking") {
      EXPECT_EQ(row["workers"], row["concurrency"]);
    } else {
      EXPECT_TRUE(row["workers"].is_null());
    }
    if (row["workers"].is_number() && row["tree_samples"].get<int>() > 0) {
      // A pool's memory is its whole tree's (ProcessPoolMemoryIsTheSumOverItsTree checks the sum itself: rows
      // this short may end before a sample sees the workers).
      EXPECT_DOUBLE_EQ(row["peak_rss_mib"].get<double>(),
                       std::max(row["tree_peak_rss_mib"].get<double>(), row["maxrss_mib"].get<double>()));
    }
  }
  EXPECT_GE(measured, 2U);  // event-loop is always there

  // CSV: a header and one line per row, in the same order.
  auto csv = read_text(csv_path);
  EXPECT_EQ(csv.rfind("profile,strategy,via,concurrency,workers,files,bytes,wall_s,submit_ack_s,files_per_s,"
                      "mib_per_s,cpu_s,cpu_percent,peak_rss_mib,tree_peak_rss_mib,failures,refused\r\n",
                      0),
            0U)
      << csv;
  EXPECT_EQ(static_cast<std::size_t>(std::ranges::count(csv, '\n')), rows.size() + 1);
  EXPECT_NE(csv.find("\r\ncustom,process-pool-blocking,run,8,"), std::string::npos) << csv;

  // SVG: one polyline per measured strategy in each of the two panels.
  auto svg = read_text(svg_path);
  EXPECT_EQ(svg.rfind("<?xml", 0), 0U);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  std::size_t polylines = 0;
  for (auto at = svg.find("<polyline"); at != std::string::npos; at = svg.find("<polyline", at + 1))
    ++polylines;
  EXPECT_EQ(polylines, 2 * measured_strategies.size());
  EXPECT_EQ(entries().size(), 3U);  // only our three files: every row's temp dir is gone
}

// A row refused by the guard rails is reported, not run, and is no failure.
TEST_F(BenchBinary, RefusedRowsAreShownNotRun) {
  BenchOptions options;
  options.profiles = {custom({.files = 4, .size = 100, .latency = 0ms}, {2, 3})};
  options.strategies = {"event-loop", "thread-pool"};
  options.self_exe = bin_;
  options.guard_rails.max_threads = 2;  // thread-pool x3 is over the cap
  std::ostringstream out;
  auto result = run_bench(options, out);
  EXPECT_TRUE(result.ok()) << result.error << "\n" << out.str();
  ASSERT_EQ(result.rows.size(), 4U);
  EXPECT_TRUE(result.rows[0].measured());
  EXPECT_TRUE(result.rows[1].measured());
  const auto& refused = result.rows[3];
  ASSERT_TRUE(refused.refused);
  if (refused.refused->rfind("unavailable", 0) != 0) {
    EXPECT_TRUE(result.rows[2].measured());
    EXPECT_EQ(*refused.refused, "3 threads, over bench's cap of 2 threads");
  }
  EXPECT_NE(out.str().find("refused: "), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("== profile custom"), std::string::npos) << out.str();
}

// A binary without thread-pool, as before its issue landed: a wrapper that answers `run --strategy
// thread-pool` as such a build does, and runs the real binary otherwise.
TEST_F(BenchBinary, AStrategyTheBinaryLacksIsRefusedAsUnavailable) {
  const auto wrapper = dir_.path() / "fetchd-without-thread-pool";
  {
    std::ofstream out(wrapper);
    out << "#!/bin/sh\n"
           "if [ \"$1\" = run ]; then\n"
           "  for a; do\n"
           "    if [ \"$a\" = thread-pool ]; then\n"
           "      echo \"2026-01-01T00:00:00.000 critical run: strategy 'thread-pool' is not available in "
           "this build "
           "yet\" >&2\n"
           "      exit 70\n"
           "    fi\n"
           "  done\n"
           "fi\n"
           "exec '"
        << bin_ << "' \"$@\"\n";
  }
  std::filesystem::permissions(wrapper, std::filesystem::perms::owner_all);
  BenchOptions options;
  options.profiles = {custom({.files = 4, .size = 100, .latency = 0ms}, {2})};
  options.strategies = {"thread-pool", "event-loop"};
  options.self_exe = wrapper.string();
  std::ostringstream out;
  auto result = run_bench(options, out);
  EXPECT_TRUE(result.ok()) << result.error << "\n" << out.str();
  ASSERT_EQ(result.rows.size(), 2U);
  ASSERT_TRUE(result.rows[0].refused);
  EXPECT_EQ(
      *result.rows[0].refused,
      "unavailable: `fetchd run` said: strategy 'thread-pool' is not available in this build yet (exit 70)");
  EXPECT_TRUE(result.rows[1].measured());
  EXPECT_EQ(result.rows[1].failures, 0U);
  EXPECT_NE(out.str().find("note: thread-pool cannot run in this binary"), std::string::npos) << out.str();
  std::filesystem::remove(wrapper);
}

// Rows long enough to be sampled many times (the origin's latency keeps every transfer, and so every worker,
// busy for a while): a pool's memory is the sum over its process tree, and wait4() counts its workers' CPU.
TEST_F(BenchBinary, ProcessPoolMemoryIsTheSumOverItsTree) {
  BenchOptions options;
  options.profiles = {custom({.files = 8, .size = 1000, .latency = 150ms}, {4})};
  options.strategies = {"process-pool", "process-pool-blocking"};
  options.self_exe = bin_;
  std::ostringstream out;
  auto result = run_bench(options, out);
  EXPECT_TRUE(result.ok()) << result.error << "\n" << out.str();
  ASSERT_EQ(result.rows.size(), 2U);
  for (const auto& row : result.rows) {
    SCOPED_TRACE(row.strategy);
    if (row.refused) {
      EXPECT_EQ(row.refused->rfind("unavailable", 0), 0U) << *row.refused;
      continue;
    }
    ASSERT_TRUE(row.workers);
    EXPECT_EQ(*row.workers, row.strategy == "process-pool-blocking" ? 4 : std::min(4, *row.workers));
    EXPECT_GE(row.tree_samples, 8U);
    EXPECT_GE(row.tree_peak_processes, 1U + static_cast<std::size_t>(*row.workers));
    ASSERT_TRUE(row.tree_peak_rss_mib);
    // The sum over the `fetchd run` process and its workers exceeds the largest of them, which is all that
    // ru_maxrss can tell.
    EXPECT_GT(*row.tree_peak_rss_mib, row.maxrss_mib * 1.5);
    EXPECT_EQ(row.peak_rss_mib(), row.tree_peak_rss_mib);
    EXPECT_LE(row.tree_cpu_s, row.cpu_s() + 0.1);
  }
}

}  // namespace
}  // namespace fetchd::bench
