// SPDX-License-Identifier: Apache-2.0
#include "test_support.hpp"

#include <curl/curl.h>
#include <sys/stat.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <vector>

#include "fetchd/curl/curl.hpp"

namespace fetchd::transfer::testutil {

namespace {

// Process-wide set-up, once, before any test starts a thread (design.md: curl_global_init in main).
class TransferTestEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    std::signal(SIGPIPE, SIG_IGN);
    ::umask(022);  // the tests check the 0644 mode of .part files
    // The tests talk to 127.0.0.1 only: a proxy from the environment must not get in the way.
    for (const char* name :
         {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"}) {
      ::unsetenv(name);
    }
    global_ = std::make_unique<curl::Global>();
  }
  void TearDown() override { global_.reset(); }

 private:
  std::unique_ptr<curl::Global> global_;
};

[[maybe_unused]] ::testing::Environment* const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new TransferTestEnvironment);

}  // namespace

void TempDirTest::SetUp() {
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/fetchd-transfer-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  ASSERT_NE(::mkdtemp(buf.data()), nullptr) << "mkdtemp " << tmpl;
  dir_ = buf.data();
}

void TempDirTest::TearDown() {
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

}  // namespace fetchd::transfer::testutil
