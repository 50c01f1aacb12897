// SPDX-License-Identifier: Apache-2.0
#pragma once
// Small text helpers shared by components that parse URLs: one percent-decoder for all of them.

#include <string>
#include <string_view>

namespace fetchd::core {

// "%41" -> "A"; a '%' not followed by two hex digits stays as it is (browsers do the same). '+' is not a space.
std::string percent_decode(std::string_view s);

}  // namespace fetchd::core
