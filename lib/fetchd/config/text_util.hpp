// SPDX-License-Identifier: Apache-2.0
#pragma once
// Small string helpers shared by the config loader and printer. Internal to lib/fetchd/config/.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fetchd::config::detail {

// ASCII case-insensitive equality (HTTP header names, suggestions).
bool iequals(std::string_view a, std::string_view b);

// Levenshtein distance, ASCII case-insensitive.
std::size_t edit_distance(std::string_view a, std::string_view b);

// The candidate closest to `word` when it is close enough to be a plausible typo, else nullopt.
std::optional<std::string_view> closest_match(std::string_view word,
                                              const std::vector<std::string_view>& candidates);

// "a, b, c"
std::string join(const std::vector<std::string_view>& items);

bool is_valid_utf8(std::string_view s);

// Control characters would break the one-error-per-line format; shown as \xNN.
std::string escape(std::string_view s);
// A user-supplied value quoted for a message: escaped, cut short, in single quotes.
std::string show(std::string_view s);
// RFC 9110 §5.6.2 tchar (header names).
bool is_token_char(char c);

// The URL with its userinfo ("user:pass@") replaced by `replacement`; unchanged when it has none.
std::string replace_userinfo(std::string_view url, std::string_view replacement);

}  // namespace fetchd::config::detail
