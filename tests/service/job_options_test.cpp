// SPDX-License-Identifier: Apache-2.0
// A socket-submitted job's own options (docs/protocol.md, submit): they are kept in the store and used for
// every attempt, also after a restart; its failed attempts' errors are kept and shown, redacted.

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "serve_fixture.hpp"

namespace fetchd::service_test {
namespace {

class JobOptions : public ServeFixture {
 protected:
  // Reads watch events until the final one of job `id`; returns its name.
  static std::string wait_final(Watcher& w, std::int64_t id) {
    w.read_until([&](const json&) { return w.finals().count(id) != 0; }, deadline_in(kFailsafe));
    return w.finals().at(id);
  }

  json status(LineClient& c, std::int64_t id) {
    json r = c.request(json{{"op", "status"}, {"id", id}});
    EXPECT_TRUE(r.value("ok", false)) << r.dump();
    return r["result"]["job"];
  }
};

TEST_F(JobOptions, RetriesOfASocketJobOverrideTheDefaults) {
  config_.retries = 3;  // the default the job overrides
  ASSERT_TRUE(start());
  auto w = watch();
  auto c = connect();
  // A secret in the query: redact_query ("*" by default) keeps it out of every error line.
  json job{{"url", origin_->url("/status/503") + "?token=s3cret"},
           {"dest", "unavailable.bin"},
           {"retries", 1},
           {"backoff", {{"initial", "10ms"}, {"max", "10ms"}}},
           {"headers", {{"Authorization", "Bearer h3ader"}}}};
  auto ids = submit(c, json::array({job}));
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_EQ(wait_final(w, ids[0]), "failed");
  EXPECT_EQ(requests_.count("/status/503"), 2u);  // the first attempt and exactly one retry

  json s = status(c, ids[0]);
  EXPECT_EQ(s["state"], "failed");
  EXPECT_EQ(s["attempts"], 2);
  EXPECT_EQ(s["options"], json::parse(R"({"retries":1,"backoff":{"initial":"10ms","max":"10ms"}})"));
  ASSERT_EQ(s["errors"].size(), 2u) << s.dump();
  for (const auto& e : s["errors"]) EXPECT_NE(e.get<std::string>().find("503"), std::string::npos) << e;
  const std::string text = s.dump() + list_all(c).at(0).dump();
  EXPECT_EQ(text.find("s3cret"), std::string::npos) << text;
  EXPECT_EQ(text.find("h3ader"), std::string::npos) << text;
}

TEST_F(JobOptions, MaxSizeOfASocketJobIsEnforced) {
  ASSERT_TRUE(start());
  auto w = watch();
  auto c = connect();
  json big{{"url", bytes_url(100000, "big.bin", 1)}, {"dest", "big.bin"}, {"max_size", "10KB"}, {"retries", 0}};
  json fits{{"url", bytes_url(5000, "fits.bin", 2)}, {"dest", "fits.bin"}, {"max_size", "10KB"}};
  auto ids = submit(c, json::array({big, fits}));
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(wait_final(w, ids[0]), "failed");
  EXPECT_EQ(wait_final(w, ids[1]), "done");
  json s = status(c, ids[0]);
  EXPECT_EQ(s["options"], json::parse(R"({"retries":0,"max_size":10000})"));
  ASSERT_EQ(s["errors"].size(), 1u) << s.dump();
  EXPECT_EQ(s["errors"][0], s["error"]);
  EXPECT_FALSE(fs::exists(out("big.bin")));
  EXPECT_EQ(file_sha256_hex(out("fits.bin")), origin::body_sha256_hex(5000, 2));
}

// A job that used its first attempt before a restart has only its one retry left after it: the budget is the
// job's, not the process's.
TEST_F(JobOptions, TheRetryBudgetHoldsAcrossARestart) {
  ASSERT_TRUE(start());
  std::int64_t id = 0;
  {
    auto w = watch();
    auto c = connect();
    // The retry would wait an hour: only the restart makes the second attempt happen now.
    json job{{"url", origin_->url("/status/503")},
             {"dest", "later.bin"},
             {"retries", 1},
             {"backoff", {{"initial", "1h"}, {"max", "1h"}, {"jitter", "none"}}}};
    auto ids = submit(c, json::array({job}));
    ASSERT_EQ(ids.size(), 1u);
    id = ids[0];
    // The first attempt failed and its retry is scheduled (the event follows the commit).
    w.read_until(
        [&](const json& e) {
          return e.value("event", "") == "queued" && e["job"]["id"] == id && e["job"]["attempts"] == 1;
        },
        deadline_in(kFailsafe));
    EXPECT_EQ(status(c, id)["attempts"], 1);
  }
  ASSERT_EQ(terminate(), 0);
  ASSERT_TRUE(start());
  auto w = watch();
  auto c = connect();
  if (status(c, id)["state"] != "failed") {
    EXPECT_EQ(wait_final(w, id), "failed");
  }
  EXPECT_EQ(requests_.count("/status/503"), 2u);
  json s = status(c, id);
  EXPECT_EQ(s["attempts"], 2);
  EXPECT_EQ(s["errors"].size(), 2u) << s.dump();  // the one before the restart is kept
  EXPECT_EQ(s["options"]["retries"], 1);
}

}  // namespace
}  // namespace fetchd::service_test
