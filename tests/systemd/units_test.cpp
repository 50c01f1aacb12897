// SPDX-License-Identifier: Apache-2.0
// The shipped systemd units: `systemd-analyze verify` accepts them without a single warning, the sandbox's
// exposure score stays at or below the value recorded in README.md, the paths follow the install prefix, the
// config install hook never overwrites, and the process pool works under ProcSubset=pid +
// ProtectProc=invisible.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "child.hpp"
#include "temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using fetchd::testing::Child;
using fetchd::testing::ChildResult;
using fetchd::testing::run_child;
using fetchd::testing::TempDir;

// README.md, "Running as a service": the score of systemd 252 (Debian 12) for the shipped fetchd.service.
constexpr double kMaxExposure = 1.1;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void replace_all(std::string& text, const std::string& from, const std::string& to) {
  for (std::size_t pos = 0; (pos = text.find(from, pos)) != std::string::npos; pos += to.size())
    text.replace(pos, from.size(), to);
}

std::string find_in_path(const std::string& name) {
  std::string path = env("PATH");
  if (path.empty()) path = "/usr/bin:/bin";
  path += ":/usr/bin:/bin:/usr/sbin:/sbin";
  std::stringstream ss(path);
  for (std::string dir; std::getline(ss, dir, ':');) {
    if (dir.empty()) continue;
    fs::path candidate = fs::path(dir) / name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return {};
}

class SystemdUnits : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : {"FETCHD_SERVICE_UNIT", "FETCHD_SOCKET_UNIT", "FETCHD_BIN", "FETCHCTL_BIN",
                             "FETCHD_INSTALLED_BIN", "FETCHCTL_INSTALLED_BIN", "FETCHD_CONFIG_PATH"}) {
      if (env(name).empty()) GTEST_SKIP() << name << " is not set (run through meson test)";
    }
    analyze_ = find_in_path("systemd-analyze");
    if (analyze_.empty())
      GTEST_SKIP() << "systemd-analyze is not installed (Debian: apt-get install systemd)";
  }

  // The generated units with the installed binaries' paths replaced by the build's, since verify insists that
  // ExecStart= and ExecReload= name executables that exist.
  void write_units(const fs::path& dir) {
    std::string service = slurp(env("FETCHD_SERVICE_UNIT"));
    ASSERT_FALSE(service.empty());
    replace_all(service, env("FETCHD_INSTALLED_BIN") + " ", env("FETCHD_BIN") + " ");
    replace_all(service, env("FETCHCTL_INSTALLED_BIN") + " ", env("FETCHCTL_BIN") + " ");
    dir_.write(dir / "fetchd.service", service);
    dir_.write(dir / "fetchd.socket", slurp(env("FETCHD_SOCKET_UNIT")));
  }

  ChildResult analyze(std::vector<std::string> args) {
    args.insert(args.begin(), analyze_);
    return run_child(args);
  }

  std::string analyze_;
  TempDir dir_;
};

TEST_F(SystemdUnits, ExecPathsFollowTheInstallPrefix) {
  std::string service = slurp(env("FETCHD_SERVICE_UNIT"));
  EXPECT_NE(service.find("\nExecStart=" + env("FETCHD_INSTALLED_BIN") + " serve --config " +
                         env("FETCHD_CONFIG_PATH") + "\n"),
            std::string::npos)
      << service;
  EXPECT_NE(service.find("\nExecReload=" + env("FETCHCTL_INSTALLED_BIN") +
                         " --socket /run/fetchd/fetchd.sock reload\n"),
            std::string::npos);
  EXPECT_FALSE(std::regex_search(service, std::regex("@[A-Z_]+@"))) << "an unsubstituted @VARIABLE@";
}

