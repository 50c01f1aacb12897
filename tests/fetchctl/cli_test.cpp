// SPDX-License-Identifier: Apache-2.0
// Runs the real fetchctl (FETCHCTL_BIN) against a fake control socket and checks the exact requests it sends,
// what it prints and its exit codes.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "child.hpp"
#include "fake_server.hpp"
#include "temp_dir.hpp"

namespace {

using fetchd::testing::Child;
using fetchd::testing::ChildOptions;
using fetchd::testing::ChildResult;
using fetchd::testing::error_reply;
using fetchd::testing::FakeServer;
using fetchd::testing::ok_reply;
using fetchd::testing::TempDir;
using nlohmann::json;
using Action = FakeServer::Action;

constexpr const char* kSha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

json job(std::int64_t id, const std::string& state = "done") {
  return {{"id", id},
          {"url", "https://example.org/f" + std::to_string(id)},
          {"dest", "f" + std::to_string(id)},
          {"state", state},
          {"attempts", 1},
          {"error", ""},
          {"bytes", 4096},
          {"size", 4096},
          {"sha256", nullptr},
          {"priority", 0},
          {"key", nullptr},
          {"created", "2024-05-01T12:00:00.000Z"},
          {"updated", "2024-05-01T12:00:01.000Z"},
          {"finished", nullptr}};
}

class FetchctlCli : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* bin = std::getenv("FETCHCTL_BIN");
    if (bin == nullptr || *bin == '\0') GTEST_SKIP() << "FETCHCTL_BIN is not set (run through meson test)";
    bin_ = bin;
  }

  std::string socket_path() const { return (dir_ / "ctl.sock").string(); }

  std::vector<std::string> argv(std::vector<std::string> args) const {
    args.insert(args.begin(), bin_);
    return args;
  }

  // fetchctl --socket <the fake server's socket> args...
  ChildResult run(std::vector<std::string> args, const ChildOptions& options = {}) const {
    args.insert(args.begin(), {"--socket", socket_path()});
    return fetchd::testing::run_child(argv(std::move(args)), options);
  }

  std::string bin_;
  TempDir dir_;
};

TEST_F(FetchctlCli, SubmitOneUrlSendsEveryOptionAndPrintsTheId) {
  FakeServer server(socket_path(), [](const json&, std::size_t) {
    return Action{{ok_reply("submit", {{"jobs", {{{"id", 7}, {"state", "queued"}, {"existing", false}}}}})}};
  });
  auto r =
      run({"submit", "https://example.org/a.bin", "--dest", "x/a.bin", "--sha256", kSha, "--size", "4KiB",
           "--priority", "5", "--key", "k1", "-H", "X-A: 1", "--header", "Authorization:  Bearer t "});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "7  queued  https://example.org/a.bin\n");
  EXPECT_EQ(r.err, "");
  ASSERT_EQ(server.requests().size(), 1u);
  json expected = json::parse(R"({"op":"submit","jobs":[{"url":"https://example.org/a.bin","dest":"x/a.bin",
      "sha256":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","size":4096,
      "headers":{"X-A":"1","Authorization":"Bearer t"},"priority":5,"key":"k1"}]})");
  EXPECT_EQ(server.request_json()[0], expected) << server.requests()[0];
  // The request is one compact line with "op" first (readable in the daemon's debug log).
  EXPECT_EQ(server.requests()[0].rfind(R"({"op":"submit","jobs":[{"url":)", 0), 0u);
  EXPECT_EQ(server.error(), "");
}

