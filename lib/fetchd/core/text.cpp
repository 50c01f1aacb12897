// SPDX-License-Identifier: Apache-2.0
#include "fetchd/core/text.hpp"

namespace fetchd::core {

namespace {
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = hex_value(s[i + 1]);
      int lo = hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

std::string redact_password(const std::string& url) {
  // URI form: scheme://user:password@host...
  auto scheme = url.find("://");
  if (scheme != std::string::npos) {
    auto at = url.find('@', scheme + 3);
    auto slash = url.find('/', scheme + 3);
    if (at != std::string::npos && (slash == std::string::npos || at < slash)) {
      auto colon = url.find(':', scheme + 3);
      if (colon != std::string::npos && colon < at) return url.substr(0, colon + 1) + "***" + url.substr(at);
    }
  }
  // Both forms: a password parameter ("password=..." as a key=value pair or in the URI's query).
  std::string out = url;
  for (std::size_t pos = out.find("password="); pos != std::string::npos;
       pos = out.find("password=", pos + 1)) {
    const std::size_t start = pos + 9;
    std::size_t end = start;
    while (end < out.size() && out[end] != ' ' && out[end] != '&') ++end;
    out.replace(start, end - start, "***");
  }
  return out;
}

}  // namespace fetchd::core
