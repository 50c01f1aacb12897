// SPDX-License-Identifier: Apache-2.0
#pragma once
// The framing of docs/protocol.md: a byte stream cut into request lines ('\n'-terminated; a trailing '\r' is
// dropped; empty lines are skipped), none longer than max_line. Pure, so that the control server feeds it
// whatever each read brings and the protocol fuzz target feeds it arbitrary chunks of the same stream.
// Thread: its owner's only.

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace fetchd::control {

class LineSplitter {
 public:
  enum class Stop {
    kEnd,      // every byte consumed (an unfinished line is kept for the next feed)
    kStopped,  // on_line asked to stop: `rest` holds the bytes after that line
    kTooLong,  // a line over max_line: the splitter refuses everything from now on
  };
  struct Fed {
    Stop stop = Stop::kEnd;
    std::string_view rest;  // points into the data fed
  };
  // Called with each complete line; returns false to stop (the connection paused or closed).
  using OnLine = std::function<bool(std::string_view line)>;

  explicit LineSplitter(std::size_t max_line) : max_line_(max_line) {}

  Fed feed(std::string_view data, const OnLine& on_line);
  // The peer closed: a line cut short is not a request.
  void drop_partial() { partial_.clear(); }
  bool too_long() const { return too_long_; }

 private:
  Fed refuse();

  std::size_t max_line_;
  std::string partial_;  // the start of a line whose '\n' has not arrived
  bool too_long_ = false;
};

}  // namespace fetchd::control
