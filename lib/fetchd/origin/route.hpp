// SPDX-License-Identifier: Apache-2.0
#pragma once
// The origin's routes: a parsed Request becomes a Response plan (status, headers, which body, latency,
// whether to close), which the connection then carries out. Pure (no I/O, no clock), so every route is
// unit-testable. Adding behaviour (e.g. fault modes) means a new entry in route.cpp's table and, if the
// connection must act differently, a new field here. Thread: any.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "fetchd/origin/origin_options.hpp"
#include "fetchd/origin/request_parser.hpp"

namespace fetchd::origin {

struct Response {
  enum class Body { kNone, kText, kGenerated };

  int status = 200;
  std::string headers;  // extra header lines, each "Name: value\r\n"
  Body body = Body::kNone;
  std::string text;  // Body::kText
  // Body::kGenerated: bytes [offset, offset + length) of the body for seed (see body.hpp).
  std::uint64_t seed = 0;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  bool content_length_header = true;     // false for 204
  std::chrono::milliseconds latency{0};  // waited before the response starts
  bool close = false;                    // close the connection after this response

  std::uint64_t body_size() const;
  void add_header(std::string_view name, std::string_view value);
  void set_text(int status, std::string text);  // a text/plain response
  void clear();                                 // keeps capacity
};

// Fills out for request.
void route(const Request& request, const OriginOptions& options, Response& out);

// The answer to a request the parser refused (RequestParser::error_status/error_reason); always closes.
void error_response(int status, std::string_view reason, Response& out);

// Appends the status line, Content-Length, Connection and the extra headers, and the empty line.
// keep_alive: whether the connection stays open after this response.
void append_head(const Response& response, int minor_version, bool keep_alive, std::string& out);

}  // namespace fetchd::origin
