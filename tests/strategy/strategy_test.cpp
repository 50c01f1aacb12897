// SPDX-License-Identifier: Apache-2.0
// The strategy conformance suite: every case runs, unchanged, against every strategy (TEST_P), through the
// scheduler and the real embedded origin on 127.0.0.1, and asserts the same outcome for each.

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "fetchd/config/config.hpp"
#include "fetchd/curl/curl.hpp"
#include "fetchd/origin/body.hpp"
#include "fetchd/origin/origin.hpp"
#include "fetchd/scheduler/run.hpp"
#include "fetchd/scheduler/scheduler.hpp"
#include "fetchd/uv/loop.hpp"

namespace fs = std::filesystem;
using fetchd::config::StrategyKind;
using fetchd::core::ErrorCategory;

namespace {

class CurlEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { global_ = std::make_unique<fetchd::curl::Global>(); }
  void TearDown() override { global_.reset(); }

 private:
  std::unique_ptr<fetchd::curl::Global> global_;
};
const auto* const kCurlEnv = ::testing::AddGlobalTestEnvironment(new CurlEnvironment);

std::string file_sha256(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string data = ss.str();
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A port on 127.0.0.1 that nothing listens on: bound, then closed again.
int closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::size_t count_files(const fs::path& dir) {
  std::size_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) n += e.is_regular_file() ? 1 : 0;
  return n;
}

class StrategyTest : public ::testing::TestWithParam<StrategyKind> {
 protected:
  void SetUp() override {
    static std::mt19937_64 rng{std::random_device{}()};
    dir_ = fs::temp_directory_path() / ("fetchd-strategy-" + std::to_string(rng()));
    fs::create_directories(dir_ / "out");
    config_.source = dir_ / "test.yaml";
    config_.strategy.kind = GetParam();
    config_.strategy.concurrency = 16;
    config_.output.dir = dir_ / "out";
    config_.output.fsync = false;
    config_.retries = 0;
    config_.defaults.timeout = std::chrono::seconds(20);
    config_.defaults.user_agent = "fetchd-test";
  }
  void TearDown() override { fs::remove_all(dir_); }

  void add_job(const std::string& path, const std::string& dest, std::optional<std::string> sha = {}) {
    fetchd::config::Job job;
    job.url = origin_.url(path);
    job.dest = dest;
    job.sha256 = std::move(sha);
    job.origin = "test";
    config_.jobs.push_back(job);
  }

  fetchd::scheduler::RunSummary run() {
    fetchd::scheduler::RunOptions options;
    options.retry.initial = std::chrono::milliseconds(1);  // keep retry tests fast; jitter stays real
    options.retry.max = std::chrono::milliseconds(5);
    return fetchd::scheduler::run_job_list(config_, options);
  }

  fs::path out() const { return dir_ / "out"; }

  fetchd::origin::OriginThread origin_{fetchd::origin::OriginOptions{}};
  fs::path dir_;
  fetchd::config::Config config_;
};

TEST_P(StrategyTest, SmallFileIsDownloadedAndVerified) {
  auto sha = fetchd::origin::body_sha256_hex(5000, 7);
  add_job("/bytes/5000/a.bin?seed=7", "sub/a.bin", sha);
  auto s = run();
  EXPECT_EQ(s.done, 1u);
  EXPECT_EQ(s.failed, 0u);
  ASSERT_TRUE(fs::exists(out() / "sub/a.bin"));
  EXPECT_EQ(fs::file_size(out() / "sub/a.bin"), 5000u);
  EXPECT_EQ(file_sha256(out() / "sub/a.bin"), sha);
  EXPECT_FALSE(fs::exists(out() / "sub/a.bin.part"));
}

TEST_P(StrategyTest, ZeroLengthBodyMakesAnEmptyFile) {
  add_job("/bytes/0/empty.bin", "empty.bin", fetchd::origin::body_sha256_hex(0, 0));
  auto s = run();
  EXPECT_EQ(s.done, 1u);
  ASSERT_TRUE(fs::exists(out() / "empty.bin"));
  EXPECT_EQ(fs::file_size(out() / "empty.bin"), 0u);
}

