// SPDX-License-Identifier: Apache-2.0
#pragma once
// Small text helpers shared by components that parse or show URLs.

#include <string>
#include <string_view>

namespace fetchd::core {

// "%41" -> "A"; a '%' not followed by two hex digits stays as it is (browsers do the same). '+' is not a space.
std::string percent_decode(std::string_view s);

// A connection URL or libpq key=value string with its password replaced by "***" (userinfo "user:pw@" and
// "password=" parameters), for logs, errors and config dumps.
std::string redact_password(const std::string& url);

}  // namespace fetchd::core
