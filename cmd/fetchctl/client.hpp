// SPDX-License-Identifier: Apache-2.0
#pragma once
// fetchctl's side of the control socket: one stream connection (AF_UNIX, or TCP on loopback) carrying one
// JSON object per line in each direction. Plain blocking-style I/O on a non-blocking socket: every wait is a
// poll() with a deadline, sending and receiving interleave so pipelined requests cannot deadlock against the
// replies. One Connection belongs to one thread.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "fetchd/core/unique_fd.hpp"

namespace fetchd::ctl {

inline constexpr std::string_view kDefaultSocket = "/run/fetchd/fetchd.sock";
// A reply line longer than this is treated as a protocol error rather than growing without bound.
inline constexpr std::size_t kMaxReplyLine = std::size_t{256} << 20;

struct Endpoint {
  enum class Kind { kUnix, kTcp };
  Kind kind = Kind::kUnix;
  std::string path;        // kUnix: the socket file
  std::string host;        // kTcp: numeric IPv4 or IPv6 address (no brackets)
  std::uint16_t port = 0;  // kTcp
  std::string display;     // as given by the user, for messages
};

// "PATH" (a unix socket) or "tcp:HOST:PORT" with a numeric HOST ("tcp:127.0.0.1:7070", "tcp:[::1]:7070").
std::optional<Endpoint> parse_endpoint(std::string_view text, std::string* error);

// What follows "cannot connect to PATH: <error>" to say what to do, "" when nothing useful: for a missing or
// refused socket "(is fetchd running?)"; for a permission error on a Unix socket the group (by name) and mode
// of the first folder on the way this process may not enter, or else of the socket file, since membership of
// that group is what grants access.
std::string connect_hint(const Endpoint& endpoint, int err);

// Why talking to the daemon failed; each maps to one exit code (see commands.hpp).
enum class Failure {
  kUnavailable,  // cannot connect, or the connection dropped before the reply
  kTimeout,      // no reply (or no connection) within the timeout
  kProtocol,     // the daemon sent something that is not a protocol reply
};

class ClientError : public std::runtime_error {
 public:
  ClientError(Failure failure, const std::string& message) : std::runtime_error(message), failure_(failure) {}
  Failure failure() const { return failure_; }

 private:
  Failure failure_;
};

class Connection {
 public:
  enum class Status { kLine, kTimeout, kClosed, kWoken };

  // Connects within `timeout`. Throws ClientError: kUnavailable ("cannot connect to PATH: reason (hint)"), or
  // kTimeout when the daemon does not accept in time (its listen backlog is full).
  static Connection open(const Endpoint& endpoint, std::chrono::milliseconds timeout);

  // Appends `line` and '\n' to what is still to be sent; next_line() sends it while it waits.
  void queue(std::string_view line);
  bool output_pending() const { return out_pos_ < out_.size(); }
  // Sends what the socket takes right now without waiting (the rest goes out in next_line()), so that a
  // request travels while the caller prepares the next one.
  void send_now() { send_some(); }

  // Sends queued output and receives until one complete line is there (returned without "\n" or "\r\n"), the
  // timeout passes, the peer closes (kClosed; also on a reset), or `wake_fd` (if >= 0) becomes readable.
  // Throws ClientError(kProtocol) for a line over kMaxReplyLine.
  Status next_line(std::string& line, std::chrono::milliseconds timeout, int wake_fd = -1);

  // True when the peer closed after sending part of a line (a reply cut in the middle).
  bool partial_line() const { return in_.size() > in_pos_; }
  const Endpoint& endpoint() const { return endpoint_; }

 private:
  Connection(core::UniqueFd fd, Endpoint endpoint) : fd_(std::move(fd)), endpoint_(std::move(endpoint)) {}
  bool take_line(std::string& line);
  void send_some();
  void receive_some();

  core::UniqueFd fd_;
  Endpoint endpoint_;
  std::string out_;
  std::size_t out_pos_ = 0;
  std::string in_;
  std::size_t in_pos_ = 0;    // start of the unconsumed input
  std::size_t scanned_ = 0;   // in_[in_pos_, scanned_) holds no '\n'
  bool eof_ = false;          // the peer closed (or reset) the connection
  bool send_closed_ = false;  // the peer no longer reads: drop output, keep reading what it sent
};

// Reads the next line and parses it as a reply object. Throws ClientError: kUnavailable when the connection
// closes first, kTimeout after `timeout`, kProtocol when the line is not a JSON object with a boolean "ok".
nlohmann::json read_reply(Connection& connection, std::chrono::milliseconds timeout);
// The parsing half of read_reply, for callers that wait with next_line() themselves.
nlohmann::json parse_reply(const std::string& line, const Endpoint& endpoint);

// "30s", "1.5s", "2m", "250ms": for messages about timeouts.
std::string describe_duration(std::chrono::milliseconds d);

}  // namespace fetchd::ctl