TEST_P(StrategyTest, ThousandFilesAllVerified) {
  config_.strategy.concurrency = 64;
  for (int i = 0; i < 1000; ++i) {
    std::size_t size = 100 + static_cast<std::size_t>(i) * 7;
    add_job(fmt::format("/bytes/{}/f{}.bin?seed={}", size, i, i), fmt::format("f{}.bin", i),
            fetchd::origin::body_sha256_hex(size, static_cast<std::uint64_t>(i)));
  }
  auto s = run();
  EXPECT_EQ(s.done, 1000u);
  EXPECT_EQ(s.failed, 0u);
  EXPECT_EQ(count_files(out()), 1000u);
  for (int i = 0; i < 1000; i += 97) {
    std::size_t size = 100 + static_cast<std::size_t>(i) * 7;
    EXPECT_EQ(file_sha256(out() / fmt::format("f{}.bin", i)),
              fetchd::origin::body_sha256_hex(size, static_cast<std::uint64_t>(i)));
  }
}

TEST_P(StrategyTest, NotFoundFailsWithoutFile) {
  add_job("/status/404", "missing.bin");
  auto s = run();
  EXPECT_EQ(s.failed, 1u);
  ASSERT_EQ(s.failures.size(), 1u);
  EXPECT_EQ(s.failures[0].result.category, ErrorCategory::kHttpStatus);
  EXPECT_EQ(s.failures[0].result.http_status, 404);
  EXPECT_EQ(s.failures[0].attempts, 1);  // 404 is never retried
  EXPECT_EQ(count_files(out()), 0u);     // neither the error body nor a .part
}

TEST_P(StrategyTest, ServerErrorIsRetriedThenFails) {
  config_.retries = 2;
  add_job("/status/503", "busy.bin");
  auto s = run();
  ASSERT_EQ(s.failures.size(), 1u);
  EXPECT_EQ(s.failures[0].result.category, ErrorCategory::kHttpStatus);
  EXPECT_EQ(s.failures[0].result.http_status, 503);
  EXPECT_EQ(s.failures[0].attempts, 3);
  EXPECT_EQ(count_files(out()), 0u);
}

TEST_P(StrategyTest, ConnectionRefusedFailsWithClearReason) {
  fetchd::config::Job job;
  job.url = fmt::format("http://127.0.0.1:{}/x.bin", closed_port());
  job.dest = "x.bin";
  config_.jobs.push_back(job);
  auto s = run();
  ASSERT_EQ(s.failures.size(), 1u);
  EXPECT_EQ(s.failures[0].result.category, ErrorCategory::kConnect);
  EXPECT_NE(s.failures[0].result.message.find("onnect"), std::string::npos) << s.failures[0].result.message;
  EXPECT_EQ(count_files(out()), 0u);
}

TEST_P(StrategyTest, ChecksumMismatchFailsWithoutFile) {
  add_job("/bytes/3000/c.bin?seed=1", "c.bin", std::string(64, '0'));
  auto s = run();
  ASSERT_EQ(s.failures.size(), 1u);
  EXPECT_EQ(s.failures[0].result.category, ErrorCategory::kChecksum);
  EXPECT_EQ(s.failures[0].attempts, 1);  // a complete body with the wrong hash is not retried
  EXPECT_EQ(count_files(out()), 0u);
}

TEST_P(StrategyTest, ConcurrencyCapIsNeverExceeded) {
  config_.strategy.concurrency = 8;
  for (int i = 0; i < 64; ++i) add_job(fmt::format("/bytes/100/g{}.bin?latency=20ms", i), fmt::format("g{}", i));
  auto s = run();
  EXPECT_EQ(s.done, 64u);
  auto st = origin_.stats();
  EXPECT_LE(st.max_requests_in_flight, 8u);
  EXPECT_LE(st.max_connections, 8u);
  EXPECT_GE(st.max_requests_in_flight, 2u);  // and transfers did overlap
}

