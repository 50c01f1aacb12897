// SPDX-License-Identifier: Apache-2.0
#pragma once
// Incremental HTTP/1.x request parser used by the origin: no I/O, no allocation beyond the request's own
// strings, a bounded head. Feeding the same bytes in any split gives the same result (tests feed byte by
// byte). Thread: a parser belongs to one connection; no shared state.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fetchd::origin {

struct Header {
  std::string name;   // lower-case
  std::string value;  // without leading/trailing whitespace
};

struct Request {
  std::string method;
  std::string target;                // origin-form: "/path" or "/path?query"
  int minor_version = 1;             // HTTP/1.<minor_version>
  bool keep_alive = true;            // from the version and the Connection header
  std::uint64_t content_length = 0;  // the body itself is consumed and discarded by the parser
  std::vector<Header> headers;       // in arrival order

  // First header with that (lower-case) name, or nullptr.
  const std::string* header(std::string_view lower_name) const;
  void clear();  // keeps capacity
};

class RequestParser {
 public:
  enum class State { kIncomplete, kComplete, kError };

  static constexpr std::size_t kDefaultMaxHeadBytes = 64 * 1024;
  // Request bodies are only skipped, never used; a larger one is refused with 413 instead of read for
  // nothing.
  static constexpr std::uint64_t kMaxDiscardedBody = 1024 * 1024;

  explicit RequestParser(std::size_t max_head_bytes = kDefaultMaxHeadBytes)
      : max_head_bytes_(max_head_bytes) {}

  // Consumes bytes from the front of input and returns how many. Stops right after a complete request (head
  // and Content-Length body), so pipelined bytes behind it stay in input for the next call after reset().
  // Consumes nothing once the state is kComplete or kError.
  std::size_t feed(std::string_view input);

  State state() const { return state_; }
  const Request& request() const { return request_; }  // complete when state() == kComplete
  // When state() == kError: the status to answer with before closing (400, 413, 431, 501, 505), and why.
  int error_status() const { return error_status_; }
  std::string_view error_reason() const { return error_reason_; }

  // Ready for the next request on the same connection; keeps allocated capacity.
  void reset();

 private:
  enum class Step {
    kStart,  // optional empty lines before the request line
    kMethod,
    kTarget,
    kVersion,
    kRequestLineLf,
    kLineStart,  // a header line or the empty line that ends the head
    kName,
    kValue,
    kValueLf,
    kHeadEndLf,
    kBody,
  };

  bool step(char c);  // one head byte; false once the state left kIncomplete
  bool fail(int status, const char* reason);
  bool finish_request_line();
  bool finish_header();
  bool finish_head();

  std::size_t max_head_bytes_;
  State state_ = State::kIncomplete;
  Step step_ = Step::kStart;
  std::size_t head_bytes_ = 0;
  std::uint64_t body_left_ = 0;
  bool saw_content_length_ = false;
  bool connection_close_ = false;
  bool connection_keep_alive_ = false;
  std::string version_;
  Request request_;
  int error_status_ = 0;
  const char* error_reason_ = "";
};

}  // namespace fetchd::origin
