// SPDX-License-Identifier: Apache-2.0
#pragma once
// The checks a job must pass wherever it comes from (the YAML job list or the control socket), so both
// refuse the same things with the same words. Pure functions; any thread.

#include <string>
#include <string_view>

namespace fetchd::config {

// Checks a URL with curl's parser (the one that will fetch it): http or https only. Returns the error message,
// or "" when fine. The message never contains the URL's userinfo.
std::string url_problem(std::string_view url);

// A header name is an RFC 9110 token.
bool header_name_ok(std::string_view name);
// A header value (or the user agent) is a single line: no control character but tab.
bool header_value_ok(std::string_view value);

}  // namespace fetchd::config
