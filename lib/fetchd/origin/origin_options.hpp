// SPDX-License-Identifier: Apache-2.0
#pragma once
// Settings of one origin server (see origin.hpp).

#include <chrono>
#include <cstdint>
#include <string>

namespace fetchd::origin {

struct OriginOptions {
  std::string host = "127.0.0.1";  // numeric IPv4 or IPv6 address
  std::uint16_t port = 0;          // 0: an ephemeral port, reported by Origin::port()
  // Added before every response starts; a request's ?latency=<duration> overrides it.
  std::chrono::milliseconds latency{0};
};

}  // namespace fetchd::origin
