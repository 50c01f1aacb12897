// SPDX-License-Identifier: Apache-2.0
#include "daemon_harness.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace fetchd::service_test {

namespace {

// The origin runs in this process and writes to sockets whose peer may be a daemon killed with SIGKILL a
// moment ago: EPIPE must be an error code, not a signal that ends the test run (design.md: ignore SIGPIPE).
// Children get the default disposition back before exec.
[[maybe_unused]] const bool kSigpipeIgnored = [] { return std::signal(SIGPIPE, SIG_IGN) != SIG_ERR; }();

int ms_until(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<std::int64_t>(left, 0, 1'000'000));
}

[[noreturn]] void fail_errno(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

sockaddr_un unix_address(const fs::path& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string s = path.string();
  if (s.size() >= sizeof addr.sun_path) throw std::runtime_error("socket path too long: " + s);
  std::memcpy(addr.sun_path, s.c_str(), s.size() + 1);
  return addr;
}

bool has_line(std::string_view message, std::string_view line, bool prefix) {
  std::size_t pos = 0;
  while (pos <= message.size()) {
    auto nl = message.find('\n', pos);
    auto end = nl == std::string_view::npos ? message.size() : nl;
    auto got = message.substr(pos, end - pos);
    if (prefix ? got.starts_with(line) : got == line) return true;
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  return false;
}

std::string quoted(const fs::path& p) {
  return json(p.string()).dump();
}

// read() that never blocks, whatever the descriptor's flags.
ssize_t read_now(int fd, char* buf, std::size_t size) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, 0) <= 0) return 0;
  return read(fd, buf, size);
}

}  // namespace

std::string fetchd_bin() {
  const char* bin = std::getenv("FETCHD_BIN");
  if (!bin || !*bin) throw std::runtime_error("FETCHD_BIN is not set (run through meson test)");
  return bin;
}

// ------------------------------------------------------------------------------------------------ files

TempDir::TempDir() {
  char tmpl[] = "/tmp/fetchd-svc-XXXXXX";
  if (!mkdtemp(tmpl)) fail_errno("mkdtemp");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void write_file(const fs::path& path, std::string_view text) {
  // Written beside and renamed, so that a daemon reading it on SIGHUP never sees half a file.
  fs::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    if (!out) throw std::runtime_error("cannot write " + tmp.string());
  }
  fs::rename(tmp, path);
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string DaemonConfig::yaml() const {
  std::ostringstream y;
  y << "strategy:\n  kind: " << strategy << "\n  concurrency: " << concurrency << "\n";
  y << "output:\n  dir: " << quoted(output_dir) << "\n";
  // No low-speed abort: some tests hold a response back for 30 s on purpose.
  y << "defaults:\n  connect_timeout: 5s\n  retries: " << retries << "\n  low_speed:\n    limit: 0\n";
  y << "log:\n  level: info\n  interval: 1s\n";
  y << "control:\n  socket: " << quoted(socket) << "\n" << control_extra;
  y << "state:\n  dir: " << quoted(state_dir) << "\n  synchronous: " << synchronous << "\n" << state_extra;
  y << "shutdown:\n  grace: " << grace << "\n";
  if (!jobs.empty()) {
    y << "jobs:\n";
    for (const auto& j : jobs)
      y << "  - url: " << json(j.url).dump() << "\n    dest: " << json(j.dest).dump() << "\n";
  }
  y << extra_yaml;
  return y.str();
}

std::string file_sha256_hex(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) return "";
  std::array<char, 65536> buf{};
  while (in) {
    in.read(buf.data(), buf.size());
    if (in.gcount() > 0) EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<std::size_t>(in.gcount()));
  }
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), md.data(), &len) != 1) return "";
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

std::map<std::int64_t, std::string> read_job_states(const fs::path& db) {
  std::map<std::int64_t, std::string> out;
  for (auto& [id, job] : read_jobs(db)) out[id] = std::move(job.state);
  return out;
}

