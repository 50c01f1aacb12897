// SPDX-License-Identifier: Apache-2.0
#pragma once
// A private PostgreSQL server for one test binary: initdb + pg_ctl of Debian's postgresql-15 in a temp dir,
// listening only on a unix socket in that dir (no TCP port). The server refuses to run as root, so as root
// the cluster belongs to the "postgres" user (or nobody). A missing server is an error, never a skip: the
// tests that need it fail naming the package. Each test takes a fresh database (fresh_url()). Thread: the
// test's main thread.

#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace fetchd::testing {

class PgCluster {
 public:
  static constexpr const char* kBin = "/usr/lib/postgresql/15/bin";

  // fsync off: the tests check fetchd's logic, not the disk (the benchmarks keep PostgreSQL's default).
  explicit PgCluster(bool fsync = false) {
    if (::access((std::string(kBin) + "/initdb").c_str(), X_OK) != 0) {
      throw std::runtime_error(std::string(kBin) +
                               "/initdb not found: install postgresql-15 (scripts/setup does)");
    }
    std::string pattern = "/tmp/fetchd-pg-XXXXXX";  // short: a unix socket path holds 107 bytes
    if (::mkdtemp(pattern.data()) == nullptr)
      throw std::system_error(errno, std::generic_category(), "mkdtemp");
    dir_ = pattern;
    ::chmod(dir_.c_str(), 0755);
    if (::geteuid() == 0) {
      const passwd* pw = ::getpwnam("postgres");
      if (pw == nullptr) pw = ::getpwnam("nobody");
      if (pw == nullptr) throw std::runtime_error("no 'postgres' or 'nobody' user to run PostgreSQL as");
      uid_ = pw->pw_uid;
      gid_ = pw->pw_gid;
      if (::chown(dir_.c_str(), uid_, gid_) != 0)
        throw std::system_error(errno, std::generic_category(), "chown");
    }
    const std::string data = dir_ + "/data";
    run({std::string(kBin) + "/initdb", "-D", data, "-U", "fetchd", "-A", "trust", "-E", "UTF8", "--no-sync",
         "--locale=C"});
    opts_ = "-k " + dir_ + " -c listen_addresses='' -c max_connections=200";
    if (!fsync) opts_ += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off";
    start();
  }

  // The server down and up again, as in a restart or failover: connections are cut (stop -m fast).
  void stop() {
    run({std::string(kBin) + "/pg_ctl", "-D", dir_ + "/data", "-w", "-t", "60", "-m", "fast", "stop"});
    started_ = false;
  }
  void start() {
    run({std::string(kBin) + "/pg_ctl", "-D", dir_ + "/data", "-w", "-t", "60", "-o", opts_, "-l",
         dir_ + "/server.log", "start"});
    started_ = true;
  }

  ~PgCluster() {
    if (started_) {
      try {
        run({std::string(kBin) + "/pg_ctl", "-D", dir_ + "/data", "-w", "-t", "60", "-m", "immediate",
             "stop"});
      } catch (...) {
      }
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  PgCluster(const PgCluster&) = delete;
  PgCluster& operator=(const PgCluster&) = delete;

  const std::string& dir() const { return dir_; }
  bool running() const { return started_; }
  std::string url(const std::string& db) const {
    return "postgresql:///" + db + "?host=" + dir_ + "&user=fetchd";
  }

  // A new empty database; returns its URL.
  std::string fresh_url() {
    static std::atomic<int> n{0};
    const std::string db = "t" + std::to_string(::getpid()) + "_" + std::to_string(++n);
    admin("CREATE DATABASE " + db + " STRATEGY FILE_COPY");
    return url(db);
  }

  // Runs one statement in the "postgres" database; throws with the server's message.
  void admin(const std::string& sql) const { exec(url("postgres"), sql); }

  static void exec(const std::string& url, const std::string& sql) {
    PGconn* c = PQconnectdb(url.c_str());
    std::string error;
    if (PQstatus(c) != CONNECTION_OK) {
      error = PQerrorMessage(c);
    } else {
      PGresult* r = PQexec(c, sql.c_str());
      if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        error = PQerrorMessage(c);
      PQclear(r);
    }
    PQfinish(c);
    if (!error.empty()) throw std::runtime_error(sql + ": " + error);
  }

 private:
  // Runs a PostgreSQL program to completion as the cluster's owner; throws unless it exits 0.
  void run(const std::vector<std::string>& argv) const {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork");
    if (pid == 0) {
      // Only async-signal-safe calls between fork and exec.
      if (uid_ != 0) {
        if (::setgroups(0, nullptr) != 0 || ::setgid(gid_) != 0 || ::setuid(uid_) != 0) ::_exit(126);
      }
      const int devnull = ::open("/dev/null", O_WRONLY);
      if (devnull >= 0) ::dup2(devnull, STDOUT_FILENO);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      throw std::runtime_error(argv[0] + " failed (status " + std::to_string(status) + "); log: " + dir_ +
                               "/server.log");
    }
  }

  std::string dir_;
  std::string opts_;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  bool started_ = false;
};

}  // namespace fetchd::testing
