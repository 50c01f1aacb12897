// SPDX-License-Identifier: Apache-2.0
#pragma once
// Building control-protocol requests (docs/protocol.md) from fetchctl's arguments and input, as pure
// functions: URL lines, -H headers, the job objects of a submit, and the split of many jobs into request
// lines that respect the daemon's limits. Any thread.

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fetchd::ctl {

// The daemon refuses request lines longer than this (bytes, without the '\n'): protocol "line_too_long".
inline constexpr std::size_t kMaxRequestLine = 1048576;
// At most this many jobs per submit request: the daemon's control::kSubmitJobsPerLine (fetchctl does not link the
// daemon's libraries). The daemon accepts more, but it takes about this many per turn of its loop, so the jobs
// of the first lines are committed and downloading while it reads the next ones.
inline constexpr std::size_t kMaxJobsPerSubmit = 1000;
// list pages: the protocol's maximum limit.
inline constexpr std::int64_t kMaxListLimit = 10000;

// One line of URL input: the URL with surrounding blanks and a trailing "  # comment" removed; empty for
// blank lines and '#' comment lines (the same rules as a config urls_file). Whatever else is on the line
// stays, so the daemon's validation can name the problem.
std::string_view url_from_line(std::string_view line);

// "Name: value" (blanks around the value are dropped). nullopt with a reason when there is no ':' or no name.
std::optional<std::pair<std::string, std::string>> parse_header_arg(std::string_view text,
                                                                    std::string* error);

// What `submit` options give every job of one invocation.
struct JobTemplate {
  std::optional<std::string> dest;
  std::optional<std::string> sha256;
  std::optional<std::uint64_t> size;
  std::optional<std::int64_t> priority;
  std::optional<std::string> key;
  std::vector<std::pair<std::string, std::string>> headers;  // in command-line order, names unique
  // The job's own options (docs/protocol.md: sha512, timeout, max_size, rate, retries, ...), key -> value as
  // the protocol takes it; sizes and durations stay text, the daemon checks them and names the field.
  nlohmann::ordered_json options = nlohmann::ordered_json::object();
};

// The protocol's job object for `url`: {"url":…, "dest"?, "sha256"?, "size"?, "headers"?, "priority"?,
// "key"?, then the options in the order they were set}.
nlohmann::ordered_json make_job(std::string_view url, const JobTemplate& job);

// Collects serialized jobs into one submit request line of at most kMaxJobsPerSubmit jobs and kMaxRequestLine
// bytes: {"op":"submit","jobs":[…]}.
class SubmitBatch {
 public:
  // A job too large for any request on its own (it would draw line_too_long and lose the connection).
  static bool fits_alone(std::string_view job_json);
  // Appends the job and returns true, or returns false (and leaves the batch alone) when the batch is full.
  bool try_add(std::string_view job_json);
  std::size_t jobs() const { return jobs_; }
  bool empty() const { return jobs_ == 0; }
  // The request line (no '\n'); the batch is empty again afterwards.
  std::string finish();

 private:
  std::string jobs_text_;  // "job,job,…"
  std::size_t jobs_ = 0;
};

// Renames every "jobs[N]" in a daemon message to "jobs[global[N]]", so that an error about the third job of
// the second batch names the job by its position in the whole input ("jobs[5002]"), not in the batch. Indexes
// outside `global` stay as they are.
std::string rewrite_job_indexes(std::string_view message, const std::vector<std::size_t>& global);
// The N of the first "jobs[N]" in a message, if any.
std::optional<std::size_t> first_job_index(std::string_view message);

}  // namespace fetchd::ctl
