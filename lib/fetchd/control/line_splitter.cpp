// SPDX-License-Identifier: Apache-2.0
#include "fetchd/control/line_splitter.hpp"

namespace fetchd::control {
namespace {
// A long line leaves a large buffer behind; thousands of idle connections must not each keep one.
constexpr std::size_t kKeptCapacity = 64 * 1024;
}  // namespace

LineSplitter::Fed LineSplitter::refuse() {
  too_long_ = true;
  std::string().swap(partial_);
  return {Stop::kTooLong, {}};
}

LineSplitter::Fed LineSplitter::feed(std::string_view data, const OnLine& on_line) {
  if (too_long_) return {Stop::kTooLong, {}};
  // max_line + 1: room for the '\r' of a "\r\n" ending, which does not count. The checks come before the
  // append, so a line that can no longer fit is refused without buffering it.
  while (!data.empty()) {
    const auto nl = data.find('\n');
    if (nl == std::string_view::npos) {
      if (partial_.size() + data.size() > max_line_ + 1) return refuse();
      partial_.append(data);
      return {};
    }
    std::string_view line;
    if (partial_.empty()) {
      line = data.substr(0, nl);
    } else {
      if (partial_.size() + nl > max_line_ + 1) return refuse();
      partial_.append(data.substr(0, nl));
      line = partial_;
    }
    data.remove_prefix(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > max_line_) return refuse();
    const bool go_on = line.empty() || on_line(line);
    partial_.clear();
    if (partial_.capacity() > kKeptCapacity) std::string().swap(partial_);
    if (!go_on) return {Stop::kStopped, data};
  }
  return {};
}

}  // namespace fetchd::control
