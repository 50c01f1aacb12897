// SPDX-License-Identifier: Apache-2.0
#pragma once
// A plain blocking HTTP/1.1 client for the origin tests: one TCP connection, raw bytes out, responses parsed
// by Content-Length. A receive timeout is only a failsafe so that a bug fails the test instead of hanging it.
// Thread: the test's own thread.

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace fetchd::origin::test {

struct ClientResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;

  bool has(const std::string& name) const { return headers.count(name) != 0; }
  std::string header(const std::string& name) const;  // "" when absent
};

class Client {
 public:
  static constexpr int kTimeoutSeconds = 20;

  explicit Client(std::uint16_t port, const char* host = "127.0.0.1");  // connects; throws on failure
  ~Client();
  Client(Client&& other) noexcept;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  Client& operator=(Client&&) = delete;

  void send(std::string_view bytes);
  void shutdown_write();  // half-close: the server sees EOF after the bytes sent so far
  // Reads one response; a HEAD response (or 204/304) has no body whatever Content-Length says.
  ClientResponse read_response(bool head_request = false);
  // True when the server closed the connection (EOF or reset) before any further byte arrived.
  bool closed_by_server();

  // Raw reads, for fault modes whose framing a response parser would refuse.
  std::string read_raw_head();              // up to and including the empty line
  std::string read_exactly(std::size_t n);  // throws when the connection ends first
  // Everything until the connection ends; returns 0 for EOF or the recv errno (ECONNRESET for a reset).
  // Throws past max bytes, so an endless body cannot fill the test's memory.
  int read_to_end(std::string& out, std::size_t max = 64 << 20);
  // True when no byte (and no EOF) arrives within limit: an observation window, not synchronisation.
  bool quiet_for(std::chrono::milliseconds limit);
  void close();  // the client's full close

 private:
  bool fill();  // one recv into buffer_; false on EOF/error
  std::string read_line();

  int fd_ = -1;
  std::string buffer_;
};

// "GET <target> HTTP/1.1" with Host and the given extra header lines (each ending in \r\n).
std::string request(std::string_view target, std::string_view extra_headers = {},
                    std::string_view method = "GET");

}  // namespace fetchd::origin::test
