// SPDX-License-Identifier: Apache-2.0
#pragma once
// Bench's side of the daemon's control socket (docs/protocol.md, "Control socket") for `--via serve` rows:
// the submit lines of a workload, encoded before the clock starts, and a small client on one Unix socket
// connection that pipelines lines and reads their replies. Blocking, bounded by deadlines; every wait calls
// back into the row (to sample the daemon's process tree and notice its exit). Thread: one owner.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fetchd/bench/workload.hpp"
#include "fetchd/core/unique_fd.hpp"

namespace fetchd::bench {

// The jobs of `files` as submit request lines, each ending in '\n', in file order: each job has url and dest
// (the file's name, relative to the daemon's output dir), and sha256 and size when `with_checks`, as the run
// rows' job list carries them. A line holds as many jobs as fit in `max_line_bytes` (without its '\n') and
// `max_jobs`. Throws std::length_error when a single job does not fit in a line.
std::vector<std::string> encode_submit_lines(std::span<const WorkloadFile> files, bool with_checks,
                                             std::size_t max_line_bytes, std::size_t max_jobs);

// "2024-05-01T12:34:56.789Z" (control::format_time_ms's form: RFC 3339, UTC, milliseconds) -> Unix ms.
std::optional<std::int64_t> parse_time_ms(std::string_view text);

// Called while the client waits; false stops the wait (the daemon exited, bench was interrupted).
using KeepWaiting = std::function<bool()>;

struct PipelineResult {
  std::vector<std::string> replies;  // one line per request, without '\n', in request order
  std::string error;                 // set when not every reply arrived
  std::chrono::steady_clock::time_point first_sent{};
  std::chrono::system_clock::time_point first_sent_wall{};  // the same instant, on the wall clock
  std::chrono::steady_clock::time_point last_received{};    // when the last reply's '\n' was read

  bool ok() const { return error.empty(); }
};

class ControlClient {
 public:
  static constexpr std::size_t kMaxReplyBytes = std::size_t{64} << 20;  // a list page of 10000 jobs is ~5 MiB

  // Connects to the Unix socket `path` once it accepts: while it is missing or refuses (the daemon is still
  // starting), tries again after calling `pause(step)`, a bounded wait that returns false to give up. Fails
  // with the last error after `timeout`.
  static std::optional<ControlClient> connect(const std::filesystem::path& path,
                                              std::chrono::milliseconds timeout,
                                              const std::function<bool(std::chrono::milliseconds)>& pause,
                                              std::string* error);

  // Sends every line while reading the replies as they come (poll on one non-blocking socket): the daemon
  // stops reading a client whose unread replies pass 1 MiB, so sending everything before reading could
  // deadlock. Fails when nothing moves for `idle_timeout`, on EOF, on a reply over kMaxReplyBytes, or when
  // `keep_waiting` (called at least every `tick`) says stop.
  PipelineResult pipeline(std::span<const std::string> lines, std::chrono::milliseconds idle_timeout,
                          std::chrono::milliseconds tick, const KeepWaiting& keep_waiting);

  // One request line (with its '\n') and its reply, parsed; its `ok` must be true. std::nullopt with the
  // daemon's message (or why no reply came) in `error`.
  std::optional<nlohmann::json> request(const std::string& line, std::chrono::milliseconds timeout,
                                        std::chrono::milliseconds tick, const KeepWaiting& keep_waiting,
                                        std::string* error);

 private:
  explicit ControlClient(core::UniqueFd fd) : fd_(std::move(fd)) {}

  core::UniqueFd fd_;
  std::string pending_;  // bytes read past the last complete reply
};

// Why a reply is not ok, from its error object: "<code>: <message>"; "" when it is ok.
std::string reply_problem(const nlohmann::json& reply);

}  // namespace fetchd::bench
