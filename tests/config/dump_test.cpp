// SPDX-License-Identifier: Apache-2.0
// dump_config: normalized output, redaction, and the round trip load(dump(load(x), true)) == load(x).
#include <gtest/gtest.h>

#include <string>

#include "config_test_util.hpp"

namespace fetchd::config {
namespace {

const std::vector<std::string> kGoodConfigs{
    "",
    "strategy: {kind: process-pool, concurrency: 7, workers: 3}\noutput: {on_exists: fail, fsync: false}\n",
    R"yaml(
output: { dir: "../with space/dl" }
defaults:
  timeout: 1h30m
  connect_timeout: 1500ms
  low_speed: { limit: 1500, time: 1m }
  retries: 0
  max_redirects: 0
  user_agent: ""
  headers:
    Authorization: "Bearer abc:def \"quoted\" 'single' #hash"
    X-Tab: "a	b"
    X-Unicode: "grüße ✓"
    X-Empty: ""
    X-Yes: "yes"
    X-Null: "null"
    "~": "tilde"
log: { level: off, interval: 250ms }
jobs:
  - url: http://user:p%40ss@127.0.0.1:8080/a.bin?token=abc#frag
    dest: "sub dir/a b.bin"
    sha256: "ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789"
    size: 1.5MiB
    headers: { Cookie: "id=1; other=2", X-Num: 12 }
  - url: https://127.0.0.1/
    size: 1001
  - url: "http://127.0.0.1/caf%C3%A9.txt"
    dest: "ünïcode/#not-a-comment: yes"
  - urls_file: lists/more.txt
)yaml",
    "strategy: {kind: process-pool, concurrency: 5, workers: 5, inner: blocking}\n",
};

class DumpTest : public ConfigTest {
 protected:
  void SetUp() override {
    dir_.write("conf/lists/more.txt", "# list\nhttp://127.0.0.1/l/1\n\nhttp://127.0.0.1/l/2 # two\n");
  }
};

TEST_F(DumpTest, RoundTripWithSecrets) {
  for (const auto& text : kGoodConfigs) {
    Config first = load(text, "conf/fetchd.yaml");
    std::string dumped = dump_config(first, /*show_secrets=*/true);
    // Elsewhere on purpose: every path in the dump is absolute, nothing may depend on the folder.
    Config second = load(dumped, "other/place/dumped.yaml");
    EXPECT_TRUE(same_config(first, second)) << dumped;
    // And the dump is a fixed point (after the comment line naming the source).
    std::string again = dump_config(second, true);
    EXPECT_EQ(again.substr(again.find('\n')), dumped.substr(dumped.find('\n')));
  }
}

TEST_F(DumpTest, EveryKeyIsPrintedWithHumanUnits) {
  Config c =
      load("defaults: {low_speed: {limit: 64KiB}}\njobs:\n  - {url: 'http://127.0.0.1/a', size: 4096}\n",
           "conf/fetchd.yaml");
  std::string out = dump_config(c);
  for (const char* expected :
       {"strategy:\n  kind: event-loop\n  concurrency: 256\n  workers: 0\n  inner: event-loop\n",
        "  on_exists: skip\n  fsync: true\n",
        "  timeout: 1d\n  connect_timeout: 10s\n  low_speed:\n    limit: 64KiB\n    time: 30s\n  retries: 3\n"
        "  backoff:\n    initial: 1s\n    max: 5m\n    multiplier: 2\n    jitter: full\n"
        "  retry_on: [connect, timeout, partial, 408, 425, 429, 500, 502, 503, 504]\n  retry_after_max: 1h\n"
        "  max_redirects: 10\n  user_agent: \"fetchd/",
        "limits:\n  per_host: 0\n  rate: 0B\n", "security:\n  deny_private_addresses: false\n  redact_query: [\"*\"]\n",
        "log:\n  level: info\n  interval: 5s\n", "size: 4KiB", "dest: \"a\""}) {
    EXPECT_NE(out.find(expected), std::string::npos) << "missing:\n" << expected << "\nin:\n" << out;
  }
  EXPECT_NE(out.find("dir: \"" + (dir_.path() / "conf/downloads").string() + "\""), std::string::npos) << out;
}

TEST_F(DumpTest, UrlsFileIsExpandedWithExplicitDest) {
  Config c = load("jobs:\n  - urls_file: lists/more.txt\n", "conf/fetchd.yaml");
  std::string out = dump_config(c);
  EXPECT_EQ(out.find("urls_file"), std::string::npos) << out;
  EXPECT_NE(out.find("  - url: \"http://127.0.0.1/l/1\"\n    dest: \"1\"\n"), std::string::npos) << out;
  EXPECT_NE(out.find("  - url: \"http://127.0.0.1/l/2\"\n    dest: \"2\"\n"), std::string::npos) << out;
}

TEST_F(DumpTest, SecretsAreRedactedByDefault) {
  Config c = load(kGoodConfigs[2], "conf/fetchd.yaml");
  std::string out = dump_config(c);
  for (const char* secret : {"Bearer abc", "id=1", "p%40ss", "user:", "token=abc"}) {
    EXPECT_EQ(out.find(secret), std::string::npos) << secret << " leaked:\n" << out;
  }
  EXPECT_NE(out.find("Authorization: \"<redacted>\""), std::string::npos) << out;
  EXPECT_NE(out.find("Cookie: \"<redacted>\""), std::string::npos) << out;
  // security.redact_query defaults to "*": every query value is hidden, as in the logs.
  EXPECT_NE(out.find("url: \"http://<redacted>@127.0.0.1:8080/a.bin?token=…#frag\""), std::string::npos)
      << out;
  c.security.redact_query = {"sig*"};
  EXPECT_NE(dump_config(c).find("url: \"http://<redacted>@127.0.0.1:8080/a.bin?token=abc#frag\""),
            std::string::npos);
  std::string shown = dump_config(c, true);
  EXPECT_NE(shown.find("Bearer abc"), std::string::npos);
  EXPECT_NE(shown.find("http://user:p%40ss@127.0.0.1"), std::string::npos);
}

TEST_F(DumpTest, InexactSizesArePrintedInBytes) {
  Config c = load(
      "jobs:\n  - {url: 'http://127.0.0.1/a', size: 1500}\n  - {url: 'http://127.0.0.1/b', size: 1.5KiB}\n",
      "conf/fetchd.yaml");
  std::string out = dump_config(c);
  EXPECT_NE(out.find("size: 1500\n"), std::string::npos) << out;
  EXPECT_NE(out.find("size: 1.5KiB\n"), std::string::npos) << out;
}

}  // namespace
}  // namespace fetchd::config