// The job's own options go as the protocol's keys, as text for the daemon to check (it names the field).
TEST_F(FetchctlCli, SubmitSendsTheJobsOwnOptions) {
  FakeServer server(socket_path(), [](const json&, std::size_t) {
    return Action{{ok_reply("submit", {{"jobs", {{{"id", 8}, {"state", "queued"}, {"existing", false}}}}})}};
  });
  const std::string sha512(128, 'e');
  auto r = run({"submit", "https://example.org/b.bin", "--sha512", sha512, "--max-size", "2GiB", "--rate",
                "1MiB", "--job-timeout", "0", "--retries", "3"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(server.requests().size(), 1u);
  json expected = {{"op", "submit"},
                   {"jobs",
                    {{{"url", "https://example.org/b.bin"},
                      {"sha512", sha512},
                      {"timeout", "0"},
                      {"max_size", "2GiB"},
                      {"rate", "1MiB"},
                      {"retries", 3}}}}};
  EXPECT_EQ(server.request_json()[0], expected) << server.requests()[0];
}

TEST_F(FetchctlCli, SubmitOptionValuesAreCheckedBeforeConnecting) {
  for (std::vector<std::string> args : {std::vector<std::string>{"--max-size", "lots"},
                                        {"--rate", "-1"},
                                        {"--job-timeout", "soon"},
                                        {"--retries", "-2"}}) {
    args.insert(args.begin(), {"submit", "https://example.org/b.bin"});
    auto r = run(args);
    EXPECT_EQ(r.exit_code, 2) << args[2] << ": " << r.err;
    EXPECT_NE(r.err.find(args[2]), std::string::npos) << r.err;
  }
  auto r = run({"submit", "https://example.org/a", "https://example.org/b", "--sha512", std::string(128, 'e')});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--sha512 needs exactly one URL"), std::string::npos) << r.err;
}

TEST_F(FetchctlCli, SubmitJsonPrintsTheResultAndRedactsNothingItDoesNotPrint) {
  FakeServer server(socket_path(), [](const json&, std::size_t) {
    return Action{{ok_reply("submit", {{"jobs", {{{"id", 3}, {"state", "done"}, {"existing", true}}}}})}};
  });
  auto r = run({"submit", "--json", "https://u:secret@example.org/b.bin?token=x"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  json out = json::parse(r.out);
  EXPECT_EQ(out, json::parse(R"({"jobs":[{"id":3,"state":"done","existing":true}]})"));
  // The URL goes to the daemon as given (credentials included: it needs them).
  EXPECT_EQ(server.request_json()[0]["jobs"][0]["url"], "https://u:secret@example.org/b.bin?token=x");
}

TEST_F(FetchctlCli, SubmitHumanOutputNeverPrintsCredentials) {
  FakeServer server(socket_path(), [](const json&, std::size_t) {
    return Action{{ok_reply("submit", {{"jobs", {{{"id", 3}, {"state", "queued"}, {"existing", false}}}}})}};
  });
  auto r = run({"submit", "https://u:secret@example.org/b.bin?token=x"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "3  queued  https://example.org/b.bin?…\n");
}

TEST_F(FetchctlCli, SubmitFromStdinSendsPipelinedBatchesOf1000) {
  constexpr int kUrls = 2400;
  std::string input = "# a list of URLs\n\n";
  for (int i = 0; i < kUrls; ++i) {
    input += "https://example.org/f" + std::to_string(i);
    input += i % 1000 == 0 ? "   # note\r\n" : "\n";
    if (i % 700 == 0) input += "   \n# comment\n";
  }
  auto stdin_path = dir_.write("urls.txt", input);
  std::vector<json> replies;
  int next_id = 1;
  // Replies are held back until all three requests arrived: fetchctl must pipeline, not wait for each reply.
  FakeServer server(socket_path(), [&](const json& request, std::size_t index) {
    json jobs = json::array();
    for (std::size_t i = 0; i < request["jobs"].size(); ++i)
      jobs.push_back({{"id", next_id++}, {"state", "queued"}, {"existing", false}});
    replies.push_back(ok_reply("submit", {{"jobs", jobs}}));
    Action a;
    if (index == 2) a.send = {replies[0], replies[1], replies[2]};
    return a;
  });
  ChildOptions options;
  options.stdin_path = stdin_path.string();
  auto r = run({"submit", "--priority", "2"}, options);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto requests = server.request_json();
  ASSERT_EQ(requests.size(), 3u);
  std::vector<std::size_t> sizes;
  int expect_url = 0;
  for (const auto& req : requests) {
    EXPECT_EQ(req["op"], "submit");
    EXPECT_EQ(req.size(), 2u);  // op and jobs, nothing else
    sizes.push_back(req["jobs"].size());
    for (const auto& j : req["jobs"]) {
      EXPECT_EQ(j, json({{"url", "https://example.org/f" + std::to_string(expect_url)}, {"priority", 2}}));
      ++expect_url;
    }
  }
  EXPECT_EQ(sizes, (std::vector<std::size_t>{1000, 1000, 400}));
  auto out = lines_of(r.out);
  ASSERT_EQ(out.size(), static_cast<std::size_t>(kUrls));
  EXPECT_EQ(out.front(), "1  queued  https://example.org/f0");
  EXPECT_EQ(out.back(), "2400  queued  https://example.org/f2399");
  EXPECT_NE(r.err.find("submitted 2400 of 2400 jobs (2400 new, 0 existing)"), std::string::npos) << r.err;
}

TEST_F(FetchctlCli, SubmitRejectedBatchNamesTheJobInTheWholeInputAndItsLine) {
  std::string input = "# header\n";
  for (int i = 0; i < 1002; ++i) input += "https://example.org/f" + std::to_string(i) + "\n";
  auto stdin_path = dir_.write("urls.txt", input);
  FakeServer server(socket_path(), [](const json& request, std::size_t index) {
    if (index == 1)
      return Action{{error_reply("submit", "invalid_job", "jobs[1].url: URL scheme 'ftp' is not allowed")}};
    json jobs = json::array();
    for (std::size_t i = 0; i < request["jobs"].size(); ++i)
      jobs.push_back({{"id", i + 1}, {"state", "queued"}});
    return Action{{ok_reply("submit", {{"jobs", jobs}})}};
  });
  ChildOptions options;
  options.stdin_path = stdin_path.string();
  auto r = run({"submit"}, options);
  EXPECT_EQ(r.exit_code, 1);
  // jobs[1] of the second batch is URL 1001 of the input, on line 1003 (after the comment line).
  EXPECT_NE(r.err.find(
                "fetchctl: invalid_job: jobs[1001].url: URL scheme 'ftp' is not allowed (stdin line 1003)\n"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("submitted 1000 of 1002 jobs (1000 new, 0 existing), 2 rejected"), std::string::npos)
      << r.err;
  EXPECT_EQ(lines_of(r.out).size(), 1000u);
}

// A daemon's conflict answer lists what became of every job of the request: the others were stored.
json conflict_reply(const json& request, int& next_id, std::size_t conflicting, std::int64_t with) {
  json jobs = json::array();
  for (std::size_t i = 0; i < request["jobs"].size(); ++i) {
    if (i == conflicting) {
      jobs.push_back({{"error", "conflict"}, {"conflicts_with", with}});
    } else {
      jobs.push_back({{"id", next_id++}, {"state", "queued"}, {"existing", false}});
    }
  }
  json reply = json::parse(error_reply("submit", "conflict",
                                       "jobs[" + std::to_string(conflicting) +
                                           "].dest: /srv/x is already the destination of unfinished job " +
                                           std::to_string(with)));
  reply["error"]["jobs"] = jobs;
  return reply;
}

TEST_F(FetchctlCli, SubmitConflictPrintsTheStoredJobsAndTheConflict) {
  FakeServer server(socket_path(), [](const json& request, std::size_t) {
    int next_id = 10;
    return Action{{conflict_reply(request, next_id, 1, 7).dump() + "\n"}};
  });
  auto r = run({"submit", "https://example.org/a", "https://example.org/b", "https://example.org/c"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.out,
            "10  queued  https://example.org/a\n"
            "-  conflict with job 7  https://example.org/b\n"
            "11  queued  https://example.org/c\n");
  EXPECT_NE(
      r.err.find("fetchctl: conflict: jobs[1].dest: /srv/x is already the destination of unfinished job 7"),
      std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("submitted 2 of 3 jobs (2 new, 0 existing), 1 conflicts"), std::string::npos) << r.err;
}

// --quiet: one summary line on stdout for a whole list, nothing per job.
TEST_F(FetchctlCli, SubmitQuietPrintsOneSummaryLine) {
  constexpr int kUrls = 12000;
  std::string input;
  for (int i = 0; i < kUrls; ++i) input += "https://example.org/f" + std::to_string(i) + "\n";
  auto stdin_path = dir_.write("urls.txt", input);
  int next_id = 1;
  // Batch 1: all new; batch 2: 3 of them existing; batch 3: one conflict.
  FakeServer server(socket_path(), [&](const json& request, std::size_t index) {
    if (index == 2) return Action{{conflict_reply(request, next_id, 5, 42).dump() + "\n"}};
    json jobs = json::array();
    for (std::size_t i = 0; i < request["jobs"].size(); ++i) {
      bool old = index == 1 && i < 3;
      jobs.push_back(
          {{"id", old ? static_cast<int>(i) + 1 : next_id++}, {"state", "queued"}, {"existing", old}});
    }
    return Action{{ok_reply("submit", {{"jobs", jobs}})}};
  });
  ChildOptions options;
  options.stdin_path = stdin_path.string();
  auto r = run({"submit", "--quiet"}, options);
  EXPECT_EQ(r.exit_code, 1) << "a conflict is a refusal: " << r.err;
  EXPECT_EQ(r.out, "11996 submitted, 3 existing, 1 conflicts\n");
  EXPECT_NE(r.err.find("fetchctl: conflict: jobs[2005].dest"), std::string::npos) << r.err;  // batch 3, job 5
  EXPECT_EQ(r.err.find("submitted 11999 of"), std::string::npos) << "the summary is on stdout: " << r.err;

  // Without conflicts: exit 0; with --json the summary is an object.
  FakeServer plain(dir_ / "plain.sock", [](const json& request, std::size_t) {
    json jobs = json::array();
    for (std::size_t i = 0; i < request["jobs"].size(); ++i)
      jobs.push_back({{"id", i + 1}, {"state", "queued"}, {"existing", false}});
    return Action{{ok_reply("submit", {{"jobs", jobs}})}};
  });
  auto q = fetchd::testing::run_child(
      argv({"--socket", (dir_ / "plain.sock").string(), "submit", "-q", "https://example.org/x"}));
  EXPECT_EQ(q.exit_code, 0) << q.err;
  EXPECT_EQ(q.out, "1 submitted, 0 existing, 0 conflicts\n");
  EXPECT_EQ(q.err, "");
  auto j = fetchd::testing::run_child(
      argv({"--socket", (dir_ / "plain.sock").string(), "submit", "-q", "--json", "https://example.org/x"}));
  EXPECT_EQ(j.exit_code, 0) << j.err;
  EXPECT_EQ(json::parse(j.out), json::parse(R"({"submitted":1,"existing":0,"conflicts":0,"rejected":0})"));
}

TEST_F(FetchctlCli, SubmitWithoutUrlsOnEmptyStdinIsAUsageError) {
  FakeServer server(socket_path(), [](const json&, std::size_t) { return Action{}; });
  auto empty = dir_.write("empty.txt", "# nothing\n\n");
  ChildOptions options;
  options.stdin_path = empty.string();
  auto r = run({"submit"}, options);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("no URLs"), std::string::npos) << r.err;
  EXPECT_TRUE(server.requests().empty());
}

TEST_F(FetchctlCli, ListJsonPagesWithTheCursorUntilNextAfterIsNull) {
  // Pages of 1000, 1000 and 5 jobs: a daemon may return fewer than the limit and still say more may follow
  // (smaller pages than the 10000 asked for keep this test fast in debug builds).
  FakeServer server(socket_path(), [](const json&, std::size_t index) {
    std::int64_t first = static_cast<std::int64_t>(index) * 1000 + 1;
    std::int64_t count = index < 2 ? 1000 : 5;
    json jobs = json::array();
    for (std::int64_t id = first; id < first + count; ++id) jobs.push_back(job(id));
    json next = index < 2 ? json(first + count - 1) : json(nullptr);
    return Action{{ok_reply("list", {{"jobs", jobs}, {"total", 2005}, {"next_after", next}})}};
  });
  auto r = run({"list", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto requests = server.request_json();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(requests[0], json::parse(R"({"op":"list","limit":10000})"));
  EXPECT_EQ(requests[1], json::parse(R"({"op":"list","after":1000,"limit":10000})"));
  EXPECT_EQ(requests[2], json::parse(R"({"op":"list","after":2000,"limit":10000})"));
  json out = json::parse(r.out);  // ONE array
  ASSERT_TRUE(out.is_array());
  ASSERT_EQ(out.size(), 2005u);
  for (std::size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], job(static_cast<std::int64_t>(i) + 1)) << i;
  for (const char* key : {"id", "url", "dest", "state", "attempts", "error"})
    EXPECT_TRUE(out[2004].contains(key));
  EXPECT_EQ(server.connections(), 1u);  // all pages on one connection
}

TEST_F(FetchctlCli, ListStopsWhenTheCursorDoesNotAdvance) {
  // A daemon bug must not make fetchctl page forever.
  FakeServer server(socket_path(), [](const json&, std::size_t) {
    return Action{{ok_reply("list", {{"jobs", {job(5)}}, {"total", 9}, {"next_after", 5}})}};
  });
  auto r = run({"list"});
  EXPECT_EQ(r.exit_code, 76);
  EXPECT_NE(r.err.find("does not advance"), std::string::npos) << r.err;
  EXPECT_EQ(server.requests().size(), 2u);
}

TEST_F(FetchctlCli, ListJsonOfNoJobsIsAnEmptyArray) {
  FakeServer server(socket_path(), [](const json&, std::size_t) {
    return Action{{ok_reply("list", {{"jobs", json::array()}, {"total", 0}, {"next_after", nullptr}})}};
  });
  auto r = run({"list", "--json", "--state", "failed"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out), json::array());
  EXPECT_EQ(server.request_json()[0], json::parse(R"({"op":"list","state":"failed","limit":10000})"));
}

TEST_F(FetchctlCli, ListLimitStopsPagingAndPrintsAnAlignedTable) {
  FakeServer server(socket_path(), [](const json& request, std::size_t) {
    json jobs = json::array();
    json a = job(9, "failed");
    a["error"] = "HTTP 404";
    a["attempts"] = 1;
    json b = job(12345, "failed");
    b["error"] = "connection refused\x1b[31m";  // a control character must not reach the terminal
    b["bytes"] = 1536;
    b["attempts"] = 4;
    jobs.push_back(a);
    jobs.push_back(b);
    EXPECT_EQ(request["limit"], 2);
    return Action{{ok_reply("list", {{"jobs", jobs}, {"total", 50}, {"next_after", 12345}})}};
  });
  auto r = run({"list", "--state", "failed", "--limit", "2"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(server.requests().size(), 1u);  // the limit is reached: no second page
  EXPECT_EQ(server.request_json()[0], json::parse(R"({"op":"list","state":"failed","limit":2})"));
  EXPECT_EQ(r.out,
            "   ID  STATE   ATTEMPTS    BYTES  DEST    ERROR\n"
            "    9  failed         1  4.0 KiB  f9      HTTP 404\n"
            "12345  failed         4  1.5 KiB  f12345  connection refused\\x1b[31m\n");
  EXPECT_NE(r.err.find("showing 2 of 50 jobs"), std::string::npos) << r.err;
}

// `fetchctl list | head`: the reader goes away after a few lines. That is the end of the output, not an
// error: exit 0 at once (no SIGPIPE death, exit 141 in a shell, and no 74), without asking the daemon for
// more pages.
TEST_F(FetchctlCli, ListIntoAPipeClosedEarlyExits0) {
  for (bool as_json : {false, true}) {
    SCOPED_TRACE(as_json ? "--json" : "table");
    const std::string socket = (dir_ / (as_json ? "json.sock" : "table.sock")).string();
    // An endless job list: every page says more follows.
    FakeServer server(socket, [](const json& request, std::size_t) {
      std::int64_t after = request.value("after", std::int64_t{0});
      json jobs = json::array();
      for (std::int64_t id = after + 1; id <= after + 1000; ++id) jobs.push_back(job(id));
      return Action{
          {ok_reply("list", {{"jobs", jobs}, {"total", 1000000000}, {"next_after", after + 1000}})}};
    });
    std::vector<std::string> args{"--socket", socket, "list"};
    if (as_json) args.push_back("--json");
    Child child(argv(args));
    ASSERT_TRUE(child.wait_for_output(as_json ? "\"id\":1," : "STATE")) << child.out();
    child.close_stdout();
    auto r = child.wait(std::chrono::seconds(30));
    EXPECT_EQ(r.signal, 0) << "killed by signal " << r.signal;
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.err, "");
    EXPECT_LT(server.requests().size(), 1000u) << "stops paging once nobody reads";
  }
}

TEST_F(FetchctlCli, WatchIntoAPipeClosedEarlyExits0) {
  // More events than a pipe holds (64 KiB), sent at once.
  FakeServer server(socket_path(), [](const json&, std::size_t) {
    Action a{{ok_reply("watch", {{"watching", true}})}};
    for (int i = 1; i <= 5000; ++i) {
      json e{{"event", "queued"},
             {"job",
              {{"id", i},
               {"url", "https://example.org/f"},
               {"dest", "f" + std::to_string(i)},
               {"state", "queued"},
               {"attempts", 0},
               {"bytes", 0},
               {"size", nullptr},
               {"error", ""}}}};
      a.send.push_back(e.dump() + "\n");
    }
    return a;
  });
  Child child(argv({"--socket", socket_path(), "watch"}));
  ASSERT_TRUE(child.wait_for_output("queued  1  f1")) << child.out();
  child.close_stdout();
  auto r = child.wait(std::chrono::seconds(30));
  EXPECT_EQ(r.signal, 0) << "killed by signal " << r.signal;
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
}

TEST_F(FetchctlCli, StatusPrintsTheJobTable) {
  FakeServer server(socket_path(), [](const json&, std::size_t) {
    return Action{{ok_reply("status", {{"job", job(42, "running")}})}};
  });
  auto r = run({"status", "42"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(server.request_json()[0], json::parse(R"({"op":"status","id":42})"));
  EXPECT_EQ(r.out,
            "ID  STATE    ATTEMPTS    BYTES  DEST  ERROR\n"
            "42  running         1  4.0 KiB  f42\n");
}

TEST_F(FetchctlCli, StatusPrintsTheJobsOptionsAndEveryAttemptError) {
  FakeServer server(socket_path(), [](const json&, std::size_t) {
    json j = job(43, "failed");
    j["attempts"] = 2;
    j["error"] = "HTTP 503";
    j["options"] = {{"retries", 1}, {"timeout", "30s"}, {"backoff", {{"initial", "2s"}}}};
    j["errors"] = {"HTTP 502\x1b[31m", "HTTP 503"};
    return Action{{ok_reply("status", {{"job", j}})}};
  });
  auto r = run({"status", "43"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "ID  STATE   ATTEMPTS    BYTES  DEST  ERROR\n"
            "43  failed         2  4.0 KiB  f43   HTTP 503\n"
            "options  backoff={\"initial\":\"2s\"}  retries=1  timeout=30s\n"
            "error 1  HTTP 502\\x1b[31m\n"
            "error 2  HTTP 503\n");
}

// `fetchctl submit < urls | head -1`: the printing stops, the submitting does not.
TEST_F(FetchctlCli, SubmitIntoAPipeClosedEarlySubmitsEveryJob) {
  constexpr int kUrls = 12000;
  std::string input;
  for (int i = 0; i < kUrls; ++i) input += "https://example.org/f" + std::to_string(i) + "\n";
  auto stdin_path = dir_.write("urls.txt", input);
  int next_id = 1;
  std::size_t jobs_seen = 0;
  FakeServer server(socket_path(), [&](const json& request, std::size_t) {
    json jobs = json::array();
    for (std::size_t i = 0; i < request["jobs"].size(); ++i)
      jobs.push_back({{"id", next_id++}, {"state", "queued"}, {"existing", false}});
    jobs_seen += request["jobs"].size();
    return Action{{ok_reply("submit", {{"jobs", jobs}})}};
  });
  ChildOptions options;
  options.stdin_path = stdin_path.string();
  Child child(argv({"--socket", socket_path(), "submit"}), options);
  ASSERT_TRUE(child.wait_for_output("1  queued")) << child.out();
  child.close_stdout();
  auto r = child.wait(std::chrono::seconds(30));
  EXPECT_EQ(r.signal, 0) << "killed by signal " << r.signal;
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(jobs_seen, static_cast<std::size_t>(kUrls));
  EXPECT_NE(r.err.find("submitted 12000 of 12000 jobs"), std::string::npos) << r.err;
}

// A done job that kept an existing file (on_exists: skip) says so in the table and in --json.
TEST_F(FetchctlCli, StatusAndListShowASkippedJob) {
  FakeServer server(socket_path(), [](const json& request, std::size_t) {
    json skipped = job(44);
    skipped["bytes"] = 0;
    skipped["skipped"] = true;
    json fetched = job(45);
    fetched["skipped"] = false;
    if (request["op"] == "status") return Action{{ok_reply("status", {{"job", skipped}})}};
    return Action{{ok_reply("list", {{"jobs", {skipped, fetched}}, {"total", 2}, {"next_after", nullptr}})}};
  });
  auto r = run({"status", "44"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "ID  STATE           ATTEMPTS  BYTES  DEST  ERROR\n"
            "44  done (skipped)         1    0 B  f44\n");
  r = run({"list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "ID  STATE           ATTEMPTS    BYTES  DEST  ERROR\n"
            "44  done (skipped)         1      0 B  f44\n"
            "45  done                   1  4.0 KiB  f45\n");
  r = run({"list", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  json out = json::parse(r.out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0]["skipped"], true);
  EXPECT_EQ(out[1]["skipped"], false);
}

TEST_F(FetchctlCli, StatusNotFoundExits1WithTheDaemonsMessage) {
  FakeServer server(socket_path(), [](const json&, std::size_t) {
    return Action{{error_reply("status", "not_found", "no job with id 42")}};
  });
  auto r = run({"status", "42"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "fetchctl: not_found: no job with id 42\n");
  EXPECT_EQ(r.out, "");
}

TEST_F(FetchctlCli, CancelSendsTheIdAndJsonPrintsTheResult) {
  FakeServer server(socket_path(), [](const json&, std::size_t) {
    return Action{{ok_reply("cancel", {{"job", job(5, "cancelled")}})}};
  });
  auto r = run({"cancel", "5", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(server.request_json()[0], json::parse(R"({"op":"cancel","id":5})"));
  EXPECT_EQ(json::parse(r.out)["job"]["state"], "cancelled");
}

TEST_F(FetchctlCli, StatsPrintsOneBlock) {
  FakeServer server(socket_path(), [](const json&, std::size_t) {
    return Action{{ok_reply("stats", {{"strategy", "event-loop"},
                                      {"concurrency", 256},
                                      {"active", 3},
                                      {"queued", 10},
                                      {"done", 7},
                                      {"failed", 1},
                                      {"cancelled", 0},
                                      {"bytes", 3 * 1048576},
                                      {"files_per_s", 1.25},
                                      {"mib_per_s", 0.5},
                                      {"uptime_s", 3725.0},
                                      {"store", "/var/lib/fetchd/jobs.db"}})}};
  });
  auto r = run({"stats"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(server.request_json()[0], json::parse(R"({"op":"stats"})"));
  EXPECT_EQ(r.out,
            "strategy     event-loop\n"
            "concurrency  256\n"
            "active       3\n"
            "queued       10\n"
            "done         7\n"
            "failed       1\n"
            "cancelled    0\n"
            "downloaded   3.0 MiB\n"
            "files/s      1.2\n"
            "MiB/s        0.50\n"
            "uptime       1h02m\n"
            "store        /var/lib/fetchd/jobs.db\n");
}

TEST_F(FetchctlCli, ReloadFailurePrintsEachConfigErrorOnItsOwnLine) {
  FakeServer server(socket_path(), [](const json&, std::size_t) {
    return Action{{error_reply("reload", "reload_failed",
                               "/etc/fetchd/fetchd.yaml:3:3: strategy.concurency: unknown key\n"
                               "/etc/fetchd/fetchd.yaml:7:12: defaults.timeout: bad duration")}};
  });
  auto r = run({"reload"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(server.request_json()[0], json::parse(R"({"op":"reload"})"));
  EXPECT_EQ(r.err,
            "fetchctl: reload_failed: /etc/fetchd/fetchd.yaml:3:3: strategy.concurency: unknown key\n"
            "fetchctl: reload_failed: /etc/fetchd/fetchd.yaml:7:12: defaults.timeout: bad duration\n");
}

TEST_F(FetchctlCli, ReloadSuccess) {
  FakeServer server(socket_path(), [](const json&, std::size_t) {
    return Action{{ok_reply("reload", {{"reloaded", true}, {"jobs_added", 2}})}};
  });
  auto r = run({"reload"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "fetchd reloaded its configuration (2 jobs added)\n");
}

TEST_F(FetchctlCli, SocketFromTheEnvironment) {
  FakeServer server(socket_path(), [](const json&, std::size_t) {
    return Action{{ok_reply("ping", {{"version", "0.1.0"}, {"pid", 4242}})}};
  });
  ChildOptions options;
  options.env = {"FETCHD_SOCKET=" + socket_path()};
  auto r = fetchd::testing::run_child(argv({"ping"}), options);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("fetchd 0.1.0 (pid 4242) on " + socket_path() + ": answered in ", 0), 0u) << r.out;
}

TEST_F(FetchctlCli, TcpEndpoint) {
  FakeServer server([](const json&, std::size_t) {
    return Action{{ok_reply("ping", {{"version", "0.1.0"}, {"pid", 1}})}};
  });
  auto r = fetchd::testing::run_child(
      argv({"--socket", "tcp:127.0.0.1:" + std::to_string(server.port()), "--json", "ping"}));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out), json::parse(R"({"version":"0.1.0","pid":1})"));
}

TEST_F(FetchctlCli, MissingSocketExits69AndNamesThePath) {
  std::string path = (dir_ / "nobody-here.sock").string();
  auto r = fetchd::testing::run_child(argv({"--socket", path, "stats"}));
  EXPECT_EQ(r.exit_code, 69);
  EXPECT_EQ(r.err,
            "fetchctl: cannot connect to " + path + ": No such file or directory (is fetchd running?)\n");
}

TEST_F(FetchctlCli, SocketWithoutListenerExits69) {
  // A socket file left behind by a daemon that is gone: connect() is refused.
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, socket_path().c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ::close(fd);
  auto r = run({"ping"});
  EXPECT_EQ(r.exit_code, 69);
  EXPECT_NE(r.err.find(socket_path() + ": Connection refused"), std::string::npos) << r.err;
}

TEST_F(FetchctlCli, UsageErrorsExit2) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {},
           {"frobnicate"},
           {"status"},
           {"status", "abc"},
           {"status", "0"},
           {"submit", "https://a/1", "https://a/2", "--dest", "x"},
           {"submit", "--sha256", kSha},
           {"submit", "https://a/1", "-H", "no-colon"},
           {"submit", "https://a/1", "-H", "X: 1", "-H", "x: 2"},
           {"submit", "https://a/1", "--size", "12 parsecs"},
           {"list", "--state", "sleeping"},
           {"list", "--limit", "0"},
           {"--timeout", "5x", "ping"},
           {"--socket", "tcp:localhost:80", "ping"},
       }) {
    auto r = fetchd::testing::run_child(argv(args));
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    EXPECT_EQ(r.exit_code, 2) << joined << "\n" << r.err;
    EXPECT_FALSE(r.err.empty()) << joined;
  }
  auto help = fetchd::testing::run_child(argv({"--help"}));
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("submit"), std::string::npos);
}

TEST_F(FetchctlCli, ConnectionClosedInTheMiddleOfAReplyExits69) {
  FakeServer server(socket_path(), [](const json&, std::size_t) {
    return Action{{R"({"ok":true,"op":"stats","result":{"acti)"}, /*close=*/true};
  });
  auto r = run({"stats"});
  EXPECT_EQ(r.exit_code, 69);
  EXPECT_EQ(r.err, "fetchctl: connection to " + socket_path() + " closed in the middle of a reply\n");
  EXPECT_EQ(r.out, "");
}

TEST_F(FetchctlCli, ConnectionClosedBeforeTheReplyExits69) {
  FakeServer server(socket_path(), [](const json&, std::size_t) { return Action{{}, /*close=*/true}; });
  auto r = run({"status", "1"});
  EXPECT_EQ(r.exit_code, 69);
  EXPECT_NE(r.err.find("closed before the reply"), std::string::npos) << r.err;
}

TEST_F(FetchctlCli, NoReplyWithinTheTimeoutExits75) {
  FakeServer server(socket_path(), [](const json&, std::size_t) { return Action{}; });
  auto r = run({"--timeout", "300ms", "ping"});
  EXPECT_EQ(r.exit_code, 75);
  EXPECT_EQ(r.err, "fetchctl: no reply from fetchd on " + socket_path() +
                       " within 300ms (--timeout sets the limit)\n");
}

TEST_F(FetchctlCli, MalformedReplyExits76) {
  FakeServer server(socket_path(), [](const json&, std::size_t) { return Action{{"this is not json\n"}}; });
  auto r = run({"ping"});
  EXPECT_EQ(r.exit_code, 76);
  EXPECT_NE(r.err.find("not a JSON object"), std::string::npos) << r.err;
}

json watch_event(const std::string& name, std::int64_t id, const std::string& state, std::int64_t bytes) {
  return {{"event", name},
          {"job",
           {{"id", id},
            {"url", "https://example.org/x"},
            {"dest", "big/file.iso"},
            {"state", state},
            {"attempts", 1},
            {"bytes", bytes},
            {"size", 4194304},
            {"error", ""}}}};
}

std::vector<std::string> watch_stream() {
  return {ok_reply("watch", {{"watching", true}}), watch_event("started", 8, "running", 0).dump() + "\n",
          watch_event("progress", 8, "running", 1048576).dump() + "\n",
          json{{"event", "stats"},
               {"stats",
                {{"active", 1},
                 {"queued", 2},
                 {"done", 3},
                 {"failed", 0},
                 {"cancelled", 0},
                 {"files_per_s", 0.5},
                 {"mib_per_s", 1.0}}}}
                  .dump() +
              "\n"};
}

TEST_F(FetchctlCli, WatchWritesOneLinePerEventToAPipeAndCtrlCExits0) {
  FakeServer server(socket_path(), [](const json&, std::size_t) { return Action{watch_stream()}; });
  Child child(argv({"--socket", socket_path(), "watch"}));
  ASSERT_TRUE(child.wait_for_output("stats active=1")) << child.out();
  child.kill(SIGINT);
  auto r = child.wait();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(server.request_json()[0], json::parse(R"({"op":"watch"})"));
  EXPECT_EQ(r.out,
            "started  8  big/file.iso\n"
            "progress  8  big/file.iso  1.0 MiB of 4.0 MiB (25%)\n"
            "stats active=1 queued=2 done=3 failed=0 cancelled=0 files/s=0.5 MiB/s=1.00\n");
  EXPECT_EQ(r.err, "");
}

TEST_F(FetchctlCli, WatchJsonPassesEventsThrough) {
  FakeServer server(socket_path(), [](const json&, std::size_t) { return Action{watch_stream()}; });
  Child child(argv({"--socket", socket_path(), "watch", "--json"}));
  ASSERT_TRUE(child.wait_for_output("\"stats\"")) << child.out();
  child.kill(SIGINT);
  auto r = child.wait();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(json::parse(lines[1]), watch_event("progress", 8, "running", 1048576));
}

TEST_F(FetchctlCli, WatchEndsWith69WhenTheDaemonGoesAway) {
  FakeServer server(socket_path(), [](const json&, std::size_t) {
    return Action{watch_stream(), /*close=*/true};
  });
  auto r = run({"watch"});
  EXPECT_EQ(r.exit_code, 69);
  EXPECT_EQ(lines_of(r.out).size(), 3u);
  EXPECT_EQ(r.err, "fetchctl: fetchd closed the watch connection on " + socket_path() + "\n");
}

TEST_F(FetchctlCli, WatchOnATerminalDrawsBarsAndRestoresTheCursor) {
  FakeServer server(socket_path(), [](const json&, std::size_t) { return Action{watch_stream()}; });
  ChildOptions options;
  options.stdout_tty = true;
  options.env = {"LANG=C.UTF-8", "LC_ALL=", "LC_CTYPE="};
  Child child(argv({"--socket", socket_path(), "watch"}), options);
  // The totals line comes from the stats event; the bar from the progress event (25% of 20 cells = 5 full).
  ASSERT_TRUE(child.wait_for_output("active 1  queued 2  done 3")) << child.out();
  child.kill(SIGINT);
  auto r = child.wait();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("\x1b[?25l", 0), 0u) << "cursor hidden first";
  EXPECT_NE(r.out.find("big/file.iso"), std::string::npos);
  EXPECT_NE(r.out.find("[█████               ]   25%"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1.0 MiB"), std::string::npos);
  EXPECT_EQ(r.out.substr(r.out.size() - 6), "\x1b[?25h") << "cursor shown again last";
}

}  // namespace