std::map<std::int64_t, StoredJob> read_jobs(const fs::path& db) {
  // Read-only, so the test neither checkpoints nor alters the WAL the next daemon start recovers from.
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(db.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr);
  std::unique_ptr<sqlite3, decltype(&sqlite3_close)> conn(raw, &sqlite3_close);
  if (rc != SQLITE_OK) throw std::runtime_error("open " + db.string() + ": " + sqlite3_errstr(rc));
  sqlite3_busy_timeout(raw, 5000);
  sqlite3_stmt* stmt = nullptr;
  rc = sqlite3_prepare_v2(raw, "SELECT id, state, error, attempts FROM jobs", -1, &stmt, nullptr);
  std::unique_ptr<sqlite3_stmt, decltype(&sqlite3_finalize)> st(stmt, &sqlite3_finalize);
  if (rc != SQLITE_OK) throw std::runtime_error("prepare on " + db.string() + ": " + sqlite3_errmsg(raw));
  std::map<std::int64_t, StoredJob> out;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    StoredJob& job = out[sqlite3_column_int64(stmt, 0)];
    job.state = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 1));
    job.error = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 2));
    job.attempts = sqlite3_column_int(stmt, 3);
  }
  if (rc != SQLITE_DONE) throw std::runtime_error("read " + db.string() + ": " + sqlite3_errmsg(raw));
  return out;
}

// ------------------------------------------------------------------------------------------------ notify

NotifyListener::NotifyListener(fs::path path) : path_(std::move(path)) {
  fd_.reset(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd_) fail_errno("socket(AF_UNIX, SOCK_DGRAM)");
  auto addr = unix_address(path_);
  if (bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    fail_errno("bind " + path_.string());
  int on = 1;
  if (setsockopt(fd_.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0) fail_errno("SO_PASSCRED");
  stop_.reset(eventfd(0, EFD_CLOEXEC));
  changed_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop_ || !changed_) fail_errno("eventfd");
  thread_ = std::thread([this] { run(); });
}

NotifyListener::~NotifyListener() {
  std::uint64_t one = 1;
  if (write(stop_.get(), &one, sizeof one) < 0) std::perror("eventfd write");
  thread_.join();
}

void NotifyListener::run() {
  std::array<char, 65536> buf{};
  for (;;) {
    std::array<pollfd, 2> p{pollfd{fd_.get(), POLLIN, 0}, pollfd{stop_.get(), POLLIN, 0}};
    int r = poll(p.data(), p.size(), -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 || (p[1].revents & POLLIN)) return;
    iovec iov{buf.data(), buf.size()};
    alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(ucred)) + 256> control{};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    ssize_t n = recvmsg(fd_.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) continue;  // EAGAIN/EINTR
    pid_t sender = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
        ucred cred{};
        std::memcpy(&cred, CMSG_DATA(c), sizeof cred);
        sender = cred.pid;
      } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        // sd_notify may pass descriptors (FDSTORE): never keep them open.
        std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t k = 0; k < count; ++k) {
          int fd = -1;
          std::memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof fd);
          ::close(fd);
        }
      }
    }
    {
      std::lock_guard lock(mutex_);
      messages_.emplace_back(buf.data(), static_cast<std::size_t>(n));
      senders_.push_back(sender);
    }
    std::uint64_t one = 1;
    if (write(changed_.get(), &one, sizeof one) < 0 && errno != EAGAIN) std::perror("eventfd write");
  }
}

std::vector<std::string> NotifyListener::messages() const {
  std::lock_guard lock(mutex_);
  return messages_;
}

std::size_t NotifyListener::size() const {
  std::lock_guard lock(mutex_);
  return messages_.size();
}

std::optional<std::size_t> NotifyListener::find(std::string_view line, std::size_t from, bool prefix,
                                                pid_t pid) const {
  std::lock_guard lock(mutex_);
  for (std::size_t i = from; i < messages_.size(); ++i) {
    if ((pid == 0 || senders_[i] == pid) && has_line(messages_[i], line, prefix)) return i;
  }
  return std::nullopt;
}

std::optional<std::size_t> NotifyListener::wait_for(std::string_view line, std::size_t from,
                                                    Clock::time_point deadline, int stop_fd, pid_t pid) {
  return wait(line, false, from, deadline, stop_fd, pid);
}

std::optional<std::size_t> NotifyListener::wait_prefix(std::string_view prefix, std::size_t from,
                                                       Clock::time_point deadline) {
  return wait(prefix, true, from, deadline, -1, 0);
}

