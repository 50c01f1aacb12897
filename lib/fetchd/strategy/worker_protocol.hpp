// SPDX-License-Identifier: Apache-2.0
#pragma once
// The worker pipe of the process-pool strategy (docs/protocol.md, "Worker pipe"): newline-delimited JSON, one
// object per line, each with an "op". Parent -> worker on the worker's stdin: submit, cancel (EOF: finish and
// exit), rate. Worker -> parent on its stdout: result, progress. Both ends are the same binary
// (/proc/self/exe), so there is no version negotiation; unknown keys are ignored, an unknown op is an error.
// Strings are sent exactly: valid UTF-8 as a JSON string, anything else (a path may hold any bytes) as
// {"hex": "..."}. Header values travel here (the pipe is private to the two processes) and are never logged.
// Thread: pure functions and a value type; any thread.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "fetchd/core/transfer_types.hpp"

namespace fetchd::strategy::protocol {

// A longer line is a protocol error (a request is a few KiB; this bounds memory against a broken peer).
inline constexpr std::size_t kMaxLineBytes = 1 << 20;

struct Submit {
  core::TransferRequest request;
};
struct Cancel {
  core::JobId id = 0;
};
// The worker's share of limits.rate from now on, in bytes/s (0: no limit). The parent sends one before the
// first submit when a limit is configured, then again whenever it rebalances the shares.
struct Rate {
  std::uint64_t bytes_per_s = 0;
};
struct Result {
  core::TransferResult result;
};
// The worker's total of body bytes received since it started, finished and in-flight transfers included.
struct Progress {
  std::uint64_t bytes = 0;
};

using ToWorker = std::variant<Submit, Cancel, Rate>;
using FromWorker = std::variant<Result, Progress>;

// Each returns one line, '\n' included.
std::string encode(const ToWorker& message);
std::string encode(const FromWorker& message);

// One line without its '\n'. nullopt with *error set when it is not a valid message; the error never quotes
// the line (it may hold header values).
std::optional<ToWorker> decode_to_worker(std::string_view line, std::string* error);
std::optional<FromWorker> decode_from_worker(std::string_view line, std::string* error);

// Splits a byte stream into lines. feed() calls on_line for each complete line (without '\n') and returns
// false, dropping everything, once a line grows past kMaxLineBytes.
class LineBuffer {
 public:
  bool feed(const char* data, std::size_t size, const std::function<void(std::string_view line)>& on_line);
  bool empty() const { return partial_.empty(); }

 private:
  std::string partial_;
};

}  // namespace fetchd::strategy::protocol
