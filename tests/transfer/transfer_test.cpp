// SPDX-License-Identifier: Apache-2.0
// End-to-end: Transfer + Sink + curl_easy_perform against a tiny canned HTTP server on 127.0.0.1.
#include "fetchd/transfer/transfer.hpp"

#include <fcntl.h>
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "fake_file_system.hpp"
#include "test_http_server.hpp"
#include "test_support.hpp"

namespace fetchd::transfer {
namespace {

using core::ErrorCategory;
using core::OnExists;
using core::TransferRequest;
using core::TransferResult;
using testutil::exists;
using testutil::FakeFileSystem;
using testutil::make_reply;
using testutil::read_file;
using testutil::Reply;
using testutil::TestHttpServer;
using testutil::write_file;
using namespace std::chrono_literals;

class TransferTest : public testutil::TempDirTest {
 protected:
  TransferRequest request(const std::string& url_path, const std::string& dest_name) {
    TransferRequest r;
    r.id = 42;
    r.url = url_path.rfind("http", 0) == 0 ? url_path : server_.url(url_path);
    r.dest = path(dest_name);
    // Failsafes only: every test ends long before these.
    r.options.timeout = 30s;
    r.options.connect_timeout = 10s;
    r.options.user_agent = "fetchd-test/1";
    return r;
  }

  // One attempt through perform_blocking on a FakeFileSystem that checks the descriptors afterwards.
  TransferResult run(const TransferRequest& req) { return run(req, fs_); }
  TransferResult run(const TransferRequest& req, FakeFileSystem& fs) {
    TransferResult result;
    {
      Transfer transfer(req, &fs);
      result = perform_blocking(transfer);
      EXPECT_EQ(result.id, req.id);
    }
    EXPECT_EQ(fs.opened, fs.closed) << "a file descriptor leaked";
    for (int flags : fs.open_flags) EXPECT_NE(flags & O_CLOEXEC, 0);
    return result;
  }

  // Nothing under the final name and no .part either.
  void expect_no_file(const std::string& dest_name) {
    EXPECT_FALSE(exists(path(dest_name))) << dest_name;
    EXPECT_FALSE(exists(path(dest_name) + ".part")) << dest_name << ".part";
  }

  TestHttpServer server_;
  FakeFileSystem fs_;
};

TEST_F(TransferTest, OkPublishesTheFileWithItsHash) {
  server_.route("/file.bin", {make_reply(200, "OK", "abc", {"ETag: \"v1\""})});
  auto req = request("/file.bin?token=x", "out/sub/file.bin");
  req.sha256 = std::string(testutil::kSha256Abc);
  for (auto& c : *req.sha256) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  req.expected_size = 3;
  req.options.headers = {{"X-Test", "1"}, {"X-Empty", ""}};
  TransferResult r = run(req);
  EXPECT_TRUE(r.ok()) << r.message;
  EXPECT_FALSE(r.skipped);
  EXPECT_EQ(r.http_status, 200);
  EXPECT_EQ(r.curl_code, 0);
  EXPECT_EQ(r.bytes, 3u);
  EXPECT_EQ(r.sha256, testutil::kSha256Abc);
  EXPECT_EQ(read_file(path("out/sub/file.bin")), "abc");
  EXPECT_FALSE(exists(path("out/sub/file.bin.part")));
  EXPECT_GE(fs_.fsyncs, 2) << "the file and its directory";

  auto requests = server_.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].method, "GET");
  EXPECT_EQ(requests[0].header("User-Agent"), "fetchd-test/1");
  EXPECT_EQ(requests[0].header("X-Test"), "1");
  EXPECT_EQ(requests[0].header("X-Empty"), "");
  EXPECT_FALSE(requests[0].header("Accept-Encoding")) << "the file is the bytes as sent";
}

