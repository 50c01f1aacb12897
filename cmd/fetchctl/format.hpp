// SPDX-License-Identifier: Apache-2.0
#pragma once
// fetchctl's human output as pure functions: byte units, bars, aligned tables, the stats block and one-line
// watch events. No I/O and no clock here, so every piece is unit-tested. Any thread.

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fetchd::ctl {

// Binary units with one decimal: "0 B", "1023 B", "1.5 KiB", "12.3 MiB"; never "1024.0 KiB".
std::string format_bytes(std::uint64_t bytes);
// format_bytes of a rate, with "/s"; negative or non-finite rates print as "0 B/s".
std::string format_rate(double bytes_per_second);
// Whole seconds, two most significant units: "45s", "2m05s", "1h02m", "3d04h".
std::string format_seconds(double seconds);

// Text from the daemon made safe for a terminal and for one line: control characters (C0, DEL, C1) are shown
// as
// "\xNN" and invalid UTF-8 bytes as "\xNN", so a file name can never move the cursor or change colours.
std::string sanitize(std::string_view text);
// Columns taken by UTF-8 text: one per code point (fetchctl does not try to know East Asian wide characters).
std::size_t display_width(std::string_view utf8);
// Cut to at most `width` columns, at code point boundaries. truncate_left keeps the end ("…/dir/file.bin"),
// which is the informative part of a path; truncate_right keeps the start ("some long mess…").
std::string truncate_left(std::string_view utf8, std::size_t width, bool unicode = true);
std::string truncate_right(std::string_view utf8, std::size_t width, bool unicode = true);
// Left-aligned (pad right) or right-aligned (pad left) to `width` columns; longer text is returned unchanged.
std::string pad_right(std::string_view utf8, std::size_t width);
std::string pad_left(std::string_view utf8, std::size_t width);

// A progress bar exactly `width` columns wide for `fraction` in [0, 1] (clamped). Unicode uses eighth blocks
// ("█▌  "), ASCII uses '#' and '-'. unknown (size not known) draws an even light pattern instead.
std::string render_bar(double fraction, std::size_t width, bool unicode);
std::string render_unknown_bar(std::size_t width, bool unicode);

// The URL as fetchd shows it (curl::redact_url): userinfo removed and the query replaced by "?…", since both
// may carry credentials. "https://u:p@host/x?token=1" -> "https://host/x?…".
std::string redact_url(std::string_view url);

// Columns that line up across everything printed with the same Table, even when rows arrive page by page.
class Table {
 public:
  enum class Align { kLeft, kRight };
  struct Column {
    std::string header;
    Align align = Align::kLeft;
  };
  explicit Table(std::vector<Column> columns);

  // Widens the columns to fit `rows`; never narrows, so later pages stay aligned with earlier ones.
  void fit(const std::vector<std::vector<std::string>>& rows);
  std::string header() const;                                    // with '\n'
  std::string row(const std::vector<std::string>& cells) const;  // with '\n'; no trailing blanks

 private:
  std::vector<Column> columns_;
  std::vector<std::size_t> widths_;
};

// The job table of `status`, `cancel` and `list`: ID, STATE, ATTEMPTS, BYTES, DEST, ERROR.
Table job_table();
// One row of job_table() from a protocol Job object; missing fields print as "-", text is sanitized. A done
// job that kept an existing file shows the state "done (skipped)".
std::vector<std::string> job_row(const nlohmann::json& job);
// What `status` prints under the table: the job's own options on one line ("options  retries=1
// max_size=1048576 backoff={...}") and its recent attempt errors, oldest first, one per line ("error 1  ...").
// Empty when the job has neither. Sanitized.
std::string job_details(const nlohmann::json& job);

// The `stats` result as one block of "label  value" lines (known keys first, any others after).
std::string format_stats(const nlohmann::json& stats);
// The totals of a stats object on one line: "active 3  queued 10  done 7  failed 0  cancelled 0  1.5 files/s
// ...".
std::string format_totals(const nlohmann::json& stats);

// One watch event as one plain line (no '\n'), for a log or a pipe:
//   "started  12  sub/a.bin", "progress  12  sub/a.bin  1.0 MiB of 4.0 MiB (25%)", "failed  12  a.bin attempt
//   3: HTTP 404", "done  12  a.bin  skipped (the file was there already)", "stats  active=3 queued=10 ...".
std::string format_event(const nlohmann::json& event);

// The progress line of one running transfer in the live watch display, cut to `width` columns:
//   "sub/a.bin  [█████▌      ]  45%    1.8 MiB   312.0 KiB/s"
// Without a known size the bar is a neutral pattern and the percentage "--"; without a rate yet, "--".
std::string format_progress_line(std::string_view dest, std::uint64_t bytes,
                                 std::optional<std::uint64_t> size, std::optional<double> rate,
                                 std::size_t width, bool unicode);

// Whether the terminal takes UTF-8, from the locale variables in their order of precedence (LC_ALL, LC_CTYPE,
// LANG; the first one set wins; nullptr = unset).
bool locale_is_utf8(const char* lc_all, const char* lc_ctype, const char* lang);

// JSON accessors that never throw: the daemon is a peer, not trusted to send every field with the right type.
std::optional<std::int64_t> json_int(const nlohmann::json& object, std::string_view key);
std::optional<double> json_number(const nlohmann::json& object, std::string_view key);
std::optional<std::string> json_string(const nlohmann::json& object, std::string_view key);

}  // namespace fetchd::ctl