// One waiter at a time (the test's thread): it consumes the "changed" eventfd.
std::optional<std::size_t> NotifyListener::wait(std::string_view line, bool prefix, std::size_t from,
                                                Clock::time_point deadline, int stop_fd, pid_t pid) {
  for (;;) {
    if (auto i = find(line, from, prefix, pid)) return i;
    if (Clock::now() >= deadline) return std::nullopt;
    std::array<pollfd, 2> p{pollfd{changed_.get(), POLLIN, 0}, pollfd{stop_fd, POLLIN, 0}};
    int n = poll(p.data(), stop_fd >= 0 ? 2 : 1, ms_until(deadline));
    if (n < 0 && errno != EINTR) return std::nullopt;
    if (p[0].revents & POLLIN) {
      std::uint64_t count = 0;
      if (read(changed_.get(), &count, sizeof count) < 0 && errno != EAGAIN) return std::nullopt;
    }
    if (stop_fd >= 0 && (p[1].revents & POLLIN)) return find(line, from, prefix, pid);  // the process exited
  }
}

// ------------------------------------------------------------------------------------------------ client

LineClient::LineClient(const fs::path& socket) {
  int error = 0;
  auto c = try_connect(socket, &error);
  if (!c) throw std::runtime_error("connect " + socket.string() + ": " + std::strerror(error));
  *this = std::move(*c);
}

std::optional<LineClient> LineClient::try_connect(const fs::path& socket, int* error) {
  core::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) fail_errno("socket(AF_UNIX)");
  auto addr = unix_address(socket);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (error) *error = errno;
    return std::nullopt;
  }
  return LineClient(std::move(fd));
}

LineClient LineClient::connect_tcp(int port) {
  core::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) fail_errno("socket(AF_INET)");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    fail_errno("connect 127.0.0.1:" + std::to_string(port));
  }
  return LineClient(std::move(fd));
}

bool LineClient::send_raw(std::string_view data, Clock::time_point deadline) {
  while (!data.empty()) {
    ssize_t n = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return false;
    pollfd p{fd_.get(), POLLOUT, 0};
    if (poll(&p, 1, ms_until(deadline)) <= 0) return false;
    if (p.revents & (POLLERR | POLLHUP)) return false;
  }
  return true;
}

