// SPDX-License-Identifier: Apache-2.0
#pragma once
// The origin's routes: a parsed Request becomes a Response plan (status, headers, which body, how it is
// framed, latency, pacing, which fault to inject, whether to close), which the connection then carries out.
// Pure (no I/O, no clock), so every route is unit-testable. Adding behaviour (e.g. fault modes) means a new
// entry in route.cpp's table and, if the connection must act differently, a new field here. docs/origin.md
// lists every route and parameter. Thread: any.

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "fetchd/origin/body.hpp"
#include "fetchd/origin/origin_options.hpp"
#include "fetchd/origin/request_parser.hpp"

namespace fetchd::origin {

struct Response {
  enum class Body { kNone, kText, kGenerated };
  // How the end of the body is shown (RFC 9112 §6.3).
  enum class Framing {
    kLength,   // Content-Length (unless content_length_header is false)
    kChunked,  // Transfer-Encoding: chunked, chunk_size payload bytes per chunk
    kClose,    // neither: the body ends when the connection closes
  };
  // Chunked framing broken on purpose (fault case 3).
  enum class ChunkFault {
    kNone,
    kNoEnd,         // no terminating zero-size chunk; the connection closes instead
    kBadSize,       // the first chunk's size line is "zz"
    kOverflowSize,  // the first chunk's size line has 18 hex digits, more than 64 bits hold
  };
  // What happens once cut_after bytes of the body (counted as framed on the wire) are written, or once the
  // body ended before that. kNone: the response ends normally.
  enum class Cut {
    kNone,
    kClose,  // FIN: the client sees EOF (fault case 1)
    kReset,  // RST once the bytes were delivered (SO_LINGER 0, fault case 2)
    kStall,  // nothing more, connection kept open until the client closes or the server stops (fault case 5)
  };
  static constexpr std::uint64_t kDefaultChunkSize = 16 * 1024;
  static constexpr std::uint64_t kEndless = std::numeric_limits<std::uint64_t>::max();

  int status = 200;
  std::string headers;  // extra header lines, each "Name: value\r\n"
  Body body = Body::kNone;
  std::string text;  // Body::kText
  // Body::kGenerated: bytes [offset, offset + length) of the body for seed (see body.hpp); length kEndless
  // for a body that never ends. repr_size: the whole representation's size (Repr-Digest covers it).
  std::uint64_t seed = 0;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  std::uint64_t repr_size = 0;
  Framing framing = Framing::kLength;
  ChunkFault chunk_fault = ChunkFault::kNone;
  std::uint64_t chunk_size = kDefaultChunkSize;
  bool content_length_header = true;  // with Framing::kLength; false for 204 and for Content-Length faults
  Cut cut = Cut::kNone;
  std::uint64_t cut_after = 0;
  // trickle_bytes > 0: the body goes out at most trickle_bytes per trickle_interval, the first piece with
  // the head (fault case 6).
  std::uint64_t trickle_bytes = 0;
  std::chrono::milliseconds trickle_interval{0};
  // Digest fields the connection adds once it has hashed the generated body (RFC 9530). wrong_digest: both
  // are sent with a value that does not match.
  bool content_digest = false;
  bool repr_digest = false;
  bool wrong_digest = false;
  std::chrono::milliseconds latency{0};  // waited before the response starts
  bool close = false;                    // close the connection after this response

  std::uint64_t body_size() const;  // payload bytes (kEndless for an endless body)
  bool wants_digest() const { return content_digest || repr_digest; }
  void add_header(std::string_view name, std::string_view value);
  void set_text(int status, std::string text);  // a text/plain response
  void clear();                                 // keeps capacity (up to a bound)
};

// Fills out for request.
void route(const Request& request, const OriginOptions& options, Response& out);

// The answer to a request the parser refused (RequestParser::error_status/error_reason); always closes.
void error_response(int status, std::string_view reason, Response& out);

// Appends the status line, Content-Length or Transfer-Encoding, Connection and the extra headers, and the
// empty line. keep_alive: whether the connection stays open after this response.
void append_head(const Response& response, int minor_version, bool keep_alive, std::string& out);

// Adds Content-Digest (content: the bytes this response carries) and/or Repr-Digest (repr: the whole
// representation) as response asks, spoiled when it asks for wrong ones.
void add_digest_headers(Response& response, const Sha256& content, const Sha256& repr);

}  // namespace fetchd::origin
