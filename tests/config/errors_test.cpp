// SPDX-License-Identifier: Apache-2.0
// Configs that must be rejected. Every case checks the dotted key and the line (and that a column is given);
// several check that all errors are reported at once.
#include <gtest/gtest.h>

#include <string>

#include "config_test_util.hpp"

namespace fetchd::config {
namespace {

namespace fs = std::filesystem;

const std::string kHash(64, 'a');

TEST_F(ConfigTest, UnknownTopLevelKeySuggestsTheClosest) {
  EXPECT_TRUE(rejected_with("jobs: []\nstratgy: {}\n", "stratgy", 2, "did you mean 'strategy'?"));
  EXPECT_TRUE(
      rejected_with("verbose: true\n", "verbose", 1,
                    "allowed: strategy, output, defaults, limits, tls, security, log, control, state, shutdown, jobs"));
}

TEST_F(ConfigTest, UnknownNestedKeySuggestsTheClosest) {
  auto errs = errors("strategy:\n  kind: event-loop\n  concurency: 5\n");
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_EQ(errs[0].to_string(), (dir_.path() / "fetchd.yaml").string() +
                                     ":3:3: strategy.concurency: unknown key 'concurency' in strategy; "
                                     "did you mean 'concurrency'?");
  EXPECT_TRUE(rejected_with("defaults:\n  low_speed:\n    limt: 1KiB\n", "defaults.low_speed.limt", 3,
                            "did you mean 'limit'?"));
  EXPECT_TRUE(rejected_with("jobs:\n  - url: http://127.0.0.1/a\n    sha: x\n", "jobs[0].sha", 3,
                            "unknown key 'sha'"));
}

TEST_F(ConfigTest, DaemonSectionsRejectBadValues) {
  EXPECT_TRUE(rejected_with("control:\n  mode: \"0999\"\n", "control.mode", 2, "expected an octal mode"));
  EXPECT_TRUE(rejected_with("control:\n  mode: \"01777\"\n", "control.mode", 2, "expected an octal mode"));
  EXPECT_TRUE(rejected_with("control:\n  tcp: \"0.0.0.0:7070\"\n", "control.tcp", 2, "loopback only"));
  EXPECT_TRUE(rejected_with("control:\n  tcp: \"127.0.0.1:99999\"\n", "control.tcp", 2, "loopback only"));
  EXPECT_TRUE(rejected_with("control:\n  socket: /" + std::string(120, 's') + "\n", "control.socket", 2,
                            "at most 107"));
  EXPECT_TRUE(rejected_with("control:\n  max_connections: 0\n", "control.max_connections", 2, "at least 1"));
  EXPECT_TRUE(rejected_with("state:\n  synchronous: off\n", "state.synchronous", 2, "expected one of: full"));
  EXPECT_TRUE(rejected_with("state:\n  history:\n    max_age: soon\n", "state.history.max_age", 3, "soon"));
  EXPECT_TRUE(rejected_with("state:\n  histroy: {}\n", "state.histroy", 2, "did you mean 'history'?"));
  EXPECT_TRUE(rejected_with("state:\n  url: mysql://db/x\n", "state.url", 2, "starting with postgresql://"));
  EXPECT_TRUE(rejected_with("state:\n  lease: 1s\n", "state.lease", 2, "at least 3s"));
  EXPECT_TRUE(rejected_with("state:\n  node: \"a b\"\n", "state.node", 2, "A-Z a-z 0-9"));
  EXPECT_TRUE(rejected_with("shutdown:\n  grace: -1s\n", "shutdown.grace", 2, ""));
}

TEST_F(ConfigTest, ConcurrencyMustBePositive) {
  EXPECT_TRUE(rejected_with("strategy:\n  concurrency: 0\n", "strategy.concurrency", 2, "at least 1, got 0"));
  EXPECT_TRUE(rejected_with("strategy:\n  concurrency: -4\n", "strategy.concurrency", 2, "at least 1"));
}

TEST_F(ConfigTest, EventLoopThreads) {
  EXPECT_EQ(load("strategy: {threads: 3}\n").strategy.threads, 3);
  EXPECT_EQ(load("strategy: {threads: auto}\n").strategy.threads, 0);
  EXPECT_EQ(load("strategy: {threads: 0}\n").strategy.threads, 0);
  EXPECT_EQ(load("").strategy.threads, 1);
  EXPECT_TRUE(rejected_with("strategy:\n  threads: -1\n", "strategy.threads", 2, "must not be negative"));
  EXPECT_TRUE(rejected_with("strategy:\n  threads: many\n", "strategy.threads", 2, "expected an integer"));
}

TEST_F(ConfigTest, IntegersMustBeIntegers) {
  EXPECT_TRUE(rejected_with("strategy:\n  concurrency: abc\n", "strategy.concurrency", 2,
                            "expected an integer, got 'abc'"));
  EXPECT_TRUE(
      rejected_with("strategy:\n  concurrency: 2.5\n", "strategy.concurrency", 2, "expected an integer"));
  EXPECT_TRUE(
      rejected_with("strategy:\n  concurrency: 99999999999\n", "strategy.concurrency", 2, "out of range"));
}

TEST_F(ConfigTest, MapWhereAScalarBelongs) {
  EXPECT_TRUE(rejected_with("strategy:\n  concurrency: {a: 1}\n", "strategy.concurrency", 2,
                            "expected an integer, got a map"));
  EXPECT_TRUE(rejected_with("log:\n  level: [info]\n", "log.level", 2, "got a list"));
}

TEST_F(ConfigTest, ScalarWhereAMapBelongs) {
  EXPECT_TRUE(rejected_with("jobs: []\nstrategy: 5\n", "strategy", 2, "expected a map, got the value '5'"));
  EXPECT_TRUE(rejected_with("- a\n- b\n", "", 1, "expected a map, got a list"));
}

TEST_F(ConfigTest, MissingValue) {
  EXPECT_TRUE(
      rejected_with("strategy:\n  workers:\n", "strategy.workers", 2, "missing value; expected an integer"));
}

TEST_F(ConfigTest, NegativeCounts) {
  EXPECT_TRUE(
      rejected_with("strategy:\n  workers: -1\n", "strategy.workers", 2, "must not be negative, got -1"));
  EXPECT_TRUE(rejected_with("defaults:\n  retries: -1\n", "defaults.retries", 2, "must not be negative"));
  EXPECT_TRUE(
      rejected_with("defaults:\n  max_redirects: -3\n", "defaults.max_redirects", 2, "must not be negative"));
}

TEST_F(ConfigTest, UnknownEnumValuesListTheAllowedOnes) {
  EXPECT_TRUE(rejected_with("strategy:\n  kind: fast\n", "strategy.kind", 2,
                            "expected one of: event-loop, curl-multi, thread-pool, process-pool"));
  EXPECT_TRUE(
      rejected_with("strategy:\n  kind: threadpool\n", "strategy.kind", 2, "did you mean 'thread-pool'?"));
  EXPECT_TRUE(rejected_with("output:\n  on_exists: replace\n", "output.on_exists", 2,
                            "unknown on_exists policy 'replace'; expected one of: skip, overwrite, fail"));
  EXPECT_TRUE(rejected_with("log:\n  level: verbose\n", "log.level", 2,
                            "expected one of: trace, debug, info, warn, error, off"));
}

TEST_F(ConfigTest, ProcessPoolInnerIsChecked) {
  EXPECT_TRUE(rejected_with("strategy:\n  inner: async\n", "strategy.inner", 2,
                            "unknown inner strategy 'async'; expected one of: event-loop, blocking"));
  EXPECT_TRUE(
      rejected_with("strategy:\n  inner: blockng\n", "strategy.inner", 2, "did you mean 'blocking'?"));
  // blocking: one transfer per worker. The error points at inner, the key that asks for it.
  EXPECT_TRUE(
      rejected_with("strategy:\n  kind: process-pool\n  concurrency: 8\n  workers: 4\n  inner: blocking\n",
                    "strategy.inner", 5, "workers must equal concurrency; set workers: 8 (got 4)"));
  EXPECT_TRUE(rejected_with("strategy:\n  kind: process-pool\n  inner: blocking\n  concurrency: 16\n",
                            "strategy.inner", 3, "set workers: 16 (got 0, which means one per CPU)"));
  // More workers than transfers: refused, not clamped.
  EXPECT_TRUE(rejected_with("strategy:\n  kind: process-pool\n  workers: 9\n  concurrency: 4\n",
                            "strategy.workers", 3,
                            "9 workers would leave some without a transfer: at most "
                            "concurrency (4)"));
  // One error at a time: a bad value is reported, not the combination it would make.
  auto errs = errors("strategy:\n  kind: process-pool\n  workers: -1\n  inner: blocking\n");
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_EQ(errs[0].key, "strategy.workers");
}

TEST_F(ConfigTest, BooleansAreTrueOrFalse) {
  EXPECT_TRUE(
      rejected_with("output:\n  fsync: yes\n", "output.fsync", 2, "expected true or false, got 'yes'"));
}

TEST_F(ConfigTest, MalformedDurationsCarryTheParserMessage) {
  EXPECT_TRUE(rejected_with("defaults:\n  timeout: 5x\n", "defaults.timeout", 2, "unknown unit 'x'"));
  EXPECT_TRUE(
      rejected_with("defaults:\n  connect_timeout: soon\n", "defaults.connect_timeout", 2, "malformed"));
  EXPECT_TRUE(rejected_with("defaults:\n  connect_timeout: 0s\n", "defaults.connect_timeout", 2,
                            "must be longer than 0"));
  EXPECT_TRUE(rejected_with("defaults:\n  timeout: -1s\n", "defaults.timeout", 2, ""));
  EXPECT_TRUE(rejected_with("log:\n  interval: -5s\n", "log.interval", 2, "negative"));
  EXPECT_TRUE(rejected_with("defaults:\n  low_speed: {time: 1500ms}\n", "defaults.low_speed.time", 2,
                            "whole number of seconds"));
}

TEST_F(ConfigTest, MalformedSizesCarryTheParserMessage) {
  EXPECT_TRUE(rejected_with("defaults:\n  low_speed:\n    limit: 1XB\n", "defaults.low_speed.limit", 3,
                            "unknown unit"));
  EXPECT_TRUE(rejected_with("jobs:\n  - url: http://127.0.0.1/a\n    size: 12 apples\n", "jobs[0].size", 3,
                            "size '12 apples' has unknown unit"));
  EXPECT_TRUE(
      rejected_with("jobs:\n  - url: http://127.0.0.1/a\n    size: -1\n", "jobs[0].size", 3, "negative"));
}

TEST_F(ConfigTest, Sha256MustBe64Hex) {
  EXPECT_TRUE(rejected_with("jobs:\n  - url: http://127.0.0.1/a\n    sha256: abc\n", "jobs[0].sha256", 3,
                            "expected 64 hex digits, got 'abc' (3 characters)"));
  EXPECT_TRUE(rejected_with("jobs:\n  - url: http://127.0.0.1/a\n    sha256: " + std::string(64, 'g') + "\n",
                            "jobs[0].sha256", 3, "64 hex digits"));
}

TEST_F(ConfigTest, OnlyHttpAndHttpsUrls) {
  std::string text =
      "jobs:\n"
      "  - url: file:///etc/passwd\n"
      "  - url: ftp://127.0.0.1/a\n"
      "  - url: gopher://127.0.0.1/a\n"
      "  - url: HTTPS://127.0.0.1/ok\n";
  auto errs = errors(text);
  EXPECT_EQ(errs.size(), 3u);
  EXPECT_TRUE(has_error(errs, "jobs[0].url", 2, "scheme 'file' is not allowed"));
  EXPECT_TRUE(has_error(errs, "jobs[1].url", 3, "scheme 'ftp' is not allowed"));
  EXPECT_TRUE(has_error(errs, "jobs[2].url", 4, "scheme 'gopher' is not allowed"));
}

TEST_F(ConfigTest, UrlsCurlRejects) {
  std::string text =
      "jobs:\n"
      "  - url: http://\n"
      "  - url: example.com/a.bin\n"
      "  - url: \"http://127.0.0.1/a b\"\n"
      "  - url: \"\"\n"
      "  - url: \"http://[::1/x\"\n";
  auto errs = errors(text);
  EXPECT_EQ(errs.size(), 5u);
  EXPECT_TRUE(has_error(errs, "jobs[0].url", 2, "invalid URL"));
  EXPECT_TRUE(has_error(errs, "jobs[1].url", 3, "no scheme"));
  EXPECT_TRUE(has_error(errs, "jobs[2].url", 4, "space"));
  EXPECT_TRUE(has_error(errs, "jobs[3].url", 5, "empty"));
  EXPECT_TRUE(has_error(errs, "jobs[4].url", 6, "invalid URL"));
}

TEST_F(ConfigTest, UserinfoIsAllowedButNeverPrinted) {
  std::string text =
      "jobs:\n"
      "  - url: http://alice:s3cret@127.0.0.1/a.bin\n"
      "  - url: http://bob:hunter2@127.0.0.1/x/a.bin\n"
      "  - url: ftp://carol:pa55@127.0.0.1/b\n";
  auto errs = errors(text);
  ASSERT_EQ(errs.size(), 2u);
  for (const auto& e : errs) {
    for (const char* secret : {"s3cret", "hunter2", "pa55", "alice", "bob", "carol"}) {
      EXPECT_EQ(e.to_string().find(secret), std::string::npos) << e.to_string();
    }
  }
}

TEST_F(ConfigTest, DestinationsThatEscape) {
  std::string text =
      "jobs:\n"
      "  - {url: 'http://127.0.0.1/a', dest: ../outside.bin}\n"
      "  - {url: 'http://127.0.0.1/b', dest: /etc/passwd}\n"
      "  - {url: 'http://127.0.0.1/c', dest: 'sub/../../x'}\n"
      "  - {url: 'http://127.0.0.1/d', dest: 'sub/'}\n"
      "  - {url: 'http://127.0.0.1/e', dest: ''}\n";
  auto errs = errors(text);
  EXPECT_EQ(errs.size(), 5u);
  EXPECT_TRUE(has_error(errs, "jobs[0].dest", 2, "'..'"));
  EXPECT_TRUE(has_error(errs, "jobs[1].dest", 3, "absolute"));
  EXPECT_TRUE(has_error(errs, "jobs[2].dest", 4, "'..'"));
  EXPECT_TRUE(has_error(errs, "jobs[3].dest", 5, "ends with '/'"));
  EXPECT_TRUE(has_error(errs, "jobs[4].dest", 6, "empty"));
}

TEST_F(ConfigTest, DestinationThroughASymlinkOutOfTheOutputDir) {
  fs::create_directories(dir_.path() / "downloads");
  fs::create_directories(dir_.path() / "canary");
  fs::create_directory_symlink(dir_.path() / "canary", dir_.path() / "downloads/link");
  std::string text =
      "jobs:\n"
      "  - url: http://127.0.0.1/ok.bin\n"
      "  - url: http://127.0.0.1/a.bin\n"
      "    dest: link/a.bin\n";
  EXPECT_TRUE(rejected_with(text, "jobs[1].dest", 4, "symbolic link"));
  EXPECT_TRUE(fs::is_empty(dir_.path() / "canary"));
}

TEST_F(ConfigTest, DuplicateDestinationsNameBothPlaces) {
  std::string text =
      "jobs:\n"
      "  - url: http://127.0.0.1/a/data.bin\n"
      "  - url: http://127.0.0.1/b/other.bin\n"
      "  - url: http://127.0.0.1/c/x\n"
      "    dest: data.bin\n";
  auto errs = errors(text);
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_TRUE(has_error(errs, "jobs[2].dest", 5, "destination 'data.bin' is also used by jobs[0].url"));
  EXPECT_NE(errs[0].message.find("fetchd.yaml:2:10"), std::string::npos) << errs[0].message;
}

TEST_F(ConfigTest, DestinationUsedAsFileAndFolder) {
  std::string text =
      "jobs:\n"
      "  - {url: 'http://127.0.0.1/a', dest: sub}\n"
      "  - {url: 'http://127.0.0.1/b', dest: sub/b.bin}\n";
  EXPECT_TRUE(rejected_with(text, "jobs[1].dest", 3, "needs 'sub' to be a folder, but jobs[0].dest"));
}

TEST_F(ConfigTest, OutputDirThatIsAFile) {
  dir_.write("plain-file", "x");
  EXPECT_TRUE(rejected_with("output:\n  dir: plain-file\n", "output.dir", 2, "is not a folder"));
  EXPECT_TRUE(rejected_with("output:\n  dir: ''\n", "output.dir", 2, "must not be empty"));
}

TEST_F(ConfigTest, BadHeaders) {
  std::string text =
      "defaults:\n"
      "  headers:\n"
      "    \"Bad Name\": x\n"
      "    X-Inject: \"v\\r\\nEvil: 1\"\n"
      "    X-Null: \"a\\0b\"\n"
      "    X-Nothing:\n"
      "    x-inject: again\n";
  auto errs = errors(text);
  EXPECT_EQ(errs.size(), 5u);
  EXPECT_TRUE(has_error(errs, "defaults.headers.Bad Name", 3, "header name 'Bad Name' is not valid"));
  EXPECT_TRUE(has_error(errs, "defaults.headers.X-Inject", 4, "control character"));
  EXPECT_TRUE(has_error(errs, "defaults.headers.X-Null", 5, "control character"));
  EXPECT_TRUE(has_error(errs, "defaults.headers.X-Nothing", 6, "missing value"));
  EXPECT_TRUE(has_error(errs, "defaults.headers.x-inject", 7, "given twice (first at line 4)"));
  for (const auto& e : errs) EXPECT_EQ(e.to_string().find("Evil"), std::string::npos) << e.to_string();
  EXPECT_TRUE(
      rejected_with("defaults:\n  user_agent: \"a\\nb\"\n", "defaults.user_agent", 2, "control character"));
}

TEST_F(ConfigTest, JobsMustBeAListOfMaps) {
  EXPECT_TRUE(rejected_with("jobs:\n  url: http://127.0.0.1/a\n", "jobs", 2, "expected a list of jobs"));
  std::string text =
      "jobs:\n"
      "  - http://127.0.0.1/a\n"
      "  - dest: x.bin\n"
      "  - url: http://127.0.0.1/b\n"
      "    urls_file: more.txt\n";
  auto errs = errors(text);
  EXPECT_TRUE(has_error(errs, "jobs[0]", 2, "expected a map with 'url' or 'urls_file'"));
  EXPECT_TRUE(has_error(errs, "jobs[1]", 3, "missing 'url'"));
  EXPECT_TRUE(has_error(errs, "jobs[2].url", 4, "cannot be combined with 'urls_file'"));
}

TEST_F(ConfigTest, DuplicateKeys) {
  EXPECT_TRUE(rejected_with("strategy:\n  kind: event-loop\n  kind: thread-pool\n", "strategy.kind", 3,
                            "'kind' is given twice (first at line 2)"));
}

TEST_F(ConfigTest, NonStringKeys) {
  EXPECT_TRUE(rejected_with("strategy:\n  [a, b]: 1\n", "strategy", 2, "keys must be plain strings"));
}

TEST_F(ConfigTest, InvalidYamlIsReportedWithItsMark) {
  auto errs = errors("strategy:\n  kind: [event-loop\nlog: {}\n");
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_GE(errs[0].line, 2);
  EXPECT_GT(errs[0].column, 0);
  EXPECT_NE(errs[0].message.find("invalid YAML"), std::string::npos);
  auto tab = errors("strategy:\n\tkind: x\n");
  ASSERT_EQ(tab.size(), 1u);
  EXPECT_EQ(tab[0].line, 2);
}

TEST_F(ConfigTest, OnlyOneDocument) {
  // Reported where the second document starts: its '---'.
  EXPECT_TRUE(rejected_with("jobs: []\n---\njobs: []\n", "", 2, "only one YAML document"));
}

// yaml-cpp 0.7's LoadAll never returns on these (fuzz finding yaml-loadall-loop): a clean error instead.
TEST_F(ConfigTest, InputThatStallsYamlCppsParserIsAnError) {
  EXPECT_TRUE(rejected_with(",", "", 1, "invalid YAML: unexpected ','"));
  EXPECT_TRUE(rejected_with(",\njobs: []\n", "", 1, "invalid YAML"));
}

// Fuzz finding config-invalid-utf8: strings that are not UTF-8 could not be dumped back as they are.
TEST_F(ConfigTest, StringsMustBeUtf8) {
  EXPECT_TRUE(rejected_with("state:\n  dir: st\xfft\n", "state.dir", 2, "not valid UTF-8"));
  // yaml-cpp 0.7 decodes the escapes \N (U+0085) and \_ (U+00A0) to single bytes: not UTF-8 either.
  EXPECT_TRUE(rejected_with("output: {dir: \"down\\Nloads\"}\n", "output.dir", 1, "not valid UTF-8"));
  EXPECT_TRUE(rejected_with("defaults:\n  headers:\n    X-A\xff: v\n", "defaults.headers", 3, "not valid UTF-8"));
}

TEST_F(ConfigTest, DeepNestingIsRefusedWithoutCrashing) {
  // Flow and block nesting, past our limit (64), past yaml-cpp's own guard, and far beyond.
  for (int depth : {65, 200, 1000, 100'000}) {
    std::string flow = "jobs: " + std::string(static_cast<std::size_t>(depth), '[') +
                       std::string(static_cast<std::size_t>(depth), ']') + "\n";
    auto errs = errors(flow);
    ASSERT_EQ(errs.size(), 1u) << depth;
    EXPECT_NE(errs[0].message.find("nested"), std::string::npos) << errs[0].to_string();
    EXPECT_GT(errs[0].line, 0);
  }
  std::string block = "jobs:\n";
  for (int i = 0; i < 1000; ++i) block += std::string(static_cast<std::size_t>(i) + 2, ' ') + "a:\n";
  auto errs = errors(block);
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_NE(errs[0].message.find("nested"), std::string::npos) << errs[0].to_string();
  std::string unclosed(1000, '{');
  EXPECT_EQ(errors(unclosed).size(), 1u);
}

TEST_F(ConfigTest, NestingWithinTheLimitIsJustAWrongType) {
  std::string text = "strategy:\n  kind: " + std::string(40, '[') + std::string(40, ']') + "\n";
  EXPECT_TRUE(rejected_with(text, "strategy.kind", 2, "got a list"));
}

TEST_F(ConfigTest, AliasExpansionBombIsRefused) {
  std::string text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  std::string prev = "a";
  for (char c = 'b'; c <= 'i'; ++c) {
    std::string name(1, c);
    text += name + ": &" + name + " [";
    for (int i = 0; i < 10; ++i) text += (i ? ", *" : "*") + prev;
    text += "]\n";
    prev = name;
  }
  auto errs = errors(text);
  ASSERT_FALSE(errs.empty());
  EXPECT_NE(errs[0].message.find("aliases"), std::string::npos) << errs[0].to_string();
}

TEST_F(ConfigTest, FileOverTheLimitIsRefusedBeforeParsing) {
  // Invalid YAML beyond the limit: if it were parsed, the error would be about syntax.
  std::string text = "jobs: [\n" + std::string(kMaxConfigBytes, '#');
  auto errs = errors(text);
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_EQ(errs[0].line, 0);
  EXPECT_NE(errs[0].message.find("larger than the limit of 1MiB"), std::string::npos) << errs[0].message;
}

TEST_F(ConfigTest, UnreadableFileNamesItAndTheErrnoText) {
  auto missing = dir_.path() / "nope.yaml";
  try {
    load_config(missing);
    FAIL() << "expected an error";
  } catch (const ConfigErrors& e) {
    ASSERT_EQ(e.errors().size(), 1u);
    EXPECT_EQ(e.errors()[0].file, missing.string());
    EXPECT_EQ(e.errors()[0].to_string(),
              missing.string() + ": cannot read the config file: No such file or directory");
  }
  try {
    load_config(dir_.path());
    FAIL() << "expected an error";
  } catch (const ConfigErrors& e) {
    ASSERT_EQ(e.errors().size(), 1u);
    EXPECT_NE(e.errors()[0].message.find("Is a directory"), std::string::npos) << e.errors()[0].message;
  }
}

TEST_F(ConfigTest, UrlsFileErrorsNameThatFileAndLine) {
  dir_.write("lists/more.txt",
             "# header\n"
             "http://127.0.0.1/ok1\n"
             "\n"
             "  ftp://127.0.0.1/bad\n"
             "http://127.0.0.1/ok2 trailing words\n"
             "http://127.0.0.1/a b.bin\n"
             "http://127.0.0.1/y/ok1\n");
  auto errs = errors("jobs:\n  - urls_file: lists/more.txt\n");
  auto list = (dir_.path() / "lists/more.txt").string();
  ASSERT_EQ(errs.size(), 4u);
  EXPECT_EQ(errs[0].to_string(),
            list + ":4:3: jobs[0].urls_file: URL scheme 'ftp' is not allowed (use http or https)");
  EXPECT_EQ(errs[1].file, list);
  EXPECT_EQ(errs[1].line, 5);
  EXPECT_NE(errs[1].message.find("unexpected text after the URL"), std::string::npos);
  EXPECT_EQ(errs[2].line, 6);
  EXPECT_EQ(errs[3].line, 7);
  EXPECT_NE(errs[3].message.find("destination 'ok1' is also used by jobs[0].urls_file (" + list + ":2:1)"),
            std::string::npos)
      << errs[3].message;
}

TEST_F(ConfigTest, MissingUrlsFile) {
  // Named as it can be opened from where the config file was named (here: an absolute path).
  EXPECT_TRUE(rejected_with(
      "jobs:\n  - urls_file: lists/none.txt\n", "jobs[0].urls_file", 2,
      "cannot read '" + (dir_.path() / "lists/none.txt").string() + "': No such file or directory"));
  try {
    load_config_text("jobs:\n  - urls_file: lists/none.txt\n", "conf/x.yaml", dir_.path());
    FAIL() << "expected an error";
  } catch (const ConfigErrors& e) {
    ASSERT_EQ(e.errors().size(), 1u);
    EXPECT_NE(e.errors()[0].message.find("cannot read 'conf/lists/none.txt'"), std::string::npos)
        << e.errors()[0].message;
  }
}

TEST_F(ConfigTest, EveryErrorAtOnceInFileOrder) {
  std::string text =
      "log: {level: loud}\n"                           // 1
      "strategy:\n"                                    // 2
      "  kind: warp\n"                                 // 3
      "  concurrency: 0\n"                             // 4
      "output: {on_exists: maybe, fsync: 2}\n"         // 5
      "defaults:\n"                                    // 6
      "  timeout: forever\n"                           // 7
      "  retries: many\n"                              // 8
      "jobs:\n"                                        // 9
      "  - url: file:///etc/shadow\n"                  // 10
      "  - url: http://127.0.0.1/a\n"                  // 11
      "    sha256: nope\n"                             // 12
      "  - {url: 'http://127.0.0.1/b', dest: ../b}\n"  // 13
      "extra: 1\n";                                    // 14
  auto errs = errors(text);
  ASSERT_EQ(errs.size(), 11u);
  std::vector<std::pair<std::string, int>> expected{
      {"log.level", 1},        {"strategy.kind", 3}, {"strategy.concurrency", 4},
      {"output.on_exists", 5}, {"output.fsync", 5},  {"defaults.timeout", 7},
      {"defaults.retries", 8}, {"jobs[0].url", 10},  {"jobs[1].sha256", 12},
      {"jobs[2].dest", 13},    {"extra", 14}};
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(errs[i].key, expected[i].first) << errs[i].to_string();
    EXPECT_EQ(errs[i].line, expected[i].second) << errs[i].to_string();
  }
}

TEST_F(ConfigTest, ErrorsEscapeControlCharacters) {
  auto errs = errors("strategy:\n  kind: \"a\\nb\"\n");
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_EQ(errs[0].to_string().find('\n'), std::string::npos);
  EXPECT_NE(errs[0].message.find("a\\x0ab"), std::string::npos) << errs[0].message;
}

}  // namespace
}  // namespace fetchd::config