std::optional<std::string> LineClient::read_line(Clock::time_point deadline) {
  for (;;) {
    if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    if (eof_) return std::nullopt;
    pollfd p{fd_.get(), POLLIN, 0};
    int r = poll(&p, 1, ms_until(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return std::nullopt;  // the deadline
    std::array<char, 65536> buf{};
    ssize_t n = recv(fd_.get(), buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      eof_ = true;  // EOF or a reset: nothing more will come
      continue;
    }
    buffer_.append(buf.data(), static_cast<std::size_t>(n));
  }
}

json LineClient::request(const json& request, Clock::duration limit) {
  auto deadline = deadline_in(limit);
  if (!send_raw(request.dump() + "\n", deadline)) throw std::runtime_error("cannot send " + request.dump());
  auto line = read_line(deadline);
  if (!line) throw std::runtime_error(std::string(eof_ ? "EOF" : "no answer") + " after " + request.dump());
  return json::parse(*line);
}

json LineClient::read_until(const std::function<bool(const json&)>& pred, Clock::time_point deadline) {
  for (;;) {
    auto line = read_line(deadline);
    if (!line) throw std::runtime_error(eof_ ? "EOF while waiting for an event" : "no such event in time");
    json j = json::parse(*line);
    if (pred(j)) return j;
  }
}

std::vector<json> list_all(LineClient& client, std::uint64_t limit, std::optional<std::string> state) {
  std::vector<json> out;
  std::uint64_t after = 0;
  for (int page = 0; page < 100'000; ++page) {
    json req{{"op", "list"}, {"limit", limit}, {"after", after}};
    if (state) req["state"] = *state;
    json r = client.request(req);
    if (!r.value("ok", false)) throw std::runtime_error("list failed: " + r.dump());
    for (auto& j : r["result"]["jobs"]) out.push_back(j);
    const json& next = r["result"]["next_after"];
    if (next.is_null()) return out;
    after = next.get<std::uint64_t>();
  }
  throw std::runtime_error("list: paging does not end");
}

// ------------------------------------------------------------------------------------------------ process

DaemonProcess::DaemonProcess(Options options) : options_(std::move(options)) {
  std::vector<std::string> args{fetchd_bin(), "serve", "--config", options_.config.string()};
  for (const auto& a : options_.extra_args) args.push_back(a);

  // The environment of a service: our own minus anything systemd-ish inherited, plus what the test asks for.
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string_view v(*e);
    if (v.starts_with("NOTIFY_SOCKET=") || v.starts_with("LISTEN_") || v.starts_with("WATCHDOG_")) continue;
    env.emplace_back(v);
  }
  if (options_.notify) {
    env.push_back("NOTIFY_SOCKET=" + options_.notify->path().string());
    notify_start_ = options_.notify->size();
  }
  std::size_t listen_pid_index = 0;
  if (options_.listen_fd >= 0) {
    env.emplace_back("LISTEN_FDS=1");
    listen_pid_index = env.size();
    // The child's own pid is written into this slot after fork (sd_listen_fds checks LISTEN_PID == getpid()).
    env.push_back("LISTEN_PID=" + std::string(20, '\0'));
  }

  // Everything the child touches is prepared here: after fork only async-signal-safe calls are allowed.
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  char* listen_pid_digits =
      listen_pid_index ? env[listen_pid_index].data() + std::strlen("LISTEN_PID=") : nullptr;

  std::array<int, 2> pipe_fds{};
  if (pipe2(pipe_fds.data(), O_CLOEXEC) != 0) fail_errno("pipe2");
  core::UniqueFd read_end(pipe_fds[0]);
  core::UniqueFd write_end(pipe_fds[1]);
  core::UniqueFd devnull(open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!devnull) fail_errno("open /dev/null");
  const int listen_fd = options_.listen_fd;

  spawned_ = Clock::now();
  pid_t pid = fork();
  if (pid < 0) fail_errno("fork");
  if (pid == 0) {
    // Killed with the test: a crashed or aborted test binary must not leave a daemon behind.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) _exit(126);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int s : {SIGPIPE, SIGTERM, SIGHUP, SIGINT}) sigaction(s, &dfl, nullptr);
    if (dup2(devnull.get(), 0) < 0 || dup2(write_end.get(), 1) < 0 || dup2(write_end.get(), 2) < 0)
      _exit(126);
    if (listen_fd >= 0) {
      if (listen_fd == 3) {
        if (fcntl(3, F_SETFD, 0) < 0) _exit(126);  // dup2 onto itself would keep FD_CLOEXEC
      } else if (dup2(listen_fd, 3) < 0) {
        _exit(126);
      }
      // LISTEN_PID=<getpid()>, formatted by hand.
      char digits[20];
      int n = 0;
      for (auto p = static_cast<unsigned long>(getpid()); p > 0 || n == 0; p /= 10)
        digits[n++] = char('0' + p % 10);
      for (int i = 0; i < n; ++i) listen_pid_digits[i] = digits[n - 1 - i];
      listen_pid_digits[n] = '\0';
    }
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  pid_ = pid;
  write_end.reset();
  pidfd_.reset(static_cast<int>(syscall(SYS_pidfd_open, pid_, 0)));
  if (!pidfd_) fail_errno("pidfd_open");
  stop_event_.reset(eventfd(0, EFD_CLOEXEC));
  if (!stop_event_) fail_errno("eventfd");
  reader_ =
      std::thread([this, fd = std::move(read_end)]() mutable { read_stderr(fd.get(), stop_event_.get()); });
}

DaemonProcess::~DaemonProcess() {
  if (running()) kill9();
  std::uint64_t one = 1;
  if (write(stop_event_.get(), &one, sizeof one) < 0) std::perror("eventfd write");
  reader_.join();
  {
    // A sanitizer report of the daemon (sanitizer builds) fails the test that ran it.
    std::lock_guard lock(mutex_);
    for (const char* report : {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"}) {
      EXPECT_EQ(log_.find(report), std::string::npos)
          << "fetchd serve (pid " << pid_ << ") reported: " << report;
    }
  }
  if (::testing::Test::HasFailure()) {
    std::lock_guard lock(mutex_);
    constexpr std::size_t kTail = 12000;
    std::cerr << "---- stderr of fetchd serve (pid " << pid_ << ")"
              << (log_.size() > kTail ? ", last part" : "") << " ----\n"
              << (log_.size() > kTail ? log_.substr(log_.size() - kTail) : log_) << "---- end ----\n";
  }
}

void DaemonProcess::read_stderr(int fd, int stop_fd) {
  std::array<char, 16384> buf{};
  for (;;) {
    std::array<pollfd, 2> p{pollfd{fd, POLLIN, 0}, pollfd{stop_fd, POLLIN, 0}};
    int r = poll(p.data(), 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;
    if (p[1].revents & POLLIN) {
      // Asked to stop: take what is still in the pipe (the process is gone), but never wait for more.
      for (;;) {
        ssize_t n = read_now(fd, buf.data(), buf.size());
        if (n <= 0) break;
        std::lock_guard lock(mutex_);
        log_.append(buf.data(), static_cast<std::size_t>(n));
      }
      break;
    }
    ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    std::lock_guard lock(mutex_);
    log_.append(buf.data(), static_cast<std::size_t>(n));
    changed_.notify_all();
  }
  std::lock_guard lock(mutex_);
  log_closed_ = true;
  changed_.notify_all();
}

bool DaemonProcess::wait_ready(Clock::time_point deadline) {
  if (!options_.notify) throw std::logic_error("wait_ready needs a NotifyListener");
  auto i = options_.notify->wait_for("READY=1", notify_start_, deadline, pidfd_.get(), pid_);
  if (!i) return false;
  ready_ms_ = std::chrono::duration<double, std::milli>(Clock::now() - spawned_).count();
  return true;
}

void DaemonProcess::signal(int signum) {
  if (running()) ::kill(pid_, signum);
}

void DaemonProcess::kill9() {
  if (!running()) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  await_log_end();
}

void DaemonProcess::await_log_end() {
  // The process is gone, so its stderr pipe reaches EOF as soon as the reader has taken everything (bounded:
  // a child of the daemon could still hold the pipe open).
  std::unique_lock lock(mutex_);
  changed_.wait_until(lock, deadline_in(std::chrono::seconds(5)), [this] { return log_closed_; });
}

std::optional<int> DaemonProcess::wait_exit(Clock::duration limit) {
  if (!running()) return exit_code_;
  auto deadline = deadline_in(limit);
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      await_log_end();
      return exit_code_;
    }
    if (r < 0 && errno != EINTR) return std::nullopt;
    if (Clock::now() >= deadline) return std::nullopt;
    pollfd p{pidfd_.get(), POLLIN, 0};
    poll(&p, 1, ms_until(deadline));  // readable once the process exited
  }
}

std::string DaemonProcess::log() const {
  std::lock_guard lock(mutex_);
  return log_;
}

std::size_t DaemonProcess::log_size() const {
  std::lock_guard lock(mutex_);
  return log_.size();
}

std::optional<std::size_t> DaemonProcess::wait_log(std::string_view needle, Clock::time_point deadline,
                                                   std::size_t from) {
  std::unique_lock lock(mutex_);
  for (;;) {
    if (auto p = log_.find(needle, std::min(from, log_.size())); p != std::string::npos)
      return p + needle.size();
    if (log_closed_) return std::nullopt;
    if (changed_.wait_until(lock, deadline) == std::cv_status::timeout) {
      auto p = log_.find(needle, std::min(from, log_.size()));
      return p == std::string::npos ? std::nullopt : std::optional(p + needle.size());
    }
  }
}

// ------------------------------------------------------------------------------------------------ origin

void RequestCounter::add(std::string_view target) {
  std::string path(target.substr(0, target.find('?')));
  std::lock_guard lock(mutex_);
  ++counts_[path];
}

std::uint64_t RequestCounter::count(const std::string& path) const {
  std::lock_guard lock(mutex_);
  auto it = counts_.find(path);
  return it == counts_.end() ? 0 : it->second;
}

std::map<std::string, std::uint64_t> RequestCounter::snapshot() const {
  std::lock_guard lock(mutex_);
  return counts_;
}

}  // namespace fetchd::service_test
