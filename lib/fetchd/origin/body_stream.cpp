// SPDX-License-Identifier: Apache-2.0
#include "fetchd/origin/body_stream.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "fetchd/origin/body.hpp"

namespace fetchd::origin {

void BodyStream::start(const Response& response, bool empty) {
  response_ = &response;
  payload_pos_ = response.body == Response::Body::kGenerated ? response.offset : 0;
  payload_left_ = empty ? 0 : response.body_size();
  piece_left_ = 0;
  frame_.clear();
  frame_pos_ = 0;
  first_piece_ = true;
  finished_ = false;
  // A chunked body always has its terminating chunk; "no body at all" has no framing either.
  if (empty) {
    finished_ = true;
    return;
  }
  next_piece();
}

void BodyStream::next_piece() {
  frame_.clear();
  frame_pos_ = 0;
  if (response_->framing != Response::Framing::kChunked) {
    // One piece: the whole payload (or an endless one).
    piece_left_ = payload_left_;
    payload_left_ = 0;
    finished_ = piece_left_ == 0;
    return;
  }
  if (!first_piece_) frame_.append("\r\n");  // ends the previous chunk's data
  if (payload_left_ == 0) {
    // RFC 9112 §7.1: last-chunk and the empty trailer section; kNoEnd leaves them out.
    if (response_->chunk_fault != Response::ChunkFault::kNoEnd) frame_.append("0\r\n\r\n");
    finished_ = true;
    return;
  }
  piece_left_ = std::min(payload_left_, response_->chunk_size);
  if (payload_left_ != Response::kEndless) payload_left_ -= piece_left_;
  if (first_piece_ && response_->chunk_fault == Response::ChunkFault::kBadSize) {
    frame_.append("zz\r\n");
  } else if (first_piece_ && response_->chunk_fault == Response::ChunkFault::kOverflowSize) {
    frame_.append("FFFFFFFFFFFFFFFFFF\r\n");  // 18 hex digits: 72 bits
  } else {
    fmt::format_to(std::back_inserter(frame_), "{:x}\r\n", piece_left_);
  }
  first_piece_ = false;
}

void BodyStream::copy_payload(std::span<char> out) {
  if (response_->body == Response::Body::kGenerated) {
    fill_body(response_->seed, payload_pos_, std::as_writable_bytes(out));
  } else {
    std::memcpy(out.data(), response_->text.data() + payload_pos_, out.size());
  }
  payload_pos_ += out.size();
}

std::uint64_t BodyStream::size_bound() const {
  if (done()) return 0;
  if (piece_left_ == Response::kEndless || payload_left_ == Response::kEndless) return Response::kEndless;
  std::uint64_t bound = (frame_.size() - frame_pos_) + piece_left_ + payload_left_;
  if (response_->framing == Response::Framing::kChunked && !finished_) {
    // Per chunk still to come: a size line (at most 20 bytes with its CRLF) and the CRLF after the data; then
    // the last chunk (7 bytes with the CRLF before it).
    bound += (payload_left_ / response_->chunk_size + 1) * 22 + 7;
  }
  return bound;
}

std::size_t BodyStream::read(std::span<char> out) {
  std::size_t n = 0;
  while (n < out.size() && !done()) {
    if (frame_pos_ < frame_.size()) {
      const std::size_t k = std::min(out.size() - n, frame_.size() - frame_pos_);
      std::memcpy(out.data() + n, frame_.data() + frame_pos_, k);
      frame_pos_ += k;
      n += k;
    } else if (piece_left_ > 0) {
      const auto k = static_cast<std::size_t>(std::min<std::uint64_t>(out.size() - n, piece_left_));
      copy_payload(out.subspan(n, k));
      piece_left_ -= k;
      n += k;
      if (piece_left_ == 0) next_piece();
    } else {
      break;  // finished_ with the frame written: done()
    }
  }
  return n;
}

}  // namespace fetchd::origin
