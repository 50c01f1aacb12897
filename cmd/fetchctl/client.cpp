// SPDX-License-Identifier: Apache-2.0
#include "client.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <vector>

#include "fetchd/core/units.hpp"

namespace fetchd::ctl {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kReadChunk = 256 * 1024;

// poll() takes whole milliseconds as an int: round up (never spin on a sub-millisecond remainder) and cap.
int poll_timeout(Clock::duration remaining) {
  if (remaining <= Clock::duration::zero()) return 0;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(remaining).count();
  return static_cast<int>(std::min<std::int64_t>(ms, INT_MAX));
}

// The name of group `gid`, or its number when it has none.
std::string group_name(gid_t gid) {
  std::vector<char> buffer(16384);
  group entry{};
  group* found = nullptr;
  while (::getgrgid_r(gid, &entry, buffer.data(), buffer.size(), &found) == ERANGE &&
         buffer.size() < (1U << 22))
    buffer.resize(buffer.size() * 2);
  return found != nullptr ? std::string(found->gr_name) : std::to_string(gid);
}

// Why a permission error on `path`: the first folder on the way that this process may not enter (no search
// permission), or else the socket file itself, each with its owner group and mode: the group is what an
// administrator adds a user to (`fetchd` for the packaged service, but a local setup may use any).
std::string permission_hint(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path socket(path);
  fs::path prefix;
  for (auto it = socket.begin(); it != socket.end(); ++it) {
    prefix /= *it;
    if (prefix == socket) break;
    if (::access(prefix.c_str(), X_OK) != 0 && errno == EACCES) {
      struct stat st {};
      if (::stat(prefix.c_str(), &st) != 0) break;
      return fmt::format(
          " (you may not enter the folder {}: group {}, mode {:04o}; is your user in that group?)",
          prefix.string(), group_name(st.st_gid), st.st_mode & 07777U);
    }
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return " (is your user in the socket's group?)";
  return fmt::format(
      " (the socket belongs to group {}, mode {:04o}: is your user in that group? `id -nG` "
      "lists yours; a new membership needs a new login)",
      group_name(st.st_gid), st.st_mode & 07777U);
}

[[noreturn]] void throw_connect_error(const Endpoint& endpoint, int err) {
  throw ClientError(Failure::kUnavailable, fmt::format("cannot connect to {}: {}{}", endpoint.display,
                                                       std::strerror(err), connect_hint(endpoint, err)));
}

void set_send_timeout(int fd, std::chrono::milliseconds timeout) {
  // Bounds a blocking connect(): Linux applies SO_SNDTIMEO to connect on unix and TCP stream sockets (a unix
  // connect blocks while the listener's backlog is full; it then fails with EAGAIN, TCP with EINPROGRESS).
  auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(std::max(timeout, std::chrono::milliseconds(1)));
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(us.count() / 1000000);
  tv.tv_usec = static_cast<suseconds_t>(us.count() % 1000000);
  if (::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
    throw std::system_error(errno, std::generic_category(), "setsockopt(SO_SNDTIMEO)");
}

}  // namespace

std::string connect_hint(const Endpoint& endpoint, int err) {
  switch (err) {
    case ENOENT:
    case ECONNREFUSED:
      return " (is fetchd running?)";
    case EACCES:
    case EPERM:
      return endpoint.kind == Endpoint::Kind::kUnix ? permission_hint(endpoint.path) : std::string();
    default:
      return {};
  }
}

std::optional<Endpoint> parse_endpoint(std::string_view text, std::string* error) {
  auto fail = [&](std::string message) -> std::optional<Endpoint> {
    if (error) *error = std::move(message);
    return std::nullopt;
  };
  Endpoint e;
  e.display = std::string(text);
  if (text.empty()) return fail("the socket path is empty");
  if (text.substr(0, 4) != "tcp:") {
    e.kind = Endpoint::Kind::kUnix;
    e.path = std::string(text);
    if (e.path.size() >= sizeof(sockaddr_un::sun_path))
      return fail(fmt::format("the socket path is longer than {} bytes", sizeof(sockaddr_un::sun_path) - 1));
    return e;
  }
  std::string_view rest = text.substr(4);
  std::string_view host;
  std::string_view port;
  if (!rest.empty() && rest.front() == '[') {
    auto close = rest.find(']');
    if (close == std::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':')
      return fail("expected tcp:[IPv6]:PORT");
    host = rest.substr(1, close - 1);
    port = rest.substr(close + 2);
  } else {
    auto colon = rest.rfind(':');
    if (colon == std::string_view::npos) return fail("expected tcp:HOST:PORT");
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535)
    return fail(fmt::format("'{}' is not a port number (1-65535)", port));
  in6_addr a6{};
  in_addr a4{};
  std::string host_text(host);
  if (::inet_pton(AF_INET, host_text.c_str(), &a4) != 1 && ::inet_pton(AF_INET6, host_text.c_str(), &a6) != 1)
    return fail(fmt::format("'{}' is not a numeric IP address (fetchd listens on loopback only)", host));
  e.kind = Endpoint::Kind::kTcp;
  e.host = host_text;
  e.port = static_cast<std::uint16_t>(value);
  return e;
}

Connection Connection::open(const Endpoint& endpoint, std::chrono::milliseconds timeout) {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family = AF_UNIX;
  if (endpoint.kind == Endpoint::Kind::kUnix) {
    auto* un = reinterpret_cast<sockaddr_un*>(&storage);
    un->sun_family = AF_UNIX;
    if (endpoint.path.size() >= sizeof un->sun_path) throw_connect_error(endpoint, ENAMETOOLONG);
    std::memcpy(un->sun_path, endpoint.path.data(), endpoint.path.size());
    length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + endpoint.path.size() + 1);
  } else {
    auto* in4 = reinterpret_cast<sockaddr_in*>(&storage);
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage);
    if (::inet_pton(AF_INET, endpoint.host.c_str(), &in4->sin_addr) == 1) {
      family = in4->sin_family = AF_INET;
      in4->sin_port = htons(endpoint.port);
      length = sizeof *in4;
    } else if (::inet_pton(AF_INET6, endpoint.host.c_str(), &in6->sin6_addr) == 1) {
      family = in6->sin6_family = AF_INET6;
      in6->sin6_port = htons(endpoint.port);
      length = sizeof *in6;
    } else {
      throw_connect_error(endpoint, EINVAL);
    }
  }
  core::UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw_connect_error(endpoint, errno);
  set_send_timeout(fd.get(), timeout);
  int rc = 0;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&storage), length);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    int err = errno;
    if (err == EAGAIN || err == EINPROGRESS || err == ETIMEDOUT) {
      throw ClientError(Failure::kTimeout, fmt::format("fetchd did not accept the connection on {} within {}",
                                                       endpoint.display, describe_duration(timeout)));
    }
    throw_connect_error(endpoint, err);
  }
  int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0)
    throw std::system_error(errno, std::generic_category(), "fcntl(O_NONBLOCK)");
  return Connection(std::move(fd), endpoint);
}

