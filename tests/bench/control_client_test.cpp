// SPDX-License-Identifier: Apache-2.0
#include "fetchd/bench/control_client.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "fetchd/bench/temp_dir.hpp"
#include "fetchd/control/protocol.hpp"

namespace fetchd::bench {
namespace {

using namespace std::chrono_literals;

std::vector<WorkloadFile> some_files(std::size_t n) {
  std::vector<WorkloadFile> files;
  for (std::size_t i = 0; i < n; ++i) {
    files.push_back({file_name(i, n), "http://127.0.0.1:8080/bytes/4096/" + file_name(i, n) + "?seed=1",
                     i + 1, 4096, std::string(64, 'a')});
  }
  return files;
}

std::vector<nlohmann::json> jobs_of(const std::vector<std::string>& lines) {
  std::vector<nlohmann::json> jobs;
  for (const auto& line : lines) {
    EXPECT_EQ(line.back(), '\n');
    EXPECT_EQ(line.find('\n'), line.size() - 1);
    auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["op"], "submit");
    EXPECT_EQ(j.size(), 2U);
    for (auto& job : j["jobs"]) jobs.push_back(job);
  }
  return jobs;
}

TEST(EncodeSubmitLines, EveryFileOnceInOrderWithItsChecks) {
  const auto files = some_files(25);
  const auto lines = encode_submit_lines(files, true, control::kMaxLineBytes, control::kMaxJobsPerSubmit);
  ASSERT_EQ(lines.size(), 1U);
  const auto jobs = jobs_of(lines);
  ASSERT_EQ(jobs.size(), files.size());
  for (std::size_t i = 0; i < files.size(); ++i) {
    EXPECT_EQ(jobs[i]["url"], files[i].url);
    EXPECT_EQ(jobs[i]["dest"], files[i].name);
    EXPECT_EQ(jobs[i]["sha256"], files[i].sha256);
    EXPECT_EQ(jobs[i]["size"], files[i].size);
  }
}

TEST(EncodeSubmitLines, WithoutChecksOnlyUrlAndDest) {
  const auto jobs = jobs_of(encode_submit_lines(some_files(3), false, 4096, 100));
  ASSERT_EQ(jobs.size(), 3U);
  for (const auto& job : jobs) EXPECT_EQ(job.size(), 2U) << job;
}

TEST(EncodeSubmitLines, SplitsAtTheLineLimitAndTheJobLimit) {
  const auto files = some_files(100);
  constexpr std::size_t kLimit = 1000;
  auto lines = encode_submit_lines(files, true, kLimit, 1000);
  EXPECT_GT(lines.size(), 10U);
  for (const auto& line : lines) EXPECT_LE(line.size() - 1, kLimit);
  EXPECT_EQ(jobs_of(lines).size(), files.size());

  lines = encode_submit_lines(files, true, control::kMaxLineBytes, 7);
  EXPECT_EQ(lines.size(), 15U);  // 14 x 7 + 2
  EXPECT_EQ(jobs_of(lines).size(), files.size());
}

TEST(EncodeSubmitLines, RefusesAJobThatCannotFitInALine) {
  EXPECT_THROW(encode_submit_lines(some_files(1), true, 100, 10), std::length_error);
}

TEST(ParseTimeMs, ReadsTheDaemonsTimestamps) {
  EXPECT_EQ(parse_time_ms("2024-05-01T12:34:56.789Z"), 1714566896789);
  EXPECT_EQ(parse_time_ms("1970-01-01T00:00:00.000Z"), 0);
  for (std::int64_t ms :
       {std::int64_t{1}, std::int64_t{999}, std::int64_t{1714566896789}, std::int64_t{4102444799999}}) {
    EXPECT_EQ(parse_time_ms(control::format_time_ms(ms)), ms) << control::format_time_ms(ms);
  }
}

TEST(ParseTimeMs, RefusesOtherShapes) {
  for (std::string_view text :
       {"", "2024-05-01T12:34:56Z", "2024-05-01 12:34:56.789Z", "2024-05-01T12:34:56.789",
        "2024-13-01T12:34:56.789Z", "2024-05-01T12:34:5x.789Z", "+024-05-01T12:34:56.789Z"}) {
    EXPECT_FALSE(parse_time_ms(text)) << text;
  }
}

TEST(ReplyProblem, CodeAndMessageOfAnError) {
  EXPECT_EQ(reply_problem(nlohmann::json::parse(R"({"ok":true,"op":"stats","result":{}})")), "");
  EXPECT_EQ(reply_problem(nlohmann::json::parse(
                R"({"ok":false,"op":"submit","error":{"code":"invalid_job","message":"jobs[0].url: bad"}})")),
            "invalid_job: jobs[0].url: bad");
  EXPECT_NE(reply_problem(nlohmann::json::parse("[1]")), "");
}

// A listening Unix socket in a temp dir; serve() runs `handler` on the first connection on its own thread.
class FakeDaemon {
 public:
  FakeDaemon() {
    listener_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strcpy(address.sun_path, path().c_str());
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0)
        << strerror(errno);
    EXPECT_EQ(::listen(listener_, 4), 0);
  }
  ~FakeDaemon() {
    if (thread_.joinable()) thread_.join();
    ::close(listener_);
  }
  FakeDaemon(const FakeDaemon&) = delete;
  FakeDaemon& operator=(const FakeDaemon&) = delete;