TEST_F(TransferTest, NotFoundFailsWithoutWritingTheErrorBody) {
  server_.route("/missing", {make_reply(404, "Not Found", "<html>no such thing</html>")});
  Transfer transfer(request("/missing", "missing.bin"));
  TransferResult r = perform_blocking(transfer);
  EXPECT_EQ(r.category, ErrorCategory::kHttpStatus);
  EXPECT_EQ(r.http_status, 404);
  EXPECT_FALSE(r.retryable);
  EXPECT_NE(r.message.find("HTTP 404 Not Found"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find(server_.url("/missing")), std::string::npos) << r.message;
  EXPECT_EQ(r.bytes, 0u);
  EXPECT_EQ(transfer.bytes_received(), 0u);
  EXPECT_TRUE(r.sha256.empty());
  expect_no_file("missing.bin");
}

TEST_F(TransferTest, LargeErrorBodyIsAbandoned) {
  server_.route("/big-error", {make_reply(500, "Internal Server Error", std::string(3 << 20, 'e'))});
  TransferResult r = run(request("/big-error", "big.bin"));
  EXPECT_EQ(r.category, ErrorCategory::kHttpStatus);
  EXPECT_EQ(r.http_status, 500);
  EXPECT_TRUE(r.retryable);
  expect_no_file("big.bin");
}

TEST_F(TransferTest, ServiceUnavailableWithRetryAfterIsRetryable) {
  server_.route("/busy", {make_reply(503, "Service Unavailable", "later\n", {"Retry-After: 7"})});
  TransferResult r = run(request("/busy", "busy.bin"));
  EXPECT_EQ(r.category, ErrorCategory::kHttpStatus);
  EXPECT_EQ(r.http_status, 503);
  EXPECT_TRUE(r.retryable);
  ASSERT_TRUE(r.retry_after);
  EXPECT_EQ(*r.retry_after, 7s);
  expect_no_file("busy.bin");
}

TEST_F(TransferTest, RetryAfterAsHttpDate) {
  std::time_t when = std::time(nullptr) + 120;
  std::tm tm{};
  ::gmtime_r(&when, &tm);
  char date[64];
  std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  server_.route("/slow-down",
                {make_reply(429, "Too Many Requests", "", {std::string("Retry-After: ") + date})});
  TransferResult r = run(request("/slow-down", "x.bin"));
  EXPECT_EQ(r.category, ErrorCategory::kHttpStatus);
  EXPECT_TRUE(r.retryable);
  ASSERT_TRUE(r.retry_after);
  EXPECT_GE(*r.retry_after, 100s);
  EXPECT_LE(*r.retry_after, 120s);
}

TEST_F(TransferTest, BodyShorterThanContentLengthIsPartial) {
  server_.route("/short",
                {"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nonly-some-bytes"});
  TransferResult r = run(request("/short", "short.bin"));
  EXPECT_EQ(r.category, ErrorCategory::kPartial);
  EXPECT_TRUE(r.retryable);
  EXPECT_EQ(r.curl_code, CURLE_PARTIAL_FILE);
  EXPECT_EQ(r.http_status, 200);
  EXPECT_EQ(r.bytes, 15u);
  expect_no_file("short.bin");
}

TEST_F(TransferTest, ChecksumMismatchFailsWithBothHashes) {
  server_.route("/abc", {make_reply(200, "OK", "abc")});
  auto req = request("/abc", "abc.bin");
  req.sha256 = std::string(testutil::kSha256Empty);
  TransferResult r = run(req);
  EXPECT_EQ(r.category, ErrorCategory::kChecksum);
  EXPECT_FALSE(r.retryable);
  EXPECT_NE(r.message.find(testutil::kSha256Empty), std::string::npos) << r.message;
  EXPECT_NE(r.message.find(testutil::kSha256Abc), std::string::npos) << r.message;
  EXPECT_TRUE(r.sha256.empty());
  expect_no_file("abc.bin");
}

TEST_F(TransferTest, ExpectedSizeMismatchFails) {
  server_.route("/abc", {make_reply(200, "OK", "abc")});
  auto req = request("/abc", "abc.bin");
  req.expected_size = 4;
  TransferResult r = run(req);
  EXPECT_EQ(r.category, ErrorCategory::kSize);
  EXPECT_FALSE(r.retryable);
  expect_no_file("abc.bin");
}

TEST_F(TransferTest, ConflictingContentLengthIsAProtocolError) {
  server_.route(
      "/cl", {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabc"});
  TransferResult r = run(request("/cl", "cl.bin"));
  EXPECT_EQ(r.category, ErrorCategory::kProtocol) << r.message;
  EXPECT_FALSE(r.ok());
  expect_no_file("cl.bin");
}

TEST_F(TransferTest, ConnectionRefused) {
  auto req = request("http://127.0.0.1:" + std::to_string(testutil::closed_port()) + "/x", "refused.bin");
  TransferResult r = run(req);
  EXPECT_EQ(r.category, ErrorCategory::kConnect) << r.message;
  EXPECT_TRUE(r.retryable);
  EXPECT_EQ(r.curl_code, CURLE_COULDNT_CONNECT);
  EXPECT_EQ(r.http_status, 0);
  expect_no_file("refused.bin");
}

TEST_F(TransferTest, RedirectToFileSchemeIsRefused) {
  server_.route("/evil", {make_reply(302, "Found", "", {"Location: file:///etc/passwd"})});
  Transfer transfer(request("/evil", "evil.bin"));
  TransferResult r = perform_blocking(transfer);
  EXPECT_EQ(r.category, ErrorCategory::kRedirect) << r.message;
  EXPECT_FALSE(r.retryable);
  EXPECT_EQ(r.curl_code, CURLE_UNSUPPORTED_PROTOCOL);
  EXPECT_NE(r.message.find("file:///etc/passwd"), std::string::npos) << r.message;
  EXPECT_EQ(transfer.bytes_received(), 0u);
  EXPECT_EQ(r.bytes, 0u);
  expect_no_file("evil.bin");
}

TEST_F(TransferTest, RedirectChainThenOkUsesTheFinalResponseOnly) {
  // The redirects carry their own Content-Length, Retry-After and ETag; the final response has no
  // Content-Length at all (body until close). Stale state from a redirect would fail the length check.
  server_.route("/r1", {make_reply(301, "Moved Permanently", "redirect!!",
                                   {"Location: /r2", "Retry-After: 99", "ETag: \"r1\""})});
  server_.route("/r2", {make_reply(302, "Found", "redirect 2!!", {"Location: " + server_.url("/final")})});
  server_.route("/final", {make_reply(200, "OK", "final", {}, /*content_length=*/false)});
  Transfer transfer(request("/r1", "chain.bin"));
  TransferResult r = perform_blocking(transfer);
  EXPECT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(r.http_status, 200);
  EXPECT_FALSE(r.retry_after);
  EXPECT_EQ(r.bytes, 5u);
  EXPECT_EQ(read_file(path("chain.bin")), "final");
  EXPECT_EQ(server_.hits("/r1"), 1);
  EXPECT_EQ(server_.hits("/r2"), 1);
  EXPECT_EQ(server_.hits("/final"), 1);
}

TEST_F(TransferTest, RedirectChainThenErrorKeepsNoStaleRetryAfter) {
  server_.route("/a", {make_reply(302, "Found", "", {"Location: /b", "Retry-After: 99"})});
  server_.route("/b", {make_reply(503, "Service Unavailable", "down")});
  TransferResult r = run(request("/a", "b.bin"));
  EXPECT_EQ(r.category, ErrorCategory::kHttpStatus);
  EXPECT_EQ(r.http_status, 503);
  EXPECT_TRUE(r.retryable);
  EXPECT_FALSE(r.retry_after) << "Retry-After belonged to the redirect";
  EXPECT_NE(r.message.find("redirected to " + server_.url("/b")), std::string::npos) << r.message;
  expect_no_file("b.bin");
}

TEST_F(TransferTest, RedirectLoopStopsAtMaxRedirects) {
  server_.route("/loop-a", {make_reply(302, "Found", "", {"Location: /loop-b"})});
  server_.route("/loop-b", {make_reply(302, "Found", "", {"Location: /loop-a"})});
  auto req = request("/loop-a", "loop.bin");
  req.options.max_redirects = 3;
  TransferResult r = run(req);
  EXPECT_EQ(r.category, ErrorCategory::kRedirect) << r.message;
  EXPECT_EQ(r.curl_code, CURLE_TOO_MANY_REDIRECTS);
  EXPECT_EQ(server_.hits("/loop-a") + server_.hits("/loop-b"), 4);
  expect_no_file("loop.bin");
}

TEST_F(TransferTest, OnExistsSkipLeavesTheFileAndDownloadsNothing) {
  server_.route("/f", {make_reply(200, "OK", "new")});
  write_file(path("f.bin"), "old");
  auto req = request("/f", "f.bin");
  req.on_exists = OnExists::kSkip;
  TransferResult r = run(req);
  EXPECT_TRUE(r.ok()) << r.message;
  EXPECT_TRUE(r.skipped);
  EXPECT_TRUE(r.sha256.empty());
  EXPECT_EQ(read_file(path("f.bin")), "old");
  EXPECT_FALSE(exists(path("f.bin.part")));
  EXPECT_EQ(server_.hits("/f"), 0);
}

TEST_F(TransferTest, OnExistsFailNamesThePath) {
  server_.route("/f", {make_reply(200, "OK", "new")});
  write_file(path("f.bin"), "old");
  auto req = request("/f", "f.bin");
  req.on_exists = OnExists::kFail;
  TransferResult r = run(req);
  EXPECT_EQ(r.category, ErrorCategory::kDestExists);
  EXPECT_FALSE(r.retryable);
  EXPECT_NE(r.message.find(path("f.bin")), std::string::npos) << r.message;
  EXPECT_EQ(read_file(path("f.bin")), "old");
  EXPECT_FALSE(exists(path("f.bin.part")));
  EXPECT_EQ(server_.hits("/f"), 0);
}

TEST_F(TransferTest, OnExistsOverwriteReplaces) {
  server_.route("/f", {make_reply(200, "OK", "new")});
  write_file(path("f.bin"), "old");
  auto req = request("/f", "f.bin");
  req.on_exists = OnExists::kOverwrite;
  TransferResult r = run(req);
  EXPECT_TRUE(r.ok()) << r.message;
  EXPECT_FALSE(r.skipped);
  EXPECT_EQ(read_file(path("f.bin")), "new");
  EXPECT_FALSE(exists(path("f.bin.part")));
}

// A crash between the rename and the job store's commit leaves this job's own file at dest: the restart
// recognises it by its publish record (job id + SHA-256 of the bytes) and is done, without downloading again
// and without on_exists treating it as a stranger's file. Anything else at dest still is on_exists's business.
TEST_F(TransferTest, OwnPublishedFileIsThisJobsResultAfterARestart) {
  server_.route("/f", {make_reply(200, "OK", "abc")});
  auto first = request("/f", "own.bin");
  first.publish_record = true;
  first.on_exists = OnExists::kFail;
  TransferResult published = run(first);
  ASSERT_TRUE(published.ok()) << published.message;
  ASSERT_EQ(server_.hits("/f"), 1);

  for (OnExists policy : {OnExists::kFail, OnExists::kSkip}) {
    SCOPED_TRACE(std::string(core::to_string(policy)));
    auto again = first;
    again.attempt = 2;
    again.on_exists = policy;
    TransferResult r = run(again);
    EXPECT_TRUE(r.ok()) << r.message;
    EXPECT_FALSE(r.skipped) << "it was downloaded, by the attempt before the crash";
    EXPECT_EQ(r.sha256, testutil::kSha256Abc);
    EXPECT_EQ(r.bytes, 3u);
  }
  EXPECT_EQ(server_.hits("/f"), 1) << "downloaded a second time";

  auto other_job = first;
  other_job.id = first.id + 1;
  EXPECT_EQ(run(other_job).category, ErrorCategory::kDestExists);
  auto without_records = first;  // fetchd run: job ids start afresh every run, so records mean nothing
  without_records.publish_record = false;
  EXPECT_EQ(run(without_records).category, ErrorCategory::kDestExists);
  auto expecting_other = first;
  expecting_other.sha256 = std::string(64, '0');
  EXPECT_EQ(run(expecting_other).category, ErrorCategory::kDestExists);

  // Changed after it was published (the record stays, the bytes do not match it): a stranger's file now.
  {
    std::FILE* f = std::fopen(path("own.bin").c_str(), "ab");
    ASSERT_NE(f, nullptr);
    std::fputs("!", f);
    std::fclose(f);
  }
  EXPECT_EQ(run(first).category, ErrorCategory::kDestExists);
  EXPECT_EQ(read_file(path("own.bin")), "abc!");
  EXPECT_EQ(server_.hits("/f"), 1);
}

TEST_F(TransferTest, DestinationAppearingDuringTheDownloadIsNeverClobbered) {
  server_.route("/f", {make_reply(200, "OK", "new")});
  for (OnExists policy : {OnExists::kSkip, OnExists::kFail}) {
    SCOPED_TRACE(std::string(core::to_string(policy)));
    const std::string name = std::string("race-") + std::string(core::to_string(policy)) + ".bin";
    auto req = request("/f", name);
    req.on_exists = policy;
    Transfer transfer(req);
    ASSERT_FALSE(transfer.prepare());
    write_file(path(name), "old");  // someone else creates it between prepare and publish
    TransferResult r = transfer.publish(transfer.finish(curl_easy_perform(transfer.easy())));
    if (policy == OnExists::kSkip) {
      EXPECT_TRUE(r.ok()) << r.message;
      EXPECT_TRUE(r.skipped);
    } else {
      EXPECT_EQ(r.category, ErrorCategory::kDestExists) << r.message;
    }
    EXPECT_TRUE(r.sha256.empty());
    EXPECT_EQ(read_file(path(name)), "old");
    EXPECT_FALSE(exists(path(name) + ".part"));
  }
}

TEST_F(TransferTest, CancelDuringASlowBody) {
  // Headers promise a megabyte, 4 KiB arrive, then the server waits for the client to go away.
  server_.route("/slow", {"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\nConnection: close\r\n\r\n" +
                              std::string(4096, 's'),
                          /*hold=*/true});
  auto req = request("/slow", "slow.bin");
  req.options.low_speed_limit = 0;
  Transfer transfer(req, &fs_);
  TransferResult r;
  std::thread runner([&] { r = perform_blocking(transfer); });
  EXPECT_TRUE(server_.wait_held(20s)) << "the server never sent the first part";
  transfer.request_cancel();
  runner.join();
  EXPECT_EQ(r.category, ErrorCategory::kCancelled) << r.message;
  EXPECT_FALSE(r.retryable);
  EXPECT_TRUE(r.curl_code == CURLE_ABORTED_BY_CALLBACK || r.curl_code == CURLE_WRITE_ERROR) << r.curl_code;
  expect_no_file("slow.bin");
}

TEST_F(TransferTest, StallAfterHeadersHitsTheLowSpeedLimit) {
  server_.route("/stall",
                {"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n", /*hold=*/true});
  auto req = request("/stall", "stall.bin");
  req.options.low_speed_limit = 1000;
  req.options.low_speed_time = 1s;
  const auto start = std::chrono::steady_clock::now();
  TransferResult r = run(req);
  EXPECT_EQ(r.category, ErrorCategory::kTimeout) << r.message;
  EXPECT_TRUE(r.retryable);
  EXPECT_EQ(r.curl_code, CURLE_OPERATION_TIMEDOUT);
  EXPECT_NE(r.message.find("low-speed limit"), std::string::npos) << r.message;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  expect_no_file("stall.bin");
}

TEST_F(TransferTest, TotalTimeoutIsReportedAsSuch) {
  server_.route("/stall",
                {"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\nab", /*hold=*/true});
  auto req = request("/stall", "stall.bin");
  req.options.low_speed_limit = 0;
  req.options.timeout = 300ms;
  TransferResult r = run(req);
  EXPECT_EQ(r.category, ErrorCategory::kTimeout) << r.message;
  EXPECT_TRUE(r.retryable);
  EXPECT_NE(r.message.find("total timeout of 300ms"), std::string::npos) << r.message;
  expect_no_file("stall.bin");
}

TEST_F(TransferTest, PartialContentWithoutRangeIsRefused) {
  server_.route("/p", {make_reply(206, "Partial Content", "abc", {"Content-Range: bytes 0-2/10"})});
  TransferResult r = run(request("/p", "p.bin"));
  EXPECT_EQ(r.category, ErrorCategory::kProtocol) << r.message;
  EXPECT_EQ(r.http_status, 206);
  expect_no_file("p.bin");
}

TEST_F(TransferTest, CancelBeforeStartNeverConnects) {
  server_.route("/f", {make_reply(200, "OK", "new")});
  Transfer transfer(request("/f", "f.bin"));
  transfer.request_cancel();
  TransferResult r = perform_blocking(transfer);
  EXPECT_EQ(r.category, ErrorCategory::kCancelled);
  EXPECT_EQ(server_.hits("/f"), 0);
  expect_no_file("f.bin");
}

TEST_F(TransferTest, DiskFullFailsAsFilesystem) {
  server_.route("/big", {make_reply(200, "OK", std::string(200000, 'b'))});
  FakeFileSystem fs;
  fs.write_errno = ENOSPC;
  fs.fail_write_after = 50000;
  TransferResult r = run(request("/big", "big.bin"), fs);
  EXPECT_EQ(r.category, ErrorCategory::kFilesystem) << r.message;
  EXPECT_FALSE(r.retryable);
  EXPECT_EQ(r.curl_code, CURLE_WRITE_ERROR);
  EXPECT_NE(r.message.find("No space left on device"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find(path("big.bin.part")), std::string::npos) << r.message;
  expect_no_file("big.bin");
}

TEST_F(TransferTest, FsyncErrorFailsThePublish) {
  server_.route("/f", {make_reply(200, "OK", "data")});
  FakeFileSystem fs;
  fs.fsync_file_errno = EIO;
  TransferResult r = run(request("/f", "f.bin"), fs);
  EXPECT_EQ(r.category, ErrorCategory::kFilesystem) << r.message;
  EXPECT_NE(r.message.find("Input/output error"), std::string::npos) << r.message;
  EXPECT_TRUE(r.sha256.empty());
  expect_no_file("f.bin");
}

TEST_F(TransferTest, NoFsyncWhenTheRequestSaysSo) {
  server_.route("/f", {make_reply(200, "OK", "data")});
  FakeFileSystem fs;
  fs.fsync_file_errno = EIO;
  fs.fsync_dir_errno = EIO;
  auto req = request("/f", "f.bin");
  req.fsync = false;
  TransferResult r = run(req, fs);
  EXPECT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(fs.fsyncs, 0);
  EXPECT_EQ(read_file(path("f.bin")), "data");
}

TEST_F(TransferTest, SecretsNeverAppearInMessages) {
  auto req = request("http://user:hunter2@127.0.0.1:" + std::to_string(server_.port()) + "/nope?token=s3cr3t",
                     "nope.bin");
  req.options.headers = {{"Authorization", "Bearer t0ken"}};
  TransferResult r = run(req);
  EXPECT_EQ(r.category, ErrorCategory::kHttpStatus);
  EXPECT_EQ(r.message.find("hunter2"), std::string::npos) << r.message;
  EXPECT_EQ(r.message.find("user"), std::string::npos) << r.message;
  EXPECT_EQ(r.message.find("s3cr3t"), std::string::npos) << r.message;
  EXPECT_EQ(r.message.find("t0ken"), std::string::npos) << r.message;
}

TEST_F(TransferTest, HeaderInjectionIsRefused) {
  auto req = request("/f", "f.bin");
  req.options.headers = {{"X-Evil", "a\r\nHost: elsewhere"}};
  TransferResult r = run(req);
  EXPECT_EQ(r.category, ErrorCategory::kInternal);
  EXPECT_NE(r.message.find("X-Evil"), std::string::npos) << r.message;
  EXPECT_EQ(r.message.find("elsewhere"), std::string::npos) << r.message;
  EXPECT_EQ(server_.requests().size(), 0u);
  expect_no_file("f.bin");
}

TEST_F(TransferTest, FromEasyFindsTheTransfer) {
  Transfer transfer(request("/f", "f.bin"));
  ASSERT_FALSE(transfer.prepare());
  EXPECT_EQ(Transfer::from_easy(transfer.easy()), &transfer);
  transfer.publish(transfer.finish(CURLE_ABORTED_BY_CALLBACK));
  expect_no_file("f.bin");
}

// Only kLargeReceiveBuffers transfers at a time get curl's 16 KiB buffer, the others 4 KiB, and a slot comes
// back when its transfer is destroyed. The small buffer still moves a body 250 times its size intact.
TEST_F(TransferTest, ReceiveBufferIsLargeOnlyForTheFirstTransfers) {
  server_.route("/million", {make_reply(200, "OK", std::string(1000000, 'a'))});
  std::vector<std::unique_ptr<Transfer>> held;
  for (int i = 0; i < kLargeReceiveBuffers; ++i) {
    auto t = std::make_unique<Transfer>(request("/f", "held/" + std::to_string(i)));
    EXPECT_EQ(t->receive_buffer(), 0) << "chosen by prepare()";
    ASSERT_FALSE(t->prepare());
    EXPECT_EQ(t->receive_buffer(), kLargeReceiveBuffer) << i;
    held.push_back(std::move(t));
  }

  auto req = request("/million", "million.bin");
  req.sha256 = std::string(testutil::kSha256MillionA);
  {
    Transfer small(req, &fs_);
    TransferResult r = perform_blocking(small);
    EXPECT_EQ(small.receive_buffer(), kSmallReceiveBuffer);
    EXPECT_TRUE(r.ok()) << r.message;
    EXPECT_EQ(r.bytes, 1000000u);
    EXPECT_EQ(r.sha256, testutil::kSha256MillionA);
  }

  held.back()->publish(held.back()->finish(CURLE_ABORTED_BY_CALLBACK));
  held.pop_back();  // gives its slot back
  Transfer next(request("/f", "next.bin"));
  ASSERT_FALSE(next.prepare());
  EXPECT_EQ(next.receive_buffer(), kLargeReceiveBuffer);
  next.publish(next.finish(CURLE_ABORTED_BY_CALLBACK));
  for (auto& t : held) t->publish(t->finish(CURLE_ABORTED_BY_CALLBACK));
}


TEST(DeniedAddress, PrivateRangesAreDeniedPublicOnesAreNot) {
  auto v4 = [](const char* text) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    EXPECT_EQ(inet_pton(AF_INET, text, &a.sin_addr), 1) << text;
    return is_denied_address(reinterpret_cast<const sockaddr*>(&a));
  };
  auto v6 = [](const char* text) {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    EXPECT_EQ(inet_pton(AF_INET6, text, &a.sin6_addr), 1) << text;
    return is_denied_address(reinterpret_cast<const sockaddr*>(&a));
  };
  for (const char* a : {"127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254",
                        "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255"}) {
    EXPECT_TRUE(v4(a)) << a;
  }
  for (const char* a : {"8.8.8.8", "172.32.0.1", "93.184.216.34", "100.128.0.1"}) EXPECT_FALSE(v4(a)) << a;
  for (const char* a : {"::1", "::", "fe80::1", "fd00::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
                        "64:ff9b::a9fe:a9fe"}) {
    EXPECT_TRUE(v6(a)) << a;
  }
  for (const char* a : {"2001:4860:4860::8888", "::ffff:8.8.8.8"}) EXPECT_FALSE(v6(a)) << a;
}

}  // namespace
}  // namespace fetchd::transfer