void Connection::queue(std::string_view line) {
  if (send_closed_) return;  // the peer stopped reading; its reply (or EOF) tells the caller what happened
  if (out_pos_ == out_.size()) {
    out_.clear();
    out_pos_ = 0;
  }
  out_.append(line);
  out_ += '\n';
}

bool Connection::take_line(std::string& line) {
  auto nl = in_.find('\n', scanned_);
  if (nl == std::string::npos) {
    scanned_ = in_.size();
    if (in_.size() - in_pos_ > kMaxReplyLine) {
      throw ClientError(Failure::kProtocol, fmt::format("a reply from fetchd on {} is longer than {} MiB",
                                                        endpoint_.display, kMaxReplyLine >> 20));
    }
    return false;
  }
  std::size_t end = nl;
  if (end > in_pos_ && in_[end - 1] == '\r') --end;
  line.assign(in_, in_pos_, end - in_pos_);
  in_pos_ = scanned_ = nl + 1;
  // Drop consumed input once it dominates the buffer, so a long watch does not keep every line it ever read.
  if (in_pos_ >= (std::size_t{1} << 20) || in_pos_ * 2 >= in_.size()) {
    in_.erase(0, in_pos_);
    scanned_ -= in_pos_;
    in_pos_ = 0;
  }
  return true;
}