  std::filesystem::path path() const { return dir_.path() / "ctl.sock"; }

  void serve(std::function<void(int fd)> handler) {
    thread_ = std::thread([this, handler = std::move(handler)] {
      int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      handler(fd);
      ::close(fd);
    });
  }

 private:
  TempDir dir_ = TempDir::create("fetchd-bench-test-");
  int listener_ = -1;
  std::thread thread_;
};

// Blocking reads until '\n' (one byte at a time: the fake is simple, not fast).
std::optional<std::string> read_line(int fd) {
  std::string line;
  char c = 0;
  while (::read(fd, &c, 1) == 1) {
    if (c == '\n') return line;
    line.push_back(c);
  }
  return std::nullopt;
}

void write_all(int fd, const std::string& text) {
  std::size_t off = 0;
  while (off < text.size()) {
    auto n = ::send(fd, text.data() + off, text.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<std::size_t>(n);
  }
}

bool always() {
  return true;
}

ControlClient connect_to(const FakeDaemon& daemon) {
  std::string error;
  auto client = ControlClient::connect(
      daemon.path(), 5s, [](std::chrono::milliseconds) { return true; }, &error);
  if (!client) throw std::runtime_error(error);
  return std::move(*client);
}

TEST(ControlClient, ConnectGivesUpWhenTheWaitSaysSo) {
  auto dir = TempDir::create("fetchd-bench-test-");
  int pauses = 0;
  std::string error;
  auto client = ControlClient::connect(
      dir.path() / "nobody.sock", 60s, [&](std::chrono::milliseconds) { return ++pauses < 3; }, &error);
  EXPECT_FALSE(client);
  EXPECT_EQ(pauses, 3);
  EXPECT_NE(error.find("nobody.sock"), std::string::npos) << error;
}

TEST(ControlClient, ConnectRefusesAPathTooLongForASocket) {
  std::string error;
  auto client = ControlClient::connect(
      std::filesystem::path("/tmp") / std::string(200, 'x'), 1s,
      [](std::chrono::milliseconds) { return true; }, &error);
  EXPECT_FALSE(client);
  EXPECT_NE(error.find("longer than a Unix socket allows"), std::string::npos) << error;
}

// The fake answers each request at once with a large reply and blocks while the client does not read, as the
// daemon stops reading a client whose replies pile up: a client that sent everything first would deadlock.
TEST(ControlClient, PipelineReadsRepliesWhileItSends) {
  FakeDaemon daemon;
  constexpr std::size_t kLines = 16;
  const std::string big_reply =
      R"({"ok":true,"op":"submit","result":{"pad":")" + std::string(256 * 1024, 'r') + "\"}}\n";
  daemon.serve([&](int fd) {
    for (std::size_t i = 0; i < kLines; ++i) {
      if (!read_line(fd)) return;
      write_all(fd, big_reply);
    }
  });
  auto client = connect_to(daemon);
  std::vector<std::string> lines(kLines, R"({"op":"submit","pad":")" + std::string(64 * 1024, 'q') + "\"}\n");
  int ticks = 0;
  auto result = client.pipeline(lines, 20s, 10ms, [&] {
    ++ticks;
    return true;
  });
  ASSERT_TRUE(result.ok()) << result.error;
  ASSERT_EQ(result.replies.size(), kLines);
  for (const auto& reply : result.replies) EXPECT_EQ(reply + "\n", big_reply);
  EXPECT_GE(result.last_received, result.first_sent);
}

TEST(ControlClient, RequestReportsTheDaemonsError) {
  FakeDaemon daemon;
  daemon.serve([](int fd) {
    if (read_line(fd)) {
      write_all(fd, R"({"ok":false,"op":"list","error":{"code":"bad_request","message":"limit: too big"}})"
                    "\n");
    }
  });
  auto client = connect_to(daemon);
  std::string error;
  auto reply = client.request("{\"op\":\"list\"}\n", 5s, 10ms, always, &error);
  EXPECT_FALSE(reply);
  EXPECT_EQ(error, "bad_request: limit: too big");
}

TEST(ControlClient, ADaemonThatClosesEarlyIsAnError) {
  FakeDaemon daemon;
  daemon.serve([](int fd) {
    if (read_line(fd)) write_all(fd, "{\"ok\":true}\n");
  });
  auto client = connect_to(daemon);
  std::vector<std::string> lines(3, "{\"op\":\"ping\"}\n");
  auto result = client.pipeline(lines, 5s, 10ms, always);
  EXPECT_FALSE(result.ok());
  EXPECT_NE(result.error.find("closed the connection after 1 of 3 replies"), std::string::npos)
      << result.error;
}

TEST(ControlClient, PipelineStopsWhenTheWaitSaysSo) {
  FakeDaemon daemon;
  daemon.serve([](int fd) {
    while (read_line(fd)) {
    }  // never answers; returns once the client closes
  });
  {
    auto client = connect_to(daemon);
    std::vector<std::string> lines(1, "{\"op\":\"ping\"}\n");
    int calls = 0;
    auto result = client.pipeline(lines, 60s, 1ms, [&] { return ++calls < 3; });
    EXPECT_FALSE(result.ok());
    EXPECT_EQ(calls, 3);
    EXPECT_NE(result.error.find("stopped after 0 of 1 replies"), std::string::npos) << result.error;
  }
}

}  // namespace
}  // namespace fetchd::bench
