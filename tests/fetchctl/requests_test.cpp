// SPDX-License-Identifier: Apache-2.0
// Request building: URL lines, -H arguments, job objects, batching by count and bytes, index rewriting, and
// the
// --socket syntax.
#include "requests.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "client.hpp"

namespace {

using namespace fetchd::ctl;
using nlohmann::json;

TEST(UrlFromLine, SkipsBlanksAndCommentsAndStripsTrailingNotes) {
  EXPECT_EQ(url_from_line("https://a/b"), "https://a/b");
  EXPECT_EQ(url_from_line("  https://a/b \r"), "https://a/b");
  EXPECT_EQ(url_from_line("https://a/b   # mirror 2"), "https://a/b");
  EXPECT_EQ(url_from_line("https://a/b#frag"), "https://a/b#frag");  // a fragment is not a comment
  EXPECT_EQ(url_from_line("\xEF\xBB\xBFhttps://a/b"), "https://a/b");
  EXPECT_EQ(url_from_line(""), "");
  EXPECT_EQ(url_from_line("   \t"), "");
  EXPECT_EQ(url_from_line("# comment"), "");
  EXPECT_EQ(url_from_line("   # indented comment"), "");
  // Junk stays, so that the daemon's validation names the line.
  EXPECT_EQ(url_from_line("https://a/b extra"), "https://a/b extra");
}

TEST(ParseHeaderArg, NameColonValue) {
  auto h = parse_header_arg("X-Token:  abc def ", nullptr);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->first, "X-Token");
  EXPECT_EQ(h->second, "abc def");
  auto empty_value = parse_header_arg("X-Empty:", nullptr);
  ASSERT_TRUE(empty_value);
  EXPECT_EQ(empty_value->second, "");
  std::string error;
  EXPECT_FALSE(parse_header_arg("no colon", &error));
  EXPECT_NE(error.find("Name: value"), std::string::npos);
  EXPECT_FALSE(parse_header_arg(": value", &error));
  EXPECT_FALSE(parse_header_arg("X Token: value", &error));
  EXPECT_FALSE(parse_header_arg("X-Token : value", &error));
}

TEST(MakeJob, OnlyTheGivenFieldsInProtocolOrder) {
  EXPECT_EQ(make_job("https://a/b", {}).dump(), R"({"url":"https://a/b"})");
  JobTemplate t;
  t.dest = "d/b";
  t.sha256 = std::string(64, 'a');
  t.size = 0;
  t.priority = -3;
  t.key = "k";
  t.headers = {{"B", "2"}, {"A", "1"}};
  EXPECT_EQ(make_job("https://a/b", t).dump(),
            R"({"url":"https://a/b","dest":"d/b","sha256":")" + std::string(64, 'a') +
                R"(","size":0,"headers":{"B":"2","A":"1"},"priority":-3,"key":"k"})");
  JobTemplate o;
  o.options["retries"] = 2;
  o.options["max_size"] = "1GiB";
  EXPECT_EQ(make_job("https://a/b", o).dump(),
            R"({"url":"https://a/b","retries":2,"max_size":"1GiB"})");
}

TEST(SubmitBatch, AtMostMaxJobsPerSubmit) {
  SubmitBatch batch;
  std::string job = make_job("https://a/b", {}).dump();
  for (std::size_t i = 0; i < kMaxJobsPerSubmit; ++i) ASSERT_TRUE(batch.try_add(job)) << i;
  EXPECT_FALSE(batch.try_add(job));
  EXPECT_EQ(batch.jobs(), kMaxJobsPerSubmit);
  std::string line = batch.finish();
  json request = json::parse(line);
  EXPECT_EQ(request["op"], "submit");
  EXPECT_EQ(request["jobs"].size(), kMaxJobsPerSubmit);
  EXPECT_TRUE(batch.empty());
  EXPECT_TRUE(batch.try_add(job));
  EXPECT_EQ(json::parse(batch.finish())["jobs"].size(), 1u);
}

TEST(SubmitBatch, NeverOverTheLineLimit) {
  SubmitBatch batch;
  std::string job = make_job("https://a/" + std::string(100000, 'x'), {}).dump();
  std::size_t added = 0;
  while (batch.try_add(job)) ++added;
  EXPECT_EQ(added, 10u);  // 10 x ~100 KB fit in 1 MiB, 11 do not
  std::string line = batch.finish();
  EXPECT_LE(line.size(), kMaxRequestLine);
  EXPECT_EQ(json::parse(line)["jobs"].size(), 10u);

  // Exactly at the limit is allowed.
  std::string head = R"({"op":"submit","jobs":[)";
  std::size_t room = kMaxRequestLine - head.size() - 2;
  std::string exact = R"({"url":")" + std::string(room - 10, 'y') + R"("})";
  ASSERT_EQ(exact.size(), room);
  EXPECT_TRUE(SubmitBatch::fits_alone(exact));
  EXPECT_TRUE(batch.try_add(exact));
  EXPECT_EQ(batch.finish().size(), kMaxRequestLine);
  EXPECT_FALSE(SubmitBatch::fits_alone(exact + " "));
}

TEST(RewriteJobIndexes, MapsBatchIndexesToInputPositions) {
  std::vector<std::size_t> global{5000, 5001, 5003};
  EXPECT_EQ(rewrite_job_indexes("jobs[1].url: bad", global), "jobs[5001].url: bad");
  EXPECT_EQ(rewrite_job_indexes("jobs[2] conflicts with jobs[0]", global),
            "jobs[5003] conflicts with jobs[5000]");
  EXPECT_EQ(rewrite_job_indexes("jobs[7].url: out of range stays", global),
            "jobs[7].url: out of range stays");
  EXPECT_EQ(rewrite_job_indexes("no index; jobs[x] jobs[", global), "no index; jobs[x] jobs[");
  EXPECT_EQ(first_job_index("jobs[12].dest: taken by jobs[3]"), 12u);
  EXPECT_FALSE(first_job_index("bad_request: jobs must be an array"));
}

TEST(ParseEndpoint, UnixPathsAndLoopbackTcp) {
  std::string error;
  auto unix_socket = parse_endpoint("/run/fetchd/fetchd.sock", &error);
  ASSERT_TRUE(unix_socket);
  EXPECT_EQ(unix_socket->kind, Endpoint::Kind::kUnix);
  EXPECT_EQ(unix_socket->path, "/run/fetchd/fetchd.sock");
  auto v4 = parse_endpoint("tcp:127.0.0.1:7070", &error);
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->kind, Endpoint::Kind::kTcp);
  EXPECT_EQ(v4->host, "127.0.0.1");
  EXPECT_EQ(v4->port, 7070);
  auto v6 = parse_endpoint("tcp:[::1]:80", &error);
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->display, "tcp:[::1]:80");
  for (const char* bad : {"", "tcp:127.0.0.1", "tcp:127.0.0.1:0", "tcp:127.0.0.1:65536", "tcp:localhost:80",
                          "tcp:[::1]80", "tcp:127.0.0.1:8x"}) {
    EXPECT_FALSE(parse_endpoint(bad, &error)) << bad;
    EXPECT_FALSE(error.empty()) << bad;
  }
  EXPECT_FALSE(parse_endpoint("/" + std::string(120, 'a'), &error));
  EXPECT_NE(error.find("longer than 107"), std::string::npos) << error;
}

}  // namespace