void Connection::send_some() {
  while (out_pos_ < out_.size()) {
    ssize_t n =
        ::send(fd_.get(), out_.data() + out_pos_, out_.size() - out_pos_, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      out_pos_ += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    // EPIPE, ECONNRESET, ...: the daemon is gone or closed its side (after line_too_long, say). Stop sending;
    // what it sent before closing is still read, and the end of the stream is reported by next_line().
    send_closed_ = true;
    out_.clear();
    out_pos_ = 0;
    return;
  }
}

void Connection::receive_some() {
  std::size_t old = in_.size();
  in_.resize(old + kReadChunk);
  ssize_t n = 0;
  do {
    n = ::recv(fd_.get(), in_.data() + old, kReadChunk, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  in_.resize(old + static_cast<std::size_t>(std::max<ssize_t>(n, 0)));
  if (n == 0) {
    eof_ = true;
  } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
    eof_ = true;  // ECONNRESET and friends: the connection is gone, like an EOF
  }
}

Connection::Status Connection::next_line(std::string& line, std::chrono::milliseconds timeout, int wake_fd) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (take_line(line)) return Status::kLine;
    if (eof_) return Status::kClosed;
    pollfd fds[2] = {{fd_.get(), POLLIN, 0}, {wake_fd, POLLIN, 0}};
    if (output_pending() && !send_closed_) fds[0].events |= POLLOUT;
    nfds_t count = wake_fd >= 0 ? 2 : 1;
    int rc = ::poll(fds, count, poll_timeout(deadline - Clock::now()));
    if (rc < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), "poll");
    }
    if (rc == 0) return Status::kTimeout;
    if (count == 2 && fds[1].revents != 0) return Status::kWoken;
    if (fds[0].revents & POLLOUT) send_some();
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) receive_some();
  }
}

nlohmann::json read_reply(Connection& connection, std::chrono::milliseconds timeout) {
  std::string line;
  switch (connection.next_line(line, timeout)) {
    case Connection::Status::kLine:
      break;
    case Connection::Status::kTimeout:
      throw ClientError(Failure::kTimeout,
                        fmt::format("no reply from fetchd on {} within {} (--timeout sets the limit)",
                                    connection.endpoint().display, describe_duration(timeout)));
    case Connection::Status::kClosed:
    case Connection::Status::kWoken:
      throw ClientError(Failure::kUnavailable,
                        fmt::format("connection to {} closed {}", connection.endpoint().display,
                                    connection.partial_line() ? "in the middle of a reply"
                                                              : "before the reply (did fetchd stop?)"));
  }
  return parse_reply(line, connection.endpoint());
}

nlohmann::json parse_reply(const std::string& line, const Endpoint& endpoint) {
  nlohmann::json reply = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (reply.is_discarded() || !reply.is_object()) {
    throw ClientError(Failure::kProtocol,
                      fmt::format("fetchd on {} sent a reply that is not a JSON object", endpoint.display));
  }
  auto ok = reply.find("ok");
  if (ok == reply.end() || !ok->is_boolean()) {
    throw ClientError(Failure::kProtocol,
                      fmt::format("fetchd on {} sent a reply without a boolean \"ok\"", endpoint.display));
  }
  return reply;
}

std::string describe_duration(std::chrono::milliseconds d) {
  return core::format_duration(d);
}

}  // namespace fetchd::ctl
