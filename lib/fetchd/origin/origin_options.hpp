// SPDX-License-Identifier: Apache-2.0
#pragma once
// Settings of one origin server (see origin.hpp).

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace fetchd::origin {

struct OriginOptions {
  std::string host = "127.0.0.1";  // numeric IPv4 or IPv6 address
  std::uint16_t port = 0;          // 0: an ephemeral port, reported by Origin::port()
  // Added before every response starts; a request's ?latency=<duration> overrides it.
  std::chrono::milliseconds latency{0};
  // Optional: called with the request target ("/bytes/10/a?seed=1") of every request the parser accepted,
  // before it is answered, so a test can count how often each path was asked for. It runs on the origin's
  // loop thread, concurrently with the test's own thread: it must be thread-safe (e.g. a mutex around a map),
  // fast and must not throw (an exception closes that connection).
  std::function<void(std::string_view target)> on_request;
  // Optional: maps a request target to the one answered instead (on_request still sees the original), so a
  // test can change what one URL serves between attempts: a fault first and the healthy body after, or
  // another seed for "the content changed". The same rules as on_request apply (loop thread, thread-safe,
  // fast, must not throw).
  std::function<std::string(std::string_view target)> rewrite;
};

}  // namespace fetchd::origin
