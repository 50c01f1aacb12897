// SPDX-License-Identifier: Apache-2.0
// Fault cases 10-15 (redirects, schemes, status codes and retries), for every strategy, plus case 12's
// submission-time checks (config loader and control protocol parser), which involve no strategy.

#include <fmt/format.h>

#include <ctime>

#include "fault_support.hpp"
#include "fetchd/config/config.hpp"
#include "fetchd/control/protocol.hpp"
#include "fetchd/origin/body.hpp"
#include "fetchd/scheduler/scheduler.hpp"

namespace fetchd::fault {
namespace {

using core::ErrorCategory;
using scheduler::JobState;

class RedirectStatusFault : public FaultTest {};

TEST_P(RedirectStatusFault, Case10_RedirectLoopFailsAfterExactlyMaxRedirectsPlusOneRequests) {
  config_.defaults.max_redirects = 4;
  config_.defaults.retry.retries = 2;  // too many redirects is permanent
  Runner r(config_);
  auto tag = "c10-" + strategy_name();
  auto id = r.add(request("/loop/a?t=" + tag, "loop.bin"));
  ASSERT_TRUE(r.run());
  EXPECT_TRUE(failed_with(r.outcome(id), ErrorCategory::kRedirect, {"more than 4 redirects"}, 1));
  EXPECT_EQ(requests_.count("/loop/"), 5u) << "max_redirects + 1 requests";
  EXPECT_EQ(count_regular_files(out()), 0u) << list_tree(out());
}

TEST_P(RedirectStatusFault, Case11_RedirectToAnotherSchemeIsRefusedWithoutTouchingIt) {
  config_.defaults.retry.retries = 2;
  SilentListener listener;  // ftp://, dict:// and gopher:// point here: nothing may connect
  const auto port = listener.port();
  const std::vector<std::pair<std::string, std::string>> targets = {
      {"passwd", "file:///etc/passwd"},
      {"ftp.bin", fmt::format("ftp://127.0.0.1:{}/x", port)},
      {"dict.bin", fmt::format("dict://127.0.0.1:{}/d:x", port)},
      {"gopher.bin", fmt::format("gopher://127.0.0.1:{}/1x", port)},
      {"ftp-no-port.bin", "ftp://127.0.0.1/etc/passwd"},
  };
  Runner r(config_);
  std::vector<core::JobId> ids;
  for (const auto& [dest, url] : targets) {
    std::string encoded;
    for (unsigned char c : url) {
      encoded += std::isalnum(c) != 0 ? std::string(1, static_cast<char>(c)) : fmt::format("%{:02X}", c);
    }
    ids.push_back(r.add(request("/redirect-to?url=" + encoded, dest)));
  }
  ASSERT_TRUE(r.run());
  for (auto id : ids) {
    EXPECT_TRUE(failed_with(r.outcome(id), ErrorCategory::kRedirect, {"refused redirect"}, 1));
  }
  EXPECT_FALSE(listener.connection_pending()) << "a refused scheme was still connected to";
  EXPECT_EQ(count_regular_files(out()), 0u) << "nothing local was read into a file:\n" << list_tree(out());
  EXPECT_EQ(requests_.count("/redirect-to"), targets.size());
}

TEST_P(RedirectStatusFault, Case12_ASchemeOtherThanHttpNeverRunsEvenIfItGetsThrough) {
  // Submission refuses these (the tests below); should one reach a strategy anyway, curl's protocol list
  // refuses it before anything is read.
  Runner r(config_);
  auto req = request("/x", "passwd");
  req.url = "file:///etc/passwd";
  auto id = r.add(req);
  ASSERT_TRUE(r.run());
  EXPECT_TRUE(failed_with(r.outcome(id), ErrorCategory::kProtocol, {"scheme not allowed"}, 1));
  expect_no_file("passwd");
}

TEST_P(RedirectStatusFault, Case13_NotFoundAndGoneAreFinalWithoutRetryOrFile) {
  config_.defaults.retry.retries = 3;
  Runner r(config_);
  auto nf = r.add(request("/status/404", "nf.bin"));
  auto gone = r.add(request("/status/410", "gone.bin"));
  ASSERT_TRUE(r.run());
  EXPECT_TRUE(failed_with(r.outcome(nf), ErrorCategory::kHttpStatus, {"HTTP 404"}, 1));
  EXPECT_TRUE(failed_with(r.outcome(gone), ErrorCategory::kHttpStatus, {"HTTP 410"}, 1));
  EXPECT_EQ(r.outcome(nf).last.http_status, 404);
  EXPECT_EQ(r.outcome(gone).last.http_status, 410);
  EXPECT_EQ(requests_.count("/status/404"), 1u);
  EXPECT_EQ(requests_.count("/status/410"), 1u);
  EXPECT_EQ(count_regular_files(out()), 0u) << "the error body was written:\n" << list_tree(out());
}

TEST_P(RedirectStatusFault, Case14_ServerErrorsAreRetriedUpToTheLimitThenFailWithTheLastStatus) {
  config_.defaults.retry.retries = 2;
  Runner r(config_);
  std::vector<std::pair<int, core::JobId>> ids;
  for (int status : {500, 502, 503}) {
    ids.emplace_back(status,
                     r.add(request(fmt::format("/status/{}", status), fmt::format("{}.bin", status))));
  }
  ASSERT_TRUE(r.run());
  for (auto [status, id] : ids) {
    const Outcome& o = r.outcome(id);
    EXPECT_TRUE(failed_with(o, ErrorCategory::kHttpStatus, {fmt::format("HTTP {}", status)}, 3));
    EXPECT_EQ(o.last.http_status, status);
    ASSERT_EQ(o.log.size(), 3u);
    for (const auto& a : o.log) EXPECT_EQ(a.result.http_status, status);
    EXPECT_EQ(requests_.count(fmt::format("/status/{}", status)), 3u);
  }
  EXPECT_EQ(count_regular_files(out()), 0u) << list_tree(out());
}

TEST_P(RedirectStatusFault, Case14_BackoffGrowsExponentially) {
  // No jitter here (the jitter itself: RetryDelay below): 50 ms, then 100 ms, between the attempts.
  config_.defaults.retry.retries = 2;
  config_.defaults.retry.initial = 50ms;
  config_.defaults.retry.max = 1s;
  config_.defaults.retry.multiplier = 2.0;
  config_.defaults.retry.jitter = core::Jitter::kNone;
  Runner r(config_);
  auto id = r.add(request("/status/502", "b.bin"));
  ASSERT_TRUE(r.run());
  const Outcome& o = r.outcome(id);
  EXPECT_TRUE(failed_with(o, ErrorCategory::kHttpStatus, {"HTTP 502"}, 3));
  ASSERT_EQ(o.log.size(), 3u);
  const double gap1 = ms(o.log[1].started - o.log[0].ended);
  const double gap2 = ms(o.log[2].started - o.log[1].ended);
  EXPECT_GE(gap1, 49.0);
  EXPECT_GE(gap2, 99.0);
  EXPECT_LT(gap1, 1000.0);
  EXPECT_LT(gap2, 1000.0);
}

// Retry-After: the next attempt of the job (and of any job to the same origin) is not earlier than asked.
TEST_P(RedirectStatusFault, Case15_RetryAfterSecondsIsHonouredForTheJobAndItsOrigin) {
  config_.defaults.retry.retries = 2;
  const std::string target = "/bytes/1000/ra.bin?seed=1";
  rewrite_.plan(target, {"/status/503?retry_after=1", target});
  Runner r(config_);
  auto first = r.add(request(target, "ra.bin"));
  core::JobId second = 0;
  Clock::time_point failed_at{};
  // A second job to the same origin, queued right after the 503: it waits for the pause too.
  r.on_retry = [&](Runner& run, const scheduler::JobRecord&) {
    failed_at = Clock::now();
    run.add_later(request("/bytes/500/other.bin?seed=2", "other.bin"), 0ms,
                  [&](core::JobId id) { second = id; });
  };
  ASSERT_TRUE(r.run());
  const Outcome& o = r.outcome(first);
  ASSERT_TRUE(done_after(o, 2));
  EXPECT_EQ(o.log[0].result.http_status, 503);
  ASSERT_TRUE(o.log[0].result.retry_after.has_value());
  EXPECT_EQ(*o.log[0].result.retry_after, 1s);
  auto reqs = requests_.with_prefix("/bytes/1000/ra.bin");
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_GE(ms(reqs[1].at - reqs[0].at), 1000.0) << "the retry came before Retry-After: 1";
  EXPECT_LE(ms(reqs[1].at - reqs[0].at), 3000.0);
  ASSERT_NE(second, 0u);
  const Outcome& s = r.outcome(second);
  ASSERT_TRUE(done_after(s, 1));
  EXPECT_GE(ms(s.log[0].started - failed_at), 950.0) << "the origin was not paused for the other job";
  EXPECT_EQ(file_sha256(out("ra.bin")), origin::body_sha256_hex(1000, 1));
}

TEST_P(RedirectStatusFault, Case15_RetryAfterAsAnHttpDateIsHonoured) {
  config_.defaults.retry.retries = 1;
  // Two seconds from now, at whole-second resolution: the retry must not come before that second starts.
  const std::time_t when = std::time(nullptr) + 2;
  char date[64];
  std::tm tm{};
  ::gmtime_r(&when, &tm);
  std::strftime(date, sizeof date, "%a,%%20%d%%20%b%%20%Y%%20%H:%M:%S%%20GMT", &tm);
  const std::string target = "/bytes/1000/d.bin?seed=3";
  rewrite_.plan(target, {fmt::format("/status/429?retry_after={}", date), target});
  Runner r(config_);
  auto id = r.add(request(target, "d.bin"));
  ASSERT_TRUE(r.run());
  const Outcome& o = r.outcome(id);
  ASSERT_TRUE(done_after(o, 2));
  EXPECT_EQ(o.log[0].result.http_status, 429);
  ASSERT_TRUE(o.log[0].result.retry_after.has_value()) << o.log[0].result.message;
  auto reqs = requests_.with_prefix("/bytes/1000/d.bin");
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_GE(reqs[1].wall, std::chrono::system_clock::from_time_t(when)) << "retried before the date";
  EXPECT_LE(ms(reqs[1].at - reqs[0].at), 3500.0);
}

TEST_P(RedirectStatusFault, Case15_AbsurdRetryAfterIsClampedAndGarbageIgnored) {
  config_.defaults.retry.retries = 1;
  config_.defaults.retry.retry_after_max = 1s;
  const std::string year = "/bytes/100/year.bin?seed=1";
  const std::string negative = "/bytes/100/neg.bin?seed=1";
  const std::string garbage = "/bytes/100/garbage.bin?seed=1";
  // Different origins would need more servers: one origin, and per_host room for all three. The year-long
  // pause is clamped to 1 s for the whole origin, so the other two retry after it as well; what matters is
  // that nothing waits longer than the clamp.
  rewrite_.plan(year, {"/status/503?retry_after=31536000", year});
  rewrite_.plan(negative, {"/status/503?retry_after=-5", negative});
  rewrite_.plan(garbage, {"/status/503?retry_after=soon", garbage});
  Runner r(config_);
  auto y = r.add(request(year, "year.bin"));
  auto n = r.add(request(negative, "neg.bin"));
  auto g = r.add(request(garbage, "garbage.bin"));
  ASSERT_TRUE(r.run(20s));
  for (auto id : {y, n, g}) ASSERT_TRUE(done_after(r.outcome(id), 2));
  ASSERT_TRUE(r.outcome(y).log[0].result.retry_after.has_value());
  // A negative value means "now" (0 s); garbage is no Retry-After at all: both retry after the usual backoff.
  EXPECT_EQ(r.outcome(n).log[0].result.retry_after.value_or(-1s), 0s);
  EXPECT_FALSE(r.outcome(g).log[0].result.retry_after.has_value()) << "a garbage Retry-After is ignored";
  auto reqs = requests_.with_prefix("/bytes/100/year.bin");
  ASSERT_EQ(reqs.size(), 2u);
  const double gap = ms(reqs[1].at - reqs[0].at);
  EXPECT_GE(gap, 1000.0) << "retry_after_max is the clamp, not a reason to come early";
  EXPECT_LE(gap, 3000.0) << "a year-long Retry-After was not clamped to retry_after_max (1 s)";
}

TEST(RetryDelay, FullJitterStaysWithinTheExponentialBoundAndVaries) {
  core::RetryPolicy p;
  p.initial = 100ms;
  p.max = 1s;
  p.multiplier = 2.0;
  p.jitter = core::Jitter::kFull;
  std::mt19937_64 rng(42);
  for (int attempt = 1; attempt <= 6; ++attempt) {
    const auto bound = std::min<std::chrono::milliseconds>(p.max, p.initial * (1 << (attempt - 1)));
    std::set<std::int64_t> seen;
    for (int i = 0; i < 50; ++i) {
      auto d = scheduler::retry_delay(p, attempt, std::nullopt, rng);
      EXPECT_GE(d.count(), 0);
      EXPECT_LE(d, bound) << "attempt " << attempt;
      seen.insert(d.count());
    }
    EXPECT_GT(seen.size(), 10u) << "no jitter at attempt " << attempt;
  }
  // Retry-After wins over a shorter backoff, clamped to retry_after_max.
  p.retry_after_max = 2s;
  EXPECT_GE(scheduler::retry_delay(p, 1, std::chrono::seconds(1), rng), 1000ms);
  EXPECT_EQ(scheduler::retry_delay(p, 1, std::chrono::seconds(31536000), rng), 2000ms);
}

// ----------------------------------------------------------------------------- case 12 at submission

TEST(SchemeAtSubmission, ConfigRefusesEveryOtherScheme) {
  for (const char* url : {"file:///etc/passwd", "scp://127.0.0.1/etc/passwd", "smb://127.0.0.1/share/x",
                          "telnet://127.0.0.1:23/", "ftp://127.0.0.1/x", "gopher://127.0.0.1/1x",
                          "dict://127.0.0.1/d:x", "FILE:///etc/passwd"}) {
    const std::string text =
        fmt::format("output: {{dir: /tmp/fetchd-fault-never}}\njobs:\n  - url: \"{}\"\n    dest: x\n", url);
    try {
      auto config = config::load_config_text(text, "fault.yaml", "/tmp");
      ADD_FAILURE() << url << " was accepted: " << config.jobs.size() << " job(s)";
    } catch (const config::ConfigErrors& e) {
      ASSERT_FALSE(e.errors().empty());
      const auto& err = e.errors()[0];
      EXPECT_EQ(err.key, "jobs[0].url") << err.to_string();
      EXPECT_NE(err.message.find("not allowed"), std::string::npos) << err.to_string();
      EXPECT_EQ(err.line, 3) << err.to_string();
    }
  }
}

TEST(SchemeAtSubmission, ControlProtocolRefusesEveryOtherScheme) {
  for (const char* url : {"file:///etc/passwd", "scp://127.0.0.1/etc/passwd", "smb://127.0.0.1/share/x",
                          "telnet://127.0.0.1:23/", "ftp://127.0.0.1/x", "gopher://127.0.0.1/1x"}) {
    nlohmann::json line{{"op", "submit"}, {"jobs", nlohmann::json::array({{{"url", url}, {"dest", "x"}}})}};
    auto parsed = control::parse_request(line.dump());
    ASSERT_TRUE(std::holds_alternative<control::ProtocolError>(parsed)) << url << " was accepted";
    const auto& err = std::get<control::ProtocolError>(parsed);
    EXPECT_EQ(err.code, control::ErrorCode::kInvalidJob) << url << ": " << err.message;
    EXPECT_NE(err.message.find("jobs[0].url"), std::string::npos) << err.message;
  }
  // And the http(s) ones pass, so the refusals above are about the scheme.
  nlohmann::json ok{{"op", "submit"}, {"jobs", nlohmann::json::array({{{"url", "https://127.0.0.1/x"}}})}};
  EXPECT_TRUE(std::holds_alternative<control::Request>(control::parse_request(ok.dump())));
}

INSTANTIATE_TEST_SUITE_P(AllStrategies, RedirectStatusFault, ::testing::ValuesIn(all_strategies()),
                         param_name);

}  // namespace
}  // namespace fetchd::fault