TEST_F(SystemdUnits, VerifyAcceptsThemWithoutWarnings) {
  write_units("units");
  auto r = analyze({"verify", "--man=no", (dir_ / "units/fetchd.socket").string(),
                    (dir_ / "units/fetchd.service").string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "") << "systemd-analyze verify printed warnings";
  EXPECT_EQ(r.out, "");
}

TEST_F(SystemdUnits, VerifyWouldReportAMistake) {
  // The check above can fail: the same verify call flags an unknown setting.
  write_units("broken");
  std::string service = slurp(dir_ / "broken/fetchd.service");
  replace_all(service, "KillMode=mixed", "KillMode=mixed\nRestartSecs=1");
  dir_.write("broken/fetchd.service", service);
  auto r = analyze({"verify", "--man=no", (dir_ / "broken/fetchd.socket").string(),
                    (dir_ / "broken/fetchd.service").string()});
  EXPECT_NE(r.err.find("RestartSecs"), std::string::npos) << r.err;
}

TEST_F(SystemdUnits, SecurityExposureStaysAtTheRecordedLevel) {
  write_units("units");
  auto r = analyze({"security", "--offline=true", "--no-pager", (dir_ / "units/fetchd.service").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::smatch m;
  std::regex overall(R"(Overall exposure level for fetchd\.service: ([0-9]+\.[0-9]+))");
  ASSERT_TRUE(std::regex_search(r.out, m, overall)) << r.out;
  double score = std::stod(m[1].str());
  EXPECT_LE(score, kMaxExposure) << r.out;
  // What a downloader cannot give up, and nothing else, may count against it.
  std::regex failing(R"(✗ (\S+))");
  std::vector<std::string> exposed;
  for (auto it = std::sregex_iterator(r.out.begin(), r.out.end(), failing); it != std::sregex_iterator();
       ++it)
    exposed.push_back((*it)[1].str());
  for (const auto& setting : exposed) {
    EXPECT_TRUE(setting == "RootDirectory=/RootImage=" || setting == "RestrictAddressFamilies=~AF_UNIX" ||
                setting == "RestrictAddressFamilies=~AF_(INET|INET6)" || setting == "PrivateNetwork=" ||
                setting == "IPAddressDeny=" || setting == "DeviceAllow=")
        << setting << " is exposed:\n"
        << r.out;
  }
}

TEST(Sysusers, CreatesTheServiceUserAndTheSocketGroup) {
  std::string conf = env("FETCHD_SYSUSERS_CONF");
  if (conf.empty()) GTEST_SKIP() << "FETCHD_SYSUSERS_CONF is not set (run through meson test)";
  std::string sysusers = find_in_path("systemd-sysusers");
  if (sysusers.empty()) GTEST_SKIP() << "systemd-sysusers is not installed (Debian: apt-get install systemd)";
  TempDir root;
  fs::create_directories(root / "etc");
  auto r = run_child({sysusers, "--root=" + root.path().string(), conf});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string passwd = slurp(root / "etc/passwd");
  std::string group = slurp(root / "etc/group");
  // User= and Group= of fetchd.service, SocketGroup= of fetchd.socket; home = the StateDirectory.
  EXPECT_TRUE(std::regex_search(passwd, std::regex(R"((^|\n)fetchd:x:\d+:\d+:[^:]*:/var/lib/fetchd:)")))
      << passwd;
  EXPECT_TRUE(std::regex_search(group, std::regex(R"((^|\n)fetchd:x:\d+:)"))) << group;
}

class InstallConfig : public ::testing::Test {
 protected:
  void SetUp() override {
    script_ = env("INSTALL_CONFIG_SCRIPT");
    example_ = env("FETCHD_EXAMPLE_CONFIG");
    if (script_.empty() || example_.empty())
      GTEST_SKIP() << "INSTALL_CONFIG_SCRIPT is not set (run through meson test)";
  }
  ChildResult install(const fs::path& destdir) {
    fetchd::testing::ChildOptions options;
    options.env = {"DESTDIR=" + destdir.string()};
    options.unset_env = {"MESON_INSTALL_QUIET", "MESON_INSTALL_DRY_RUN"};
    return run_child({script_, example_, "/etc/fetchd/fetchd.yaml", "/usr/lib/sysusers.d/fetchd.conf"},
                     options);
  }
  std::string script_;
  std::string example_;
  TempDir dir_;
};

TEST_F(InstallConfig, InstallsOnceAndNeverOverwrites) {
  fs::path target = dir_ / "etc/fetchd/fetchd.yaml";
  auto first = install(dir_.path());
  ASSERT_EQ(first.exit_code, 0) << first.err;
  ASSERT_TRUE(fs::exists(target)) << first.out;
  EXPECT_EQ(slurp(target), slurp(example_));
  struct stat st {};
  ASSERT_EQ(::stat(target.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);

  dir_.write("etc/fetchd/fetchd.yaml", "# edited by the admin\n");
  auto second = install(dir_.path());
  EXPECT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(slurp(target), "# edited by the admin\n");
  EXPECT_NE(second.out.find("keeping the existing"), std::string::npos) << second.out;
  std::vector<std::string> leftovers;
  for (const auto& e : fs::directory_iterator(dir_ / "etc/fetchd")) leftovers.push_back(e.path().filename());
  EXPECT_EQ(leftovers, std::vector<std::string>{"fetchd.yaml"});
}

// ProtectProc=invisible + ProcSubset=pid, reproduced with a private procfs mounted with hidepid=invisible and
// subset=pid in a user+mount+pid namespace: the process pool (workers spawned from /proc/self/exe, closing
// fds listed in /proc/self/fd) still downloads.
TEST(ProcSubsetPid, ProcessPoolStillWorks) {
  std::string fetchd = env("FETCHD_BIN");
  if (fetchd.empty()) GTEST_SKIP() << "FETCHD_BIN is not set (run through meson test)";
  std::string unshare = find_in_path("unshare");
  if (unshare.empty()) GTEST_SKIP() << "unshare (util-linux) is not installed";
  auto probe = run_child({unshare, "-rmpf", "--mount-proc", "true"});
  if (probe.exit_code != 0) GTEST_SKIP() << "no user namespaces here: " << probe.err;

  TempDir dir;
  Child origin({fetchd, "origin", "--port", "0", "--log-level", "warn"});
  ASSERT_TRUE(origin.wait_for_output("\n")) << origin.out();
  std::smatch m;
  std::string first_line = origin.out();
  ASSERT_TRUE(std::regex_search(first_line, m, std::regex(R"(listening on (http://[0-9.]+:[0-9]+))")))
      << first_line;
  std::string base = m[1].str();
  auto config = dir.write("pool.yaml",
                          "strategy: { kind: process-pool, concurrency: 4, workers: 2 }\n"
                          "output: { dir: " +
                              (dir / "out").string() +
                              " }\n"
                              "defaults: { retries: 0 }\n"
                              "jobs:\n"
                              "  - url: " +
                              base +
                              "/bytes/1048576/a.bin\n"
                              "  - url: " +
                              base +
                              "/bytes/4096/b.bin\n"
                              "  - url: " +
                              base + "/bytes/0/c.bin\n");
  auto r = run_child({unshare, "-rmpf", "--mount-proc", "sh", "-c",
                      "mount -t proc -o subset=pid,hidepid=invisible proc /proc || exit 77\n"
                      "test -e /proc/self/exe && test ! -e /proc/meminfo || exit 78\n"
                      "exec \"$0\" run --config \"$1\"",
                      fetchd, config.string()});
  origin.kill(SIGTERM);
  origin.wait();
  if (r.exit_code == 77) GTEST_SKIP() << "this kernel's procfs has no subset=pid: " << r.err;
  ASSERT_NE(r.exit_code, 78) << "the private procfs does not look like ProcSubset=pid";
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(fs::file_size(dir / "out/a.bin"), 1048576u);
  EXPECT_EQ(fs::file_size(dir / "out/b.bin"), 4096u);
  EXPECT_EQ(fs::file_size(dir / "out/c.bin"), 0u);
}

}  // namespace