TEST_P(StrategyTest, OnExistsSkipKeepsExistingBytes) {
  config_.output.on_exists = fetchd::core::OnExists::kSkip;
  { std::ofstream(out() / "keep.bin") << "original"; }
  add_job("/bytes/100/keep.bin", "keep.bin");
  auto s = run();
  EXPECT_EQ(s.done, 1u);
  EXPECT_EQ(s.skipped, 1u);
  EXPECT_EQ(read_file(out() / "keep.bin"), "original");
  EXPECT_EQ(origin_.stats().requests_total, 0u);  // nothing was downloaded
}

TEST_P(StrategyTest, OnExistsFailKeepsExistingBytes) {
  config_.output.on_exists = fetchd::core::OnExists::kFail;
  { std::ofstream(out() / "keep.bin") << "original"; }
  add_job("/bytes/100/keep.bin", "keep.bin");
  auto s = run();
  ASSERT_EQ(s.failures.size(), 1u);
  EXPECT_EQ(s.failures[0].result.category, ErrorCategory::kDestExists);
  EXPECT_EQ(read_file(out() / "keep.bin"), "original");
}

TEST_P(StrategyTest, OnExistsOverwriteReplaces) {
  config_.output.on_exists = fetchd::core::OnExists::kOverwrite;
  { std::ofstream(out() / "keep.bin") << "original"; }
  auto sha = fetchd::origin::body_sha256_hex(100, 3);
  add_job("/bytes/100/keep.bin?seed=3", "keep.bin", sha);
  auto s = run();
  EXPECT_EQ(s.done, 1u);
  EXPECT_EQ(s.skipped, 0u);
  EXPECT_EQ(file_sha256(out() / "keep.bin"), sha);
}

TEST_P(StrategyTest, CancelMidTransferLeavesNoFile) {
  fetchd::uv::Loop loop;
  std::optional<fetchd::core::TransferResult> result;
  fetchd::scheduler::Scheduler::Options options;
  options.retry.retries = 0;
  options.on_finished = [&](const fetchd::scheduler::JobRecord& job) { result = job.last; };
  fetchd::scheduler::Scheduler sched(
      loop.get(),
      [&](fetchd::strategy::Strategy::ResultCallback cb) {
        return fetchd::strategy::make_strategy(config_, loop.get(), std::move(cb));
      },
      options);
  fetchd::config::Job job;
  job.url = origin_.url("/bytes/1000/slow.bin?latency=30s");
  job.dest = "slow.bin";
  auto id = sched.add(fetchd::scheduler::make_request(config_, job));
  // Cancel once the origin has the request in flight: checked from a loop timer (an event, not a sleep).
  fetchd::uv::Timer poll(loop.get());
  fetchd::uv::Timer failsafe(loop.get());
  poll.start(1, 1, [&] {
    if (origin_.stats().requests_in_flight >= 1) {
      poll.stop();
      sched.cancel(id);
    }
  });
  failsafe.start(15000, 0, [&] { sched.cancel_all(); });
  bool drained = false;
  fetchd::uv::Timer idle_check(loop.get());
  idle_check.start(1, 1, [&] {
    if (result) {
      idle_check.close();
      poll.close();
      failsafe.close();
      sched.drain([&] { drained = true; });
    }
  });
  loop.run();
  EXPECT_TRUE(drained);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->category, ErrorCategory::kCancelled);
  EXPECT_EQ(count_files(out()), 0u);
  EXPECT_EQ(loop.close(), 0);  // every handle was closed: the loop shuts down cleanly
}

INSTANTIATE_TEST_SUITE_P(AllStrategies, StrategyTest, ::testing::Values(StrategyKind::kEventLoop),
                         [](const auto& info) {
                           std::string name(fetchd::config::to_string(info.param));
                           std::erase(name, '-');
                           return name;
                         });

}  // namespace
