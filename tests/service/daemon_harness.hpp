// SPDX-License-Identifier: Apache-2.0
#pragma once
// Test support for `fetchd serve` as a real process: a temp dir, the daemon's config, a child spawned with
// the environment systemd would give it (NOTIFY_SOCKET, LISTEN_FDS/LISTEN_PID with the child's own pid), its
// stderr captured through a pipe, the sd_notify datagrams it sends, and a line client for the control socket.
// Every wait is on an event (a datagram, a line, a pidfd, a log line) with a deadline as the failsafe only.
// Thread: the test's thread; each DaemonProcess also runs one stderr reader thread of its own.

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "fetchd/core/unique_fd.hpp"

namespace fetchd::service_test {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

// Failsafe for one awaited event. Generous: the tests also run under sanitizers on a shared 2-core machine.
inline constexpr auto kFailsafe = std::chrono::seconds(60);

inline Clock::time_point deadline_in(Clock::duration d) {
  return Clock::now() + d;
}

// The fetchd binary under test ($FETCHD_BIN, set by tests/meson.build).
std::string fetchd_bin();

// A fresh directory under /tmp (short: Unix socket paths are limited to 107 bytes), removed at destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// The settings the tests vary; the rest of the config is fixed (no low-speed abort, quick log interval).
struct DaemonConfig {
  fs::path socket;
  fs::path state_dir;
  fs::path output_dir;
  int concurrency = 8;
  std::string grace = "10s";
  std::string synchronous = "full";
  int retries = 3;
  std::string strategy = "event-loop";
  struct Job {
    std::string url;
    std::string dest;
  };
  std::vector<Job> jobs;
  std::string control_extra;  // lines added to the control section ("  tcp: ...\n")
  std::string state_extra;    // lines added to the state section
  std::string extra_yaml;     // appended verbatim (top-level sections)

  std::string yaml() const;
};
void write_file(const fs::path& path, std::string_view text);
std::string read_file(const fs::path& path);

// The receiving end of sd_notify: an AF_UNIX datagram socket bound at `path`, read by a thread of its own
// into a list of every message in order. It must be read all the time, as systemd does: the kernel queues
// only ~10 datagrams (net.unix.max_dgram_qlen), and then the daemon's sd_notify blocks its loop.
class NotifyListener {
 public:
  explicit NotifyListener(fs::path path);
  ~NotifyListener();
  NotifyListener(const NotifyListener&) = delete;
  NotifyListener& operator=(const NotifyListener&) = delete;
  const fs::path& path() const { return path_; }

  // Waits for a message holding the line `line` (e.g. "READY=1") at index >= from, sent by `pid` (0: anyone;
  // the kernel tells the sender with SO_PASSCRED); returns its index, or nullopt at the deadline or as soon
  // as `stop_fd` (a pidfd) becomes readable with nothing found.
  std::optional<std::size_t> wait_for(std::string_view line, std::size_t from, Clock::time_point deadline,
                                      int stop_fd = -1, pid_t pid = 0);
  // The same for a line that starts with `prefix` (e.g. "STATUS=").
  std::optional<std::size_t> wait_prefix(std::string_view prefix, std::size_t from,
                                         Clock::time_point deadline);
  std::vector<std::string> messages() const;  // a copy of every message so far
  std::size_t size() const;
  // Index of the first message at or after `from` holding `line` (or a line starting with it), without
  // waiting.
  std::optional<std::size_t> find(std::string_view line, std::size_t from = 0, bool prefix = false,
                                  pid_t pid = 0) const;

 private:
  void run();
  std::optional<std::size_t> wait(std::string_view line, bool prefix, std::size_t from,
                                  Clock::time_point deadline, int stop_fd, pid_t pid);
  fs::path path_;
  core::UniqueFd fd_;
  core::UniqueFd stop_;     // eventfd: ends the thread
  core::UniqueFd changed_;  // eventfd: a message arrived
  mutable std::mutex mutex_;
  std::vector<std::string> messages_;
  std::vector<pid_t> senders_;  // per message
  std::thread thread_;
};

// One line-oriented client connection to the control socket. Blocking I/O bounded by poll().
class LineClient {
 public:
  // Connects once; throws std::runtime_error (with errno's text) when it cannot.
  explicit LineClient(const fs::path& socket);
  // nullopt (with the errno in *error) when the connection is refused or the socket is missing.
  static std::optional<LineClient> try_connect(const fs::path& socket, int* error = nullptr);
  // Over TCP to 127.0.0.1:port; throws when it cannot connect.
  static LineClient connect_tcp(int port);

