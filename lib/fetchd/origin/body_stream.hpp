// SPDX-License-Identifier: Apache-2.0
#pragma once
// The bytes of a response after its head: the payload (text or generated) framed as the Response plan says
// (Content-Length or close-delimited: as it is; chunked: size lines and CRLFs, possibly broken on purpose),
// produced on demand in pieces of any size. Nothing is buffered beyond one chunk-size line, so an endless
// body costs no memory. Pure (no I/O). Thread: one owner.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "fetchd/origin/route.hpp"

namespace fetchd::origin {

class BodyStream {
 public:
  // Starts over for response, which must stay unchanged while the stream is read. empty: no body at all
  // (HEAD, 204, 304), whatever the plan says.
  void start(const Response& response, bool empty);
  // Fills the front of out with the next bytes; returns how many, fewer than out.size() only when done().
  std::size_t read(std::span<char> out);
  bool done() const { return finished_ && frame_pos_ == frame_.size() && piece_left_ == 0; }
  // At least the bytes still to come (Response::kEndless when unbounded), so that a caller allocates no more
  // than a small body needs.
  std::uint64_t size_bound() const;

 private:
  void next_piece();  // the framing before the next piece of payload, or the end
  void copy_payload(std::span<char> out);

  const Response* response_ = nullptr;
  std::uint64_t payload_pos_ = 0;   // next payload byte: a body offset (generated) or an index into text
  std::uint64_t payload_left_ = 0;  // not yet in a piece (Response::kEndless: never runs out)
  std::uint64_t piece_left_ = 0;    // payload bytes of the current piece still to write
  std::string frame_;               // framing bytes to write before the current piece
  std::size_t frame_pos_ = 0;
  bool first_piece_ = true;
  bool finished_ = true;
};

}  // namespace fetchd::origin
