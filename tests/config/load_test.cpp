// SPDX-License-Identifier: Apache-2.0
// Configs that load: defaults, every key, urls_file expansion, relative paths, header merging.
#include <gtest/gtest.h>

#include <string>

#include "config_test_util.hpp"
#include "fetchd/core/version.hpp"

namespace fetchd::config {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

TEST_F(ConfigTest, EmptyFileGivesTheDefaults) {
  for (const char* text : {"", "\n# only a comment\n", "---\n", "~\n"}) {
    Config c = load(text);
    EXPECT_EQ(c.strategy.kind, StrategyKind::kEventLoop);
    EXPECT_EQ(c.strategy.concurrency, 256);
    EXPECT_EQ(c.strategy.workers, 0);
    EXPECT_EQ(c.strategy.inner, InnerKind::kEventLoop);
    EXPECT_EQ(c.strategy.worker_exe, "/proc/self/exe");
    EXPECT_EQ(c.output.dir, dir_.path() / "downloads");
    EXPECT_EQ(c.output.on_exists, core::OnExists::kSkip);
    EXPECT_TRUE(c.output.fsync);
    EXPECT_EQ(c.defaults.timeout, std::chrono::hours(24));
    EXPECT_EQ(c.defaults.connect_timeout, std::chrono::seconds(10));
    EXPECT_EQ(c.defaults.low_speed_limit, 1024u);
    EXPECT_EQ(c.defaults.low_speed_time, std::chrono::seconds(30));
    EXPECT_EQ(c.defaults.max_redirects, 10);
    EXPECT_EQ(c.defaults.user_agent, std::string("fetchd/") + core::kVersion);
    EXPECT_TRUE(c.defaults.headers.empty());
    EXPECT_EQ(c.defaults.retry.retries, 3);
    EXPECT_EQ(c.log.level, "info");
    EXPECT_EQ(c.log.interval, std::chrono::seconds(5));
    EXPECT_EQ(c.control.socket, "/run/fetchd/fetchd.sock");
    EXPECT_EQ(c.control.mode, 0660u);
    EXPECT_EQ(c.state.dir, "/var/lib/fetchd");
    EXPECT_EQ(c.state.synchronous, Synchronous::kFull);
    EXPECT_EQ(c.shutdown.grace, std::chrono::seconds(30));
    EXPECT_TRUE(c.jobs.empty());
    EXPECT_EQ(c.source, dir_.path() / "fetchd.yaml");
  }
}

TEST_F(ConfigTest, ProcessPoolInnerStrategy) {
  Config c = load("strategy: {kind: process-pool, concurrency: 8, workers: 2, inner: event-loop}\n");
  EXPECT_EQ(c.strategy.inner, InnerKind::kEventLoop);
  c = load("strategy: {kind: process-pool, concurrency: 8, workers: 8, inner: blocking}\n");
  EXPECT_EQ(c.strategy.kind, StrategyKind::kProcessPool);
  EXPECT_EQ(c.strategy.inner, InnerKind::kBlocking);
  EXPECT_EQ(c.strategy.workers, 8);
  // Other kinds ignore workers and inner, so their combination is not checked.
  c = load("strategy: {kind: event-loop, concurrency: 8, workers: 20, inner: blocking}\n");
  EXPECT_EQ(c.strategy.inner, InnerKind::kBlocking);
  // workers: 0 (one per CPU) cannot be checked against concurrency here: the strategy clamps it.
  c = load("strategy: {kind: process-pool, concurrency: 1}\n");
  EXPECT_EQ(c.strategy.workers, 0);
  EXPECT_EQ(to_string(InnerKind::kBlocking), "blocking");
  EXPECT_EQ(to_string(InnerKind::kEventLoop), "event-loop");
}

TEST_F(ConfigTest, EmptySectionsAreFine) {
  Config c = load("strategy:\noutput: {}\ndefaults:\n  headers:\n  low_speed: {}\nlog:\njobs:\n");
  EXPECT_EQ(c.strategy.concurrency, 256);
  EXPECT_TRUE(c.jobs.empty());
}

TEST_F(ConfigTest, EveryKey) {
  dir_.write("lists/more.txt", "http://127.0.0.1:8080/bytes/1\n");
  Config c = load(R"yaml(
strategy: { kind: thread-pool, concurrency: 32, workers: 4 }
output:   { dir: out/files, on_exists: overwrite, fsync: false }
defaults:
  timeout: 1h30m
  connect_timeout: 250ms
  low_speed: { limit: 64KiB, time: 2m }
  retries: 0
  max_redirects: 0
  user_agent: "agent/1.0 (test)"
  headers: { X-Example: "1", Accept: "*/*" }
log: { level: debug, interval: 1.5s }
control: { socket: run/ctl.sock, mode: "0640", group: staff, tcp: "127.0.0.1:7070", max_connections: 50 }
state: { dir: state, synchronous: normal, history: { max_age: 2d, max_jobs: 10 }, url: "postgresql:///fetchd", node: n1, lease: 45s }
shutdown: { grace: 90s }
jobs:
  - url: http://127.0.0.1:8080/a.bin
    dest: sub/a.bin
    sha256: "ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789"
    size: 4KiB
    headers: { Authorization: "Bearer t0ken" }
  - urls_file: lists/more.txt
)yaml");
  EXPECT_EQ(c.strategy.kind, StrategyKind::kThreadPool);
  EXPECT_EQ(c.strategy.concurrency, 32);
  EXPECT_EQ(c.strategy.workers, 4);
  EXPECT_EQ(c.output.dir, dir_.path() / "out/files");
  EXPECT_EQ(c.output.on_exists, core::OnExists::kOverwrite);
  EXPECT_FALSE(c.output.fsync);
  EXPECT_EQ(c.defaults.timeout, milliseconds(5'400'000));
  EXPECT_EQ(c.defaults.connect_timeout, milliseconds(250));
  EXPECT_EQ(c.defaults.low_speed_limit, 65536u);
  EXPECT_EQ(c.defaults.low_speed_time, milliseconds(120'000));
  EXPECT_EQ(c.defaults.retry.retries, 0);
  EXPECT_EQ(c.defaults.max_redirects, 0);
  EXPECT_EQ(c.defaults.user_agent, "agent/1.0 (test)");
  EXPECT_EQ(c.defaults.headers, (core::Headers{{"X-Example", "1"}, {"Accept", "*/*"}}));
  EXPECT_EQ(c.log.level, "debug");
  EXPECT_EQ(c.log.interval, milliseconds(1500));
  ASSERT_EQ(c.jobs.size(), 2u);
  EXPECT_EQ(c.control.socket, dir_.path() / "run/ctl.sock");
  EXPECT_EQ(c.control.mode, 0640u);
  EXPECT_EQ(c.control.group, "staff");
  EXPECT_EQ(c.control.tcp, "127.0.0.1:7070");
  EXPECT_EQ(c.control.max_connections, 50);
  EXPECT_EQ(c.state.dir, dir_.path() / "state");
  EXPECT_EQ(c.state.synchronous, Synchronous::kNormal);
  EXPECT_EQ(c.state.history_max_age, std::chrono::hours(48));
  EXPECT_EQ(c.state.history_max_jobs, 10u);
  EXPECT_EQ(c.state.url, "postgresql:///fetchd");
  EXPECT_EQ(c.state.node, "n1");
  EXPECT_EQ(c.state.lease, milliseconds(45'000));
  EXPECT_EQ(c.shutdown.grace, milliseconds(90'000));
  EXPECT_EQ(c.jobs[0].url, "http://127.0.0.1:8080/a.bin");
  EXPECT_EQ(c.jobs[0].dest, "sub/a.bin");
  EXPECT_EQ(c.jobs[0].sha256, "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
  EXPECT_EQ(c.jobs[0].size, 4096u);
  EXPECT_EQ(c.jobs[0].headers, (core::Headers{{"Authorization", "Bearer t0ken"}}));
  EXPECT_EQ(c.jobs[0].origin, (dir_.path() / "fetchd.yaml").string() + ":17");
  EXPECT_EQ(c.dest_path(c.jobs[0]), dir_.path() / "out/files/sub/a.bin");
  EXPECT_EQ(c.jobs[1].dest, "1");
  EXPECT_FALSE(c.jobs[1].sha256);
  EXPECT_FALSE(c.jobs[1].size);
}

TEST_F(ConfigTest, AllStrategyKindsAndLevels) {
  for (auto kind : {StrategyKind::kEventLoop, StrategyKind::kCurlMulti, StrategyKind::kThreadPool,
                    StrategyKind::kProcessPool}) {
    Config c = load("strategy: {kind: " + std::string(to_string(kind)) + "}\n");
    EXPECT_EQ(c.strategy.kind, kind);
    EXPECT_EQ(strategy_kind_from_string(to_string(kind)), kind);
  }
  EXPECT_FALSE(strategy_kind_from_string("fast"));
  for (const char* level : {"trace", "debug", "info", "warn", "error", "off"}) {
    EXPECT_EQ(load(std::string("log: {level: ") + level + "}\n").log.level, level);
  }
}

TEST_F(ConfigTest, DefaultDestIsTheSanitisedUrlName) {
  Config c = load(R"yaml(
jobs:
  - url: http://127.0.0.1:8080/bytes/4096?seed=1
  - url: http://127.0.0.1:8080/
  - url: "http://127.0.0.1:8080/..%2F..%2Fetc%2Fpasswd"
  - url: https://user:secret@example.com/a%20b.txt
)yaml");
  ASSERT_EQ(c.jobs.size(), 4u);
  EXPECT_EQ(c.jobs[0].dest, "4096");
  EXPECT_EQ(c.jobs[1].dest, "index.html");
  EXPECT_EQ(c.jobs[2].dest, "passwd");
  EXPECT_EQ(c.jobs[3].dest, "a b.txt");
}

TEST_F(ConfigTest, UrlsFileWithCommentsAndBlankLines) {
  dir_.write("lists/more.txt",
             "# mirror list\n"
             "\n"
             "http://127.0.0.1:8080/bytes/1\n"
             "   http://127.0.0.1:8080/bytes/2   \n"
             "\t# indented comment\n"
             "http://127.0.0.1:8080/bytes/3  # trailing note\n"
             "http://127.0.0.1:8080/bytes/4\r\n"
             "   \n"
             "http://127.0.0.1:8080/bytes/5");  // no final newline
  Config c = load(
      "jobs:\n  - url: http://127.0.0.1:8080/first\n  - urls_file: lists/more.txt\n"
      "  - url: http://127.0.0.1:8080/last\n");
  ASSERT_EQ(c.jobs.size(), 7u);
  EXPECT_EQ(c.jobs[0].dest, "first");
  for (int i = 1; i <= 5; ++i) {
    EXPECT_EQ(c.jobs[i].url, "http://127.0.0.1:8080/bytes/" + std::to_string(i));
    EXPECT_EQ(c.jobs[i].dest, std::to_string(i));
  }
  EXPECT_EQ(c.jobs[6].dest, "last");
  auto list = (dir_.path() / "lists/more.txt").string();
  EXPECT_EQ(c.jobs[1].origin, list + ":3");
  EXPECT_EQ(c.jobs[2].origin, list + ":4");
  EXPECT_EQ(c.jobs[5].origin, list + ":9");
}

TEST_F(ConfigTest, UrlsFileWithByteOrderMarkAndAbsolutePath) {
  auto list = dir_.write("elsewhere/list.txt", "\xef\xbb\xbfhttp://127.0.0.1:8080/x.bin\n");
  Config c = load("jobs:\n  - urls_file: " + list.string() + "\n");
  ASSERT_EQ(c.jobs.size(), 1u);
  EXPECT_EQ(c.jobs[0].url, "http://127.0.0.1:8080/x.bin");
  EXPECT_EQ(c.jobs[0].origin, list.string() + ":1");
}

TEST_F(ConfigTest, RelativePathsResolveAgainstTheConfigFolder) {
  // The test's working directory is the build dir, never the config's folder.
  ASSERT_NE(fs::current_path(), dir_.path() / "conf");
  dir_.write("conf/lists/urls.txt", "http://127.0.0.1:8080/one\n");
  Config c = load("output: {dir: ../data/./dl/}\njobs:\n  - urls_file: lists/urls.txt\n", "conf/fetchd.yaml");
  EXPECT_EQ(c.output.dir, dir_.path() / "data/dl");
  EXPECT_TRUE(c.output.dir.is_absolute());
  ASSERT_EQ(c.jobs.size(), 1u);
  EXPECT_EQ(c.source, dir_.path() / "conf/fetchd.yaml");
}

TEST_F(ConfigTest, AbsoluteOutputDirIsKept) {
  Config c = load("output: {dir: " + (dir_.path() / "abs").string() + "}\n");
  EXPECT_EQ(c.output.dir, dir_.path() / "abs");
}

TEST_F(ConfigTest, LoadConfigTextUsesNameAndBaseDir) {
  dir_.write("base/list.txt", "http://127.0.0.1:8080/z\n");
  Config c = load_config_text("jobs: [{urls_file: list.txt}]\n", "inline.yaml", dir_.path() / "base");
  ASSERT_EQ(c.jobs.size(), 1u);
  EXPECT_EQ(c.output.dir, dir_.path() / "base/downloads");
  EXPECT_EQ(c.source, dir_.path() / "base/inline.yaml");
  try {
    load_config_text("strategy: {kind: nope}\n", "inline.yaml", dir_.path());
    FAIL() << "expected an error";
  } catch (const ConfigErrors& e) {
    ASSERT_EQ(e.errors().size(), 1u);
    EXPECT_EQ(e.errors()[0].file, "inline.yaml");
  }
}

TEST_F(ConfigTest, QuotedNumbersAndCaseOfBooleans) {
  Config c = load(
      "strategy: {concurrency: \"12\"}\noutput: {fsync: False}\njobs:\n"
      "  - {url: 'http://127.0.0.1:8080/a', size: 1024}\n");
  EXPECT_EQ(c.strategy.concurrency, 12);
  EXPECT_FALSE(c.output.fsync);
  EXPECT_EQ(c.jobs[0].size, 1024u);
}

TEST_F(ConfigTest, AnchorsAndAliasesShareValues) {
  Config c = load(R"yaml(
defaults: { headers: &auth { Authorization: "Bearer x" } }
jobs:
  - { url: "http://127.0.0.1:8080/a", headers: *auth }
  - { url: "http://127.0.0.1:8080/b", headers: *auth }
)yaml");
  ASSERT_EQ(c.jobs.size(), 2u);
  EXPECT_EQ(c.jobs[1].headers, (core::Headers{{"Authorization", "Bearer x"}}));
}

TEST_F(ConfigTest, EffectiveOptionsMergeJobHeadersOverDefaults) {
  Config c = load(R"yaml(
defaults:
  timeout: 10s
  headers: { Authorization: "Bearer default", X-Keep: "k" }
jobs:
  - url: http://127.0.0.1:8080/a
    headers: { authorization: "Bearer job", X-New: "n" }
  - url: http://127.0.0.1:8080/b
)yaml");
  auto a = c.effective_options(c.jobs[0]);
  EXPECT_EQ(a.timeout, std::chrono::seconds(10));
  EXPECT_EQ(a.headers, (core::Headers{{"authorization", "Bearer job"}, {"X-Keep", "k"}, {"X-New", "n"}}));
  auto b = c.effective_options(c.jobs[1]);
  EXPECT_EQ(b.headers, c.defaults.headers);
}

TEST_F(ConfigTest, SymlinkInsideTheOutputDirIsFine) {
  fs::create_directories(dir_.path() / "downloads/real");
  fs::create_directory_symlink("real", dir_.path() / "downloads/alias");
  Config c = load("jobs:\n  - {url: 'http://127.0.0.1:8080/a', dest: alias/a.bin}\n");
  EXPECT_EQ(c.jobs[0].dest, "alias/a.bin");
}

TEST(ConfigErrorFormat, FileLineColumnKeyMessage) {
  EXPECT_EQ((ConfigError{"a.yaml", 3, 7, "strategy.kind", "bad"}).to_string(),
            "a.yaml:3:7: strategy.kind: bad");
  EXPECT_EQ((ConfigError{"a.yaml", 3, 0, "", "bad"}).to_string(), "a.yaml:3: bad");
  EXPECT_EQ((ConfigError{"a.yaml", 0, 0, "", "cannot read"}).to_string(), "a.yaml: cannot read");
  ConfigErrors errors({{"a", 1, 1, "k", "one"}, {"a", 2, 1, "k", "two"}});
  EXPECT_STREQ(errors.what(), "a:1:1: k: one\na:2:1: k: two");
  EXPECT_EQ(errors.errors().size(), 2u);
}

}  // namespace
}  // namespace fetchd::config

namespace fetchd::config {
namespace {

TEST_F(ConfigTest, ATimeoutOfZeroMeansNone) {
  Config c = load("defaults:\n  timeout: 0\njobs:\n  - url: http://127.0.0.1:8080/a\n    timeout: 0s\n");
  EXPECT_EQ(c.defaults.timeout, std::chrono::milliseconds(0));
  ASSERT_EQ(c.jobs.size(), 1u);
  EXPECT_EQ(c.effective_options(c.jobs[0]).timeout, std::chrono::milliseconds(0));
}

}  // namespace
}  // namespace fetchd::config
