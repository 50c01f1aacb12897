// SPDX-License-Identifier: Apache-2.0
// The hint fetchctl adds to "cannot connect": on a permission error it names the group (and mode) that grants
// access, the socket's own or that of a folder on the way, instead of guessing "fetchd". As root a connect()
// never fails with EACCES, so the real connects run in a child process that dropped to nobody (65534).
#include "client.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <string>

#include "fetchd/core/unique_fd.hpp"
#include "temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using namespace fetchd::ctl;

constexpr gid_t kNobody = 65534;

bool is_root() {
  return ::geteuid() == 0;
}

std::string name_of_group(gid_t gid) {
  const group* g = ::getgrgid(gid);
  return g != nullptr ? g->gr_name : std::to_string(gid);
}

// A group the test may give files to: as root one nobody is in ("daemon", gid 1, on Debian), else our own.
gid_t test_group() {
  if (!is_root()) return ::getegid();
  const group* g = ::getgrnam("daemon");
  return g != nullptr ? g->gr_gid : 1;
}

// A Unix socket file (bound, not listening: connect() checks permissions first).
fetchd::core::UniqueFd bind_socket(const fs::path& path) {
  fetchd::core::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_TRUE(fd);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  return fd;
}

// What Connection::open reports for `path`, run as nobody when we are root (in a child, through a pipe).
std::string connect_error(const std::string& path) {
  auto attempt = [&]() -> std::string {
    Endpoint e;
    e.path = e.display = path;
    try {
      Connection::open(e, std::chrono::seconds(5));
      return "connected";
    } catch (const ClientError& error) {
      return error.what();
    }
  };
  if (!is_root()) return attempt();
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return "pipe failed";
  pid_t pid = ::fork();
  if (pid == 0) {
    std::string out = (::setgroups(0, nullptr) == 0 && ::setgid(kNobody) == 0 && ::setuid(kNobody) == 0)
                          ? attempt()
                          : "cannot drop privileges";
    (void)!::write(fds[1], out.data(), out.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return out;
}

TEST(ConnectHint, APermissionErrorNamesTheSocketsGroupAndMode) {
  fetchd::testing::TempDir dir;
  fs::permissions(dir.path(), fs::perms(0755));  // nobody may enter: the socket file itself refuses
  const fs::path path = dir / "ctl.sock";
  auto fd = bind_socket(path);
  const gid_t gid = test_group();
  ASSERT_EQ(::chown(path.c_str(), static_cast<uid_t>(-1), gid), 0) << std::strerror(errno);
  const unsigned mode = is_root() ? 0660 : 0;  // as ourselves only mode 0 refuses us
  ASSERT_EQ(::chmod(path.c_str(), mode), 0);

  const std::string group = name_of_group(gid);
  Endpoint e;
  e.path = e.display = path.string();
  const std::string hint = connect_hint(e, EACCES);
  EXPECT_NE(hint.find(fmt::format("the socket belongs to group {}, mode {:04o}", group, mode)),
            std::string::npos)
      << hint;
  EXPECT_EQ(hint.find("e.g. fetchd"), std::string::npos) << hint;

  const std::string error = connect_error(path.string());
  EXPECT_NE(error.find("Permission denied (the socket belongs to group " + group), std::string::npos)
      << error;
}

TEST(ConnectHint, AFolderOnTheWayThatCannotBeEnteredIsNamed) {
  fetchd::testing::TempDir dir;
  fs::permissions(dir.path(), fs::perms(0755));
  const fs::path folder = dir / "private";
  fs::create_directory(folder);
  const fs::path path = folder / "ctl.sock";
  auto fd = bind_socket(path);
  const gid_t gid = test_group();
  ASSERT_EQ(::chown(folder.c_str(), static_cast<uid_t>(-1), gid), 0) << std::strerror(errno);
  const unsigned mode = is_root() ? 0750 : 0600;  // no search permission for nobody / for ourselves
  ASSERT_EQ(::chmod(folder.c_str(), mode), 0);

  const std::string error = connect_error(path.string());
  EXPECT_NE(
      error.find(fmt::format("Permission denied (you may not enter the folder {}: group {}, mode {:04o}",
                             folder.string(), name_of_group(gid), mode)),
      std::string::npos)
      << error;
  ::chmod(folder.c_str(), 0700);  // so that the temp dir can be removed
}

TEST(ConnectHint, AGroupWithoutANameIsShownByNumber) {
  if (!is_root()) GTEST_SKIP() << "only root may give a file to any group";
  constexpr gid_t kUnnamed = 4242421;
  if (::getgrgid(kUnnamed) != nullptr) GTEST_SKIP() << "gid " << kUnnamed << " has a name here";
  fetchd::testing::TempDir dir;
  const fs::path path = dir / "ctl.sock";
  auto fd = bind_socket(path);
  ASSERT_EQ(::chown(path.c_str(), static_cast<uid_t>(-1), kUnnamed), 0);
  Endpoint e;
  e.path = e.display = path.string();
  EXPECT_NE(connect_hint(e, EPERM).find("group 4242421,"), std::string::npos) << connect_hint(e, EPERM);
}

TEST(ConnectHint, OtherErrors) {
  Endpoint e;
  e.path = e.display = "/nonexistent/ctl.sock";
  EXPECT_EQ(connect_hint(e, ENOENT), " (is fetchd running?)");
  EXPECT_EQ(connect_hint(e, ECONNREFUSED), " (is fetchd running?)");
  EXPECT_EQ(connect_hint(e, ETIMEDOUT), "");
  Endpoint tcp;
  tcp.kind = Endpoint::Kind::kTcp;
  EXPECT_EQ(connect_hint(tcp, EACCES), "");
}

}  // namespace
