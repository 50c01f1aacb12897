// SPDX-License-Identifier: Apache-2.0
// Fault case 25: names that try to escape the output directory, from the URL (the default destination) and
// from Content-Disposition (which fetchd does not use for names: the URL-derived name stays). Every strategy
// downloads them; a canary directory beside out/ (checked in TearDown) proves nothing was written outside.
// The name functions themselves, the dest validation and the symlink check are also asserted directly.

#include <fmt/format.h>
#include <unistd.h>

#include <set>

#include "fault_support.hpp"
#include "fetchd/config/config.hpp"
#include "fetchd/control/protocol.hpp"
#include "fetchd/core/dest_path.hpp"
#include "fetchd/origin/body.hpp"
#include "fetchd/scheduler/run.hpp"

namespace fetchd::fault {
namespace {

const std::string kLong(1000, 'L');

// The hostile names of fault-cases.md 25, as raw bytes.
std::vector<std::string> hostile_names() {
  return {"../../x",      "/etc/passwd",           "..",      ".",           "a/b",
          "a\\b",         std::string("n\0ul", 4), "c\r\nlf", "..%2F..%2Fx", kLong,
          kLong + ".bin", "../../canary/keep",     "\xff\xfe"};
}

// A single safe path component.
::testing::AssertionResult safe_component(const std::string& name) {
  if (name.empty() || name == "." || name == "..")
    return ::testing::AssertionFailure() << "unsafe: \"" << name << "\"";
  for (char c : name) {
    if (c == '/' || c == '\\' || c == '\0' || c == '\r' || c == '\n')
      return ::testing::AssertionFailure() << "unsafe character in \"" << name << "\"";
  }
  if (name.size() > core::kMaxFileNameBytes)
    return ::testing::AssertionFailure() << name.size() << " bytes: \"" << name << "\"";
  if (name.front() == '.') return ::testing::AssertionFailure() << "hidden: \"" << name << "\"";
  return ::testing::AssertionSuccess();
}

TEST(HostileNames, Case25_SanitizedToOneSafeComponent) {
  for (const auto& raw : hostile_names()) EXPECT_TRUE(safe_component(core::sanitize_filename(raw))) << raw;
  EXPECT_EQ(core::sanitize_filename("../../x"), "x");
  EXPECT_EQ(core::sanitize_filename("/etc/passwd"), "passwd");
  EXPECT_EQ(core::sanitize_filename("a\\b"), "b");
  EXPECT_EQ(core::sanitize_filename("a/b"), "b");
  EXPECT_EQ(core::sanitize_filename(".."), "download");
  EXPECT_EQ(core::sanitize_filename("."), "download");
  EXPECT_EQ(core::sanitize_filename(std::string("n\0ul", 4)), "n_ul");
  auto long_bin = core::sanitize_filename(kLong + ".bin");
  EXPECT_TRUE(long_bin.ends_with(".bin")) << "the extension is kept";
  EXPECT_EQ(core::filename_from_url("http://h/d/..%2F..%2Fx?q=1"), "x");
  EXPECT_EQ(core::filename_from_url("http://h/d/%2Fetc%2Fpasswd"), "passwd");
  EXPECT_EQ(core::filename_from_url("http://h/d/%2E%2E"), "download");
  EXPECT_TRUE(safe_component(core::filename_from_url("http://h/d/c%0D%0Alf")));
  EXPECT_TRUE(safe_component(core::filename_from_url("http://h/d/n%00ul")));
}

TEST(HostileNames, Case25_ExplicitDestinationsThatEscapeAreRefused) {
  for (const std::string& dest :
       std::vector<std::string>{"../../x", "/etc/passwd", "..", ".", "a\\b", std::string("n\0ul", 4),
                                std::string("c\r\nlf"), "a/../../x", kLong, "sub/" + kLong}) {
    std::string error;
    EXPECT_FALSE(core::normalize_relative_dest(dest, &error).has_value()) << dest;
    EXPECT_FALSE(error.empty()) << dest;
  }
  std::string error;
  EXPECT_EQ(core::normalize_relative_dest("a/b", &error).value_or("<refused: " + error + ">"), "a/b");
  // The control socket refuses them per job.
  for (const char* dest : {"../../x", "/etc/passwd", "..", "a\\b"}) {
    nlohmann::json line{{"op", "submit"},
                        {"jobs", nlohmann::json::array({{{"url", "http://127.0.0.1/x"}, {"dest", dest}}})}};
    auto parsed = control::parse_request(line.dump());
    ASSERT_TRUE(std::holds_alternative<control::ProtocolError>(parsed)) << dest;
    EXPECT_EQ(std::get<control::ProtocolError>(parsed).code, control::ErrorCode::kInvalidJob) << dest;
    EXPECT_NE(std::get<control::ProtocolError>(parsed).message.find("jobs[0].dest"), std::string::npos);
  }
}

TEST(HostileNames, Case25_SymlinkOutOfTheOutputDirectoryIsRefused) {
  auto dir = fs::temp_directory_path() / fmt::format("fetchd-fault-link-{:x}", std::random_device{}());
  fs::create_directories(dir / "out");
  fs::create_directories(dir / "canary");
  fs::create_directory_symlink(dir / "canary", dir / "out" / "link");
  fs::create_symlink(dir / "canary" / "keep", dir / "out" / "file-link");
  std::string error;
  EXPECT_FALSE(core::confine(dir / "out", "link/x", &error).has_value());
  EXPECT_FALSE(error.empty());
  error.clear();
  EXPECT_FALSE(core::confine(dir / "out", "file-link", &error).has_value()) << "a symlinked destination";
  EXPECT_TRUE(core::confine(dir / "out", "sub/x", &error).has_value()) << error;
  fs::remove_all(dir);
}

class NamesFault : public FaultTest {};

TEST_P(NamesFault, Case25_UrlAndContentDispositionNamesStayInsideTheOutputDirectory) {
  struct Case {
    std::string path;      // origin path, name segment percent-encoded
    std::string expected;  // the destination fetchd must derive ("" = any safe name)
  };
  const std::string long_name = kLong + ".bin";
  const std::vector<Case> cases = {
      {"/bytes/10/..%2F..%2Fx1?seed=1", "x1"},
      {"/bytes/10/%2Fetc%2Fpasswd?seed=2", "passwd"},
      {"/bytes/10/%2E%2E?seed=3", "download"},
      {"/bytes/10/a%5Cb2?seed=4", "b2"},
      {"/bytes/10/n%00ul?seed=5", "n_ul"},
      {"/bytes/10/c%0D%0Alf?seed=6", ""},
      {"/bytes/10/" + long_name + "?seed=7", ""},
      {"/bytes/10/..%2F..%2Fcanary%2Fkeep?seed=8", "keep"},
      // Content-Disposition is not a source of names: the URL's name is used whatever the header says.
      {"/bytes/10/cd1.bin?seed=9&cd=attachment%3B%20filename%3D%22..%2F..%2Fcanary%2Fkeep%22", "cd1.bin"},
      {"/bytes/10/cd2.bin?seed=10&cd=attachment%3B%20filename*%3DUTF-8''..%252F..%252Fx", "cd2.bin"},
      {"/bytes/10/cd3.bin?seed=11&cd=attachment%3B%20filename%3D%22%2Fetc%2Fpasswd%22", "cd3.bin"},
      {"/bytes/10/cd4.bin?seed=12&cd=attachment%3B%20filename%3D%22" + kLong + "%22", "cd4.bin"},
  };
  // Through the config loader, which derives each job's destination from its URL (jobs without dest).
  std::string yaml = fmt::format("output: {{dir: \"{}\"}}\njobs:\n", out().string());
  for (const auto& c : cases) yaml += fmt::format("  - url: \"{}\"\n", origin_->url(c.path));
  config::Config loaded = config::load_config_text(yaml, "names.yaml", dir_);
  ASSERT_EQ(loaded.jobs.size(), cases.size());
  Runner r(config_);
  std::vector<core::JobId> ids;
  std::set<std::string> dests;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& job = loaded.jobs[i];
    EXPECT_TRUE(safe_component(job.dest)) << cases[i].path;
    if (!cases[i].expected.empty()) {
      EXPECT_EQ(job.dest, cases[i].expected) << cases[i].path;
    }
    EXPECT_TRUE(dests.insert(job.dest).second) << "two jobs with one destination: " << job.dest;
    ids.push_back(r.add(scheduler::make_request(config_, job)));
  }
  // A NUL in a header line: curl refuses the whole response (a clean protocol error, no file).
  auto nul = r.add(request("/bytes/10/nul.bin?seed=1&cd=attachment%3B%20filename%3D%22a%00b%22", "nul.bin"));
  ASSERT_TRUE(r.run());
  EXPECT_TRUE(failed_with(r.outcome(nul), core::ErrorCategory::kProtocol, {"Nul byte in header"}, 1));
  expect_no_file("nul.bin");
  for (std::size_t i = 0; i < cases.size(); ++i) {
    ASSERT_TRUE(done_after(r.outcome(ids[i]), 1)) << cases[i].path;
    EXPECT_EQ(file_sha256(out(loaded.jobs[i].dest)), origin::body_sha256_hex(10, i + 1)) << cases[i].path;
  }
  // Exactly those files, directly inside out/, and nothing else anywhere under the test's directory.
  std::set<std::string> found;
  for (const auto& e : fs::directory_iterator(out())) {
    EXPECT_TRUE(e.is_regular_file()) << e.path();
    found.insert(e.path().filename().string());
  }
  EXPECT_EQ(found, dests) << list_tree(dir_);
  std::set<std::string> top;
  for (const auto& e : fs::directory_iterator(dir_)) top.insert(e.path().filename().string());
  EXPECT_EQ(top, (std::set<std::string>{"out", "canary"})) << list_tree(dir_);
}

INSTANTIATE_TEST_SUITE_P(AllStrategies, NamesFault, ::testing::ValuesIn(all_strategies()), param_name);

}  // namespace
}  // namespace fetchd::fault
