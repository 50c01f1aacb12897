// SPDX-License-Identifier: Apache-2.0
#include "fetchd/bench/workload.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "fetchd/bench/temp_dir.hpp"
#include "fetchd/config/config.hpp"
#include "fetchd/origin/body.hpp"

namespace fetchd::bench {
namespace {

// A stand-in digest that shows which (size, seed) it was asked for, padded to 64 hex digits.
std::string fake_sha256(std::uint64_t size, std::uint64_t seed) {
  return fmt::format("{:032x}{:032x}", size, seed);
}

constexpr JobListLimits kRealLimits{config::kMaxConfigBytes, config::kMaxUrlsFileBytes};

void write(const std::filesystem::path& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

TEST(FileName, IsPaddedToSortInJobOrder) {
  EXPECT_EQ(file_name(0, 10), "f00001.bin");
  EXPECT_EQ(file_name(9, 10), "f00010.bin");
  EXPECT_EQ(file_name(0, 1'000'000), "f0000001.bin");
  EXPECT_EQ(file_name(999'999, 1'000'000), "f1000000.bin");
}

TEST(MakeWorkload, OneDistinctSeedAndNamePerFile) {
  WorkloadSpec spec{.files = 1000, .size = 4096, .latency = std::chrono::milliseconds(0)};
  auto files = make_workload(spec, "http://127.0.0.1:8080/", fake_sha256);
  ASSERT_EQ(files.size(), 1000U);
  std::set<std::uint64_t> seeds;
  std::set<std::string> names;
  for (const auto& f : files) {
    seeds.insert(f.seed);
    names.insert(f.name);
    EXPECT_EQ(f.size, 4096U);
    EXPECT_EQ(f.sha256, fake_sha256(4096, f.seed));
  }
  EXPECT_EQ(seeds.size(), 1000U);
  EXPECT_EQ(names.size(), 1000U);
  EXPECT_EQ(files[0].url, "http://127.0.0.1:8080/bytes/4096/f00001.bin?seed=1");
  EXPECT_EQ(files[999].url, "http://127.0.0.1:8080/bytes/4096/f01000.bin?seed=1000");
}

TEST(MakeWorkload, EachUrlAsksForTheLatency) {
  WorkloadSpec spec{.files = 2, .size = 10, .latency = std::chrono::milliseconds(25)};
  auto files = make_workload(spec, "http://127.0.0.1:8080", fake_sha256);
  EXPECT_EQ(files[0].url, "http://127.0.0.1:8080/bytes/10/f00001.bin?seed=1&latency=25ms");
  EXPECT_EQ(files[1].url, "http://127.0.0.1:8080/bytes/10/f00002.bin?seed=2&latency=25ms");
}

TEST(MakeWorkload, UsesTheOriginsDigestByDefault) {
  WorkloadSpec spec{.files = 3, .size = 1000};
  auto files = make_workload(spec, "http://127.0.0.1:1", origin::body_sha256_hex);
  for (const auto& f : files) EXPECT_EQ(f.sha256, origin::body_sha256_hex(1000, f.seed));
  EXPECT_NE(files[0].sha256, files[1].sha256);
}

TEST(JobList, InlineChecksLoadWithTheRealConfigLoader) {
  auto dir = TempDir::create("fetchd-bench-test-");
  // A path that needs quoting in YAML.
  const auto out_dir = dir.path() / "out: \"x\" #1";
  WorkloadSpec spec{.files = 20, .size = 1024};
  auto files = make_workload(spec, "http://127.0.0.1:8080", fake_sha256);
  auto list =
      make_job_list({.strategy = "event-loop", .concurrency = 8, .output_dir = out_dir}, files, kRealLimits);
  ASSERT_TRUE(list.inline_checks);
  EXPECT_TRUE(list.urls_files.empty());

  auto cfg = config::load_config_text(list.yaml, "jobs.yaml", dir.path());
  EXPECT_EQ(cfg.strategy.kind, config::StrategyKind::kEventLoop);
  EXPECT_EQ(cfg.strategy.concurrency, 8);
  EXPECT_EQ(cfg.output.dir, out_dir);
  EXPECT_EQ(cfg.output.on_exists, core::OnExists::kOverwrite);
  EXPECT_FALSE(cfg.output.fsync);
  EXPECT_EQ(cfg.defaults.retry.retries, 0);
  EXPECT_EQ(cfg.log.level, "warn");
  ASSERT_EQ(cfg.jobs.size(), files.size());
  for (std::size_t i = 0; i < files.size(); ++i) {
    EXPECT_EQ(cfg.jobs[i].url, files[i].url);
    EXPECT_EQ(cfg.jobs[i].dest, files[i].name);
    EXPECT_EQ(cfg.jobs[i].sha256, files[i].sha256);
    EXPECT_EQ(cfg.jobs[i].size, files[i].size);
  }
}

TEST(JobList, FsyncIsPassedOn) {
  auto dir = TempDir::create("fetchd-bench-test-");
  auto files = make_workload({.files = 1, .size = 1}, "http://127.0.0.1:8080", fake_sha256);
  auto list = make_job_list({.strategy = "event-loop", .output_dir = dir.path() / "out", .fsync = true},
                            files, kRealLimits);
  EXPECT_TRUE(config::load_config_text(list.yaml, "jobs.yaml", dir.path()).output.fsync);
}

TEST(JobList, TooBigForTheLoaderFallsBackToUrlFilesUnderTheLimit) {
  auto dir = TempDir::create("fetchd-bench-test-");
  auto files = make_workload({.files = 100, .size = 4096}, "http://127.0.0.1:8080", fake_sha256);
  const JobListLimits small{.max_config_bytes = 2000, .max_urls_file_bytes = 1000};
  auto list = make_job_list({.strategy = "event-loop", .concurrency = 8, .output_dir = dir.path() / "out"},
                            files, small);
  ASSERT_FALSE(list.inline_checks);
  ASSERT_GT(list.urls_files.size(), 1U);
  EXPECT_LE(list.yaml.size(), small.max_config_bytes);
  write(dir.path() / "jobs.yaml", list.yaml);
  for (const auto& urls : list.urls_files) {
    EXPECT_LE(urls.text.size(), small.max_urls_file_bytes) << urls.name;
    write(dir.path() / urls.name, urls.text);
  }

  auto cfg = config::load_config(dir.path() / "jobs.yaml");
  ASSERT_EQ(cfg.jobs.size(), files.size());
  for (std::size_t i = 0; i < files.size(); ++i) {
    EXPECT_EQ(cfg.jobs[i].url, files[i].url);
    EXPECT_EQ(cfg.jobs[i].dest, files[i].name);  // the URL's last segment
  }
  EXPECT_EQ(cfg.defaults.retry.retries, 0);
  EXPECT_EQ(cfg.output.on_exists, core::OnExists::kOverwrite);
}

TEST(JobList, TheDefaultWorkloadNeedsUrlFilesWithTodaysLoaderLimit) {
  // Documents why bench's default row runs without inline checks (see JobList::inline_checks).
  auto files = make_workload({}, "http://127.0.0.1:65535", fake_sha256);
  auto list = make_job_list(
      {.strategy = "event-loop", .concurrency = 1000, .output_dir = "/tmp/fetchd-bench-XXXXXX/out"}, files,
      kRealLimits);
  EXPECT_FALSE(list.inline_checks);
  EXPECT_EQ(list.urls_files.size(), 1U);
}

TEST(JobList, ProcessPoolSettingsLoadWithTheRealConfigLoader) {
  auto dir = TempDir::create("fetchd-bench-test-");
  auto files = make_workload({.files = 4, .size = 1}, "http://127.0.0.1:8080", fake_sha256);
  auto list = make_job_list({.strategy = "process-pool",
                             .concurrency = 8,
                             .output_dir = dir.path() / "out",
                             .workers = 8,
                             .inner = "blocking"},
                            files, kRealLimits);
  EXPECT_NE(
      list.yaml.find("strategy: { kind: \"process-pool\", concurrency: 8, workers: 8, inner: \"blocking\" }"),
      std::string::npos)
      << list.yaml;
  auto cfg = config::load_config_text(list.yaml, "jobs.yaml", dir.path());
  EXPECT_EQ(cfg.strategy.kind, config::StrategyKind::kProcessPool);
  EXPECT_EQ(cfg.strategy.workers, 8);
  EXPECT_EQ(cfg.strategy.inner, config::InnerKind::kBlocking);
}

TEST(JobList, WithoutFilesIsAnEmptyJobListTheLoaderAccepts) {
  auto dir = TempDir::create("fetchd-bench-test-");
  auto list = make_job_list({.strategy = "thread-pool", .concurrency = 2, .output_dir = dir.path() / "out"},
                            {}, kRealLimits);
  EXPECT_TRUE(list.inline_checks);
  auto cfg = config::load_config_text(list.yaml, "jobs.yaml", dir.path());
  EXPECT_EQ(cfg.strategy.kind, config::StrategyKind::kThreadPool);
  EXPECT_TRUE(cfg.jobs.empty());
}

TEST(DaemonConfig, LoadsWithTheRealConfigLoaderWithTheJobListsSettings) {
  auto dir = TempDir::create("fetchd-bench-test-");
  const auto out_dir = dir.path() / "out: \"x\" #1";
  const JobListSettings settings{.strategy = "process-pool",
                                 .concurrency = 8,
                                 .output_dir = out_dir,
                                 .fsync = true,
                                 .workers = 8,
                                 .inner = "blocking"};
  auto yaml = make_daemon_config(settings, dir.path() / "ctl.sock", dir.path() / "state");
  auto cfg = config::load_config_text(yaml, "fetchd.yaml", dir.path());
  EXPECT_EQ(cfg.strategy.kind, config::StrategyKind::kProcessPool);
  EXPECT_EQ(cfg.strategy.concurrency, 8);
  EXPECT_EQ(cfg.strategy.workers, 8);
  EXPECT_EQ(cfg.strategy.inner, config::InnerKind::kBlocking);
  EXPECT_EQ(cfg.output.dir, out_dir);
  EXPECT_EQ(cfg.output.on_exists, core::OnExists::kOverwrite);
  EXPECT_TRUE(cfg.output.fsync);
  EXPECT_EQ(cfg.defaults.retry.retries, 0);
  EXPECT_EQ(cfg.log.level, "warn");
  EXPECT_EQ(cfg.control.socket, dir.path() / "ctl.sock");
  EXPECT_EQ(cfg.state.dir, dir.path() / "state");
  EXPECT_EQ(cfg.state.synchronous, config::StateConfig{}.synchronous);  // the default durability
  EXPECT_EQ(cfg.state.history_max_jobs, 0U);
  EXPECT_EQ(cfg.shutdown.grace, std::chrono::seconds(1));
  EXPECT_TRUE(cfg.jobs.empty());
  EXPECT_EQ(yaml.find("synchronous"), std::string::npos) << yaml;
}

TEST(DescribeWorkload, NamesEverythingThatShapesTheNumbers) {
  WorkloadSpec spec;
  auto line = describe_workload(spec);
  EXPECT_NE(line.find("10000 files x 4KiB"), std::string::npos) << line;
  EXPECT_NE(line.find("39.1 MiB"), std::string::npos) << line;
  EXPECT_NE(line.find("latency 25ms"), std::string::npos) << line;
  EXPECT_NE(line.find("fsync off"), std::string::npos) << line;
  EXPECT_NE(line.find("not the disk"), std::string::npos) << line;
  spec.fsync = true;
  EXPECT_NE(describe_workload(spec).find("fsync on"), std::string::npos);
}

}  // namespace
}  // namespace fetchd::bench