  // Writes all of data before the deadline; false when the peer is gone or the deadline passed.
  bool send_raw(std::string_view data, Clock::time_point deadline = deadline_in(kFailsafe));
  bool send(const json& request) { return send_raw(request.dump() + "\n"); }
  // The next line without its '\n'; nullopt at EOF (eof() is then true), on a reset, or at the deadline.
  std::optional<std::string> read_line(Clock::time_point deadline = deadline_in(kFailsafe));
  // Sends one request and parses the next line; throws std::runtime_error when there is none or it is not
  // JSON.
  json request(const json& request, Clock::duration limit = kFailsafe);
  // Reads until a line satisfying pred (parsed as JSON); throws at EOF or the deadline.
  json read_until(const std::function<bool(const json&)>& pred, Clock::time_point deadline);
  bool eof() const { return eof_; }
  int fd() const { return fd_.get(); }
  void close() { fd_.reset(); }

 private:
  explicit LineClient(core::UniqueFd fd) : fd_(std::move(fd)) {}
  core::UniqueFd fd_;
  std::string buffer_;
  bool eof_ = false;
};

// `fetchd serve --config FILE` as a child process. Starts in the constructor.
class DaemonProcess {
 public:
  struct Options {
    fs::path config;
    NotifyListener* notify = nullptr;  // NOTIFY_SOCKET is set when given
    int listen_fd = -1;  // passed as fd 3 with LISTEN_FDS=1 and LISTEN_PID=<child pid> when >= 0
    std::vector<std::string> extra_args = {};
  };
  explicit DaemonProcess(Options options);
  ~DaemonProcess();  // SIGKILL and reap when still running; prints the log when the test failed
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  pid_t pid() const { return pid_; }
  bool running() const { return !exit_code_.has_value(); }

  // Waits for READY=1 (sent after this start). False when the process exited first or at the deadline.
  bool wait_ready(Clock::time_point deadline = deadline_in(kFailsafe));
  // Milliseconds from fork to the READY=1 datagram (after a successful wait_ready).
  double ready_ms() const { return ready_ms_; }
  std::size_t notify_start() const { return notify_start_; }  // index of the first message of this process

  void signal(int signum);
  // SIGKILL now and reap.
  void kill9();
  // The exit code (-1 when killed by a signal) once it exited within `limit`; nullopt otherwise (still
  // running).
  std::optional<int> wait_exit(Clock::duration limit);

  std::string log() const;
  // Waits until stderr holds `needle` (searching from byte `from`); returns the offset after it or nullopt.
  std::optional<std::size_t> wait_log(std::string_view needle, Clock::time_point deadline,
                                      std::size_t from = 0);
  std::size_t log_size() const;

 private:
  void read_stderr(int fd, int stop_fd);
  void await_log_end();

  Options options_;
  pid_t pid_ = -1;
  core::UniqueFd pidfd_;
  core::UniqueFd stop_event_;  // eventfd: ends the reader thread
  std::thread reader_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::string log_;
  bool log_closed_ = false;
  std::optional<int> exit_code_;
  Clock::time_point spawned_;
  double ready_ms_ = 0;
  std::size_t notify_start_ = 0;
};

// Per-path request counts of an origin, fed by OriginOptions::on_request (origin thread) and read by the
// test.
class RequestCounter {
 public:
  void add(std::string_view target);
  std::uint64_t count(const std::string& path) const;  // path without the query
  std::map<std::string, std::uint64_t> snapshot() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::uint64_t> counts_;
};

// SHA-256 of a file, lower-case hex; "" when it cannot be read.
std::string file_sha256_hex(const fs::path& path);

// Rows of jobs.db read through a read-only SQLite connection (the daemon must not be running, or it may be: a
// WAL reader sees the last commit). id -> state.
std::map<std::int64_t, std::string> read_job_states(const fs::path& db);

// The same with the columns a test of the shutdown looks at. id -> job.
struct StoredJob {
  std::string state;
  std::string error;
  int attempts = 0;
};
std::map<std::int64_t, StoredJob> read_jobs(const fs::path& db);

// Every job of the daemon through `list` with keyset paging (limit per page).
std::vector<json> list_all(LineClient& client, std::uint64_t limit = 1000,
                           std::optional<std::string> state = {});

}  // namespace fetchd::service_test
