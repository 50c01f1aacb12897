// SPDX-License-Identifier: Apache-2.0
#include "fetchd/config/validate.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "fetchd/curl/curl.hpp"
#include "text_util.hpp"

namespace fetchd::config {

std::string url_problem(std::string_view url) {
  using detail::show;
  if (url.empty()) return "URL is empty";
  if (!detail::is_valid_utf8(url)) return "URL is not valid UTF-8";
  for (char c : url) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) return "URL contains a space or control character (percent-encode it, e.g. %20)";
  }
  auto scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return "URL has no scheme; it must start with http:// or https://";
  // Checked before curl parses it: curl would refuse "file:///x" for having no host, which misses the point.
  std::string_view scheme = url.substr(0, scheme_end);
  bool plain = !scheme.empty() && std::all_of(scheme.begin(), scheme.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '+' || c == '-' || c == '.';
  });
  // Not shown when it is not a plain scheme: it could be "user:password@host" of a URL missing its scheme.
  if (!plain) return "URL has no valid scheme; it must start with http:// or https://";
  if (!detail::iequals(scheme, "http") && !detail::iequals(scheme, "https")) {
    return fmt::format("URL scheme {} is not allowed (use http or https)", show(scheme));
  }
  std::string why;
  auto parsed = curl::parse_url(url, &why);
  // curl's messages never contain the URL itself, so userinfo cannot leak through them.
  if (!parsed) return fmt::format("invalid URL: {}", why);
  if (parsed->scheme != "http" && parsed->scheme != "https") {
    return fmt::format("URL scheme {} is not allowed (use http or https)", show(parsed->scheme));
  }
  return {};
}

bool header_name_ok(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), detail::is_token_char);
}

bool header_value_ok(std::string_view value) {
  return std::none_of(value.begin(), value.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\t') || u == 0x7f;
  });
}

}  // namespace fetchd::config
