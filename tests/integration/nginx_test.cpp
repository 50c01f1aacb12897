// SPDX-License-Identifier: Apache-2.0
// End to end against a real server: the fixture starts nginx on 127.0.0.1 with its own nginx.conf in a temp dir,
// and the tests run the real `fetchd run` binary on a YAML job list, so that fetchd is never only tested against
// its own origin.

#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "process.hpp"

namespace fs = std::filesystem;
using fetchd::testing::run_process;

namespace {

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const char* nginx_binary() {
  for (const char* p : {"/usr/sbin/nginx", "/usr/bin/nginx"}) {
    if (fs::exists(p)) return p;
  }
  return nullptr;
}

class NginxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* bin = std::getenv("FETCHD_BIN");
    ASSERT_NE(bin, nullptr) << "FETCHD_BIN must name the fetchd binary";
    fetchd_ = bin;
    const char* nginx = nginx_binary();
    if (!nginx) GTEST_SKIP() << "nginx is not installed (scripts/setup installs it)";
    std::mt19937_64 rng{std::random_device{}()};
    dir_ = fs::temp_directory_path() / ("fetchd-nginx-" + std::to_string(rng()));
    fs::create_directories(dir_ / "www" / "files");
    fs::create_directories(dir_ / "logs");
    fs::create_directories(dir_ / "tmp");
    // Distinct random contents per file; sizes from empty to a few MiB cover sendfile and multi-read bodies.
    std::uniform_int_distribution<int> byte(0, 255);
    for (int i = 0; i < kFiles; ++i) {
      std::size_t size = i == 0 ? 0 : static_cast<std::size_t>(i) * 37'001;
      std::string data(size, '\0');
      for (auto& c : data) c = static_cast<char>(byte(rng));
      std::ofstream(dir_ / "www" / "files" / ("file" + std::to_string(i) + ".bin"), std::ios::binary) << data;
    }
    port_ = fetchd::testing::free_port();
    // master_process off: one process, no switch to the nginx user, so it can read our temp dir when run as root.
    std::ofstream(dir_ / "nginx.conf") << "daemon off;\nmaster_process off;\nworker_processes 1;\n"
                                       << "pid " << (dir_ / "nginx.pid").string() << ";\n"
                                       << "error_log " << (dir_ / "logs/error.log").string() << " warn;\n"
                                       << "events { worker_connections 1024; }\n"
                                       << "http {\n  access_log off;\n"
                                       << "  client_body_temp_path " << (dir_ / "tmp").string() << ";\n"
                                       << "  proxy_temp_path " << (dir_ / "tmp").string() << ";\n"
                                       << "  fastcgi_temp_path " << (dir_ / "tmp").string() << ";\n"
                                       << "  uwsgi_temp_path " << (dir_ / "tmp").string() << ";\n"
                                       << "  scgi_temp_path " << (dir_ / "tmp").string() << ";\n"
                                       << "  server {\n    listen 127.0.0.1:" << port_ << ";\n"
                                       << "    root " << (dir_ / "www").string() << ";\n  }\n}\n";
    nginx_pid_ = fetchd::testing::spawn_process(
        {nginx, "-p", dir_.string(), "-c", (dir_ / "nginx.conf").string()}, (dir_ / "logs").string());
    ASSERT_TRUE(fetchd::testing::wait_for_port(port_, std::chrono::seconds(20)))
        << "nginx did not start: " << read_file(dir_ / "logs/stderr.log") << read_file(dir_ / "logs/error.log");
  }

  void TearDown() override {
    if (nginx_pid_ > 0) {
      kill(nginx_pid_, SIGTERM);
      EXPECT_EQ(fetchd::testing::wait_process(nginx_pid_, std::chrono::seconds(20)), 0);
    }
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

  static constexpr int kFiles = 40;
  std::string fetchd_;
  fs::path dir_;
  int port_ = 0;
  int nginx_pid_ = -1;
};

TEST_F(NginxTest, JobListDownloadsEveryFileByteExact) {
  std::ofstream cfg(dir_ / "jobs.yaml");
  cfg << "strategy: { kind: event-loop, concurrency: 8 }\n"
      << "output: { dir: out, on_exists: fail }\n"
      << "log: { level: info }\n"
      << "jobs:\n";
  for (int i = 0; i < kFiles; ++i) {
    cfg << "  - url: " << url("/files/file" + std::to_string(i) + ".bin") << "\n";
  }
  cfg.close();
  auto r = run_process({fetchd_, "run", "--config", (dir_ / "jobs.yaml").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (int i = 0; i < kFiles; ++i) {
    auto name = "file" + std::to_string(i) + ".bin";
    ASSERT_TRUE(fs::exists(dir_ / "out" / name)) << name;
    EXPECT_EQ(read_file(dir_ / "out" / name), read_file(dir_ / "www/files" / name)) << name;
  }
  // The throughput summary is logged in the one fixed format.
  EXPECT_NE(r.err.find("strategy=event-loop active="), std::string::npos) << r.err;
}

TEST_F(NginxTest, MissingFileFailsTheRunAndNamesTheJob) {
  std::ofstream(dir_ / "jobs.yaml") << "output: { dir: out }\n"
                                    << "log: { level: warn }\n"
                                    << "jobs:\n"
                                    << "  - url: " << url("/files/file1.bin") << "\n"
                                    << "  - url: " << url("/files/nope.bin") << "\n";
  auto r = run_process({fetchd_, "run", "--config", (dir_ / "jobs.yaml").string()});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(fs::exists(dir_ / "out/file1.bin"));
  EXPECT_FALSE(fs::exists(dir_ / "out/nope.bin"));
  EXPECT_FALSE(fs::exists(dir_ / "out/nope.bin.part"));
  EXPECT_NE(r.err.find("nope.bin"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("404"), std::string::npos) << r.err;
}

TEST_F(NginxTest, BadConfigExits78) {
  std::ofstream(dir_ / "bad.yaml") << "strategy: { kind: event-loop, concurency: 8 }\n";
  auto r = run_process({fetchd_, "run", "--config", (dir_ / "bad.yaml").string()});
  EXPECT_EQ(r.exit_code, 78);
  EXPECT_NE(r.err.find("concurency"), std::string::npos) << r.err;
}

TEST_F(NginxTest, BadUsageExits2) {
  auto r = run_process({fetchd_, "run"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
}

}  // namespace
