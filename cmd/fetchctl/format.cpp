// SPDX-License-Identifier: Apache-2.0
#include "format.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <map>

namespace fetchd::ctl {

namespace {

using nlohmann::json;

// Decodes one UTF-8 sequence at s[i]; returns its length, or 0 when the bytes there are not valid UTF-8
// (overlong forms, surrogates and code points above U+10FFFF are invalid too). *cp gets the code point.
std::size_t decode_utf8(std::string_view s, std::size_t i, char32_t* cp) {
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char b0 = byte(i);
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  std::size_t len = 0;
  char32_t min = 0;
  char32_t value = 0;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, min = 0x80, value = b0 & 0x1F;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, min = 0x800, value = b0 & 0x0F;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, min = 0x10000, value = b0 & 0x07;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    unsigned char b = byte(i + k);
    if ((b & 0xC0) != 0x80) return 0;
    value = (value << 6) | (b & 0x3F);
  }
  if (value < min || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return 0;
  *cp = value;
  return len;
}

// Byte offsets of the code points of (valid or sanitized) UTF-8 text; invalid bytes count as one each.
std::vector<std::size_t> code_point_starts(std::string_view s) {
  std::vector<std::size_t> starts;
  for (std::size_t i = 0; i < s.size();) {
    starts.push_back(i);
    char32_t cp = 0;
    std::size_t n = decode_utf8(s, i, &cp);
    i += n == 0 ? 1 : n;
  }
  return starts;
}

std::string_view ellipsis(bool unicode) {
  return unicode ? "…" : "~";
}

const json* member(const json& object, std::string_view key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

// A done job that kept an existing file instead of downloading ("skipped": true; docs/protocol.md).
bool skipped(const json& job) {
  const json* v = member(job, "skipped");
  return v != nullptr && v->is_boolean() && v->get<bool>();
}

std::string int_or_dash(const json& object, std::string_view key) {
  auto v = json_int(object, key);
  return v ? std::to_string(*v) : "-";
}

}  // namespace

std::string format_bytes(std::uint64_t bytes) {
  if (bytes < 1024) return fmt::format("{} B", bytes);
  static constexpr std::array<const char*, 6> kUnits{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double value = static_cast<double>(bytes) / 1024.0;
  std::size_t unit = 0;
  // 1023.96 KiB would print as "1024.0 KiB": move to the next unit before rounding can reach 1024.
  while (value >= 1023.95 && unit + 1 < kUnits.size()) {
    value /= 1024.0;
    ++unit;
  }
  return fmt::format("{:.1f} {}", value, kUnits[unit]);
}

std::string format_rate(double bytes_per_second) {
  if (!std::isfinite(bytes_per_second) || bytes_per_second < 0) bytes_per_second = 0;
  double capped = std::min(bytes_per_second, 1.8e19);  // stays inside uint64_t
  return format_bytes(static_cast<std::uint64_t>(std::llround(capped))) + "/s";
}

std::string format_seconds(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) seconds = 0;
  auto s = static_cast<std::uint64_t>(std::min(seconds, 1e15));
  std::uint64_t days = s / 86400, hours = s / 3600 % 24, minutes = s / 60 % 60, secs = s % 60;
  if (days > 0) return fmt::format("{}d{:02}h", days, hours);
  if (hours > 0) return fmt::format("{}h{:02}m", hours, minutes);
  if (minutes > 0) return fmt::format("{}m{:02}s", minutes, secs);
  return fmt::format("{}s", secs);
}

std::string sanitize(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    char32_t cp = 0;
    std::size_t n = decode_utf8(text, i, &cp);
    if (n == 0) {
      out += fmt::format("\\x{:02x}", static_cast<unsigned char>(text[i]));
      ++i;
      continue;
    }
    bool control = cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F);
    if (control) {
      out += fmt::format("\\x{:02x}", static_cast<unsigned>(cp));
    } else {
      out.append(text.substr(i, n));
    }
    i += n;
  }
  return out;
}

std::size_t display_width(std::string_view utf8) {
  return code_point_starts(utf8).size();
}

std::string truncate_left(std::string_view utf8, std::size_t width, bool unicode) {
  auto starts = code_point_starts(utf8);
  if (starts.size() <= width) return std::string(utf8);
  if (width == 0) return {};
  std::size_t keep = width - 1;  // one column for the ellipsis
  std::string out(ellipsis(unicode));
  if (keep > 0) out.append(utf8.substr(starts[starts.size() - keep]));
  return out;
}

std::string truncate_right(std::string_view utf8, std::size_t width, bool unicode) {
  auto starts = code_point_starts(utf8);
  if (starts.size() <= width) return std::string(utf8);
  if (width == 0) return {};
  std::size_t keep = width - 1;
  std::string out(utf8.substr(0, starts[keep]));
  out.append(ellipsis(unicode));
  return out;
}

std::string pad_right(std::string_view utf8, std::size_t width) {
  std::string out(utf8);
  std::size_t w = display_width(utf8);
  if (w < width) out.append(width - w, ' ');
  return out;
}

std::string pad_left(std::string_view utf8, std::size_t width) {
  std::size_t w = display_width(utf8);
  std::string out = w < width ? std::string(width - w, ' ') : std::string();
  out.append(utf8);
  return out;
}

std::string render_bar(double fraction, std::size_t width, bool unicode) {
  if (!std::isfinite(fraction)) fraction = 0;
  fraction = std::clamp(fraction, 0.0, 1.0);
  std::string out;
  if (!unicode) {
    auto full = static_cast<std::size_t>(std::floor(fraction * static_cast<double>(width)));
    out.append(full, '#');
    out.append(width - full, '-');
    return out;
  }
  // Eighths of a cell: U+2588 (full) down to U+258F (one eighth).
  static constexpr std::array<const char*, 8> kPartial{"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
  auto eighths = static_cast<std::size_t>(std::floor(fraction * static_cast<double>(width) * 8.0));
  std::size_t full = eighths / 8;
  std::size_t partial = eighths % 8;
  for (std::size_t i = 0; i < full; ++i) out += "█";
  std::size_t used = full;
  if (partial > 0 && used < width) {
    out += kPartial[partial];
    ++used;
  }
  out.append(width - used, ' ');
  return out;
}

std::string render_unknown_bar(std::size_t width, bool unicode) {
  std::string out;
  for (std::size_t i = 0; i < width; ++i) out += unicode ? "░" : ".";
  return out;
}

std::string redact_url(std::string_view url) {
  std::string out;
  auto scheme_end = url.find("://");
  std::size_t authority = scheme_end == std::string_view::npos ? 0 : scheme_end + 3;
  std::size_t authority_end = url.find_first_of("/?#", authority);
  if (authority_end == std::string_view::npos) authority_end = url.size();
  std::size_t at =
      scheme_end == std::string_view::npos ? std::string_view::npos : url.rfind('@', authority_end);
  if (at != std::string_view::npos && at >= authority) {
    out.append(url.substr(0, authority));
    out.append(url.substr(at + 1));
  } else {
    out.append(url);
  }
  auto query = out.find('?');
  if (query != std::string::npos) {
    auto fragment = out.find('#', query);
    std::string rest = fragment == std::string::npos ? std::string() : out.substr(fragment);
    out.erase(query);
    out += "?…" + rest;
  }
  return out;
}

Table::Table(std::vector<Column> columns) : columns_(std::move(columns)) {
  for (const auto& c : columns_) widths_.push_back(display_width(c.header));
}

void Table::fit(const std::vector<std::vector<std::string>>& rows) {
  for (const auto& r : rows) {
    for (std::size_t i = 0; i < r.size() && i < widths_.size(); ++i)
      widths_[i] = std::max(widths_[i], display_width(r[i]));
  }
}

std::string Table::header() const {
  std::vector<std::string> cells;
  for (const auto& c : columns_) cells.push_back(c.header);
  return row(cells);
}

std::string Table::row(const std::vector<std::string>& cells) const {
  std::string line;
  for (std::size_t i = 0; i < columns_.size(); ++i) {
    const std::string empty;
    const std::string& cell = i < cells.size() ? cells[i] : empty;
    bool last = i + 1 == columns_.size();
    if (i > 0) line += "  ";
    if (columns_[i].align == Align::kRight) {
      line += pad_left(cell, widths_[i]);
    } else {
      line += last ? cell : pad_right(cell, widths_[i]);
    }
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  line += '\n';
  return line;
}

Table job_table() {
  using A = Table::Align;
  return Table({{"ID", A::kRight},
                {"STATE", A::kLeft},
                {"ATTEMPTS", A::kRight},
                {"BYTES", A::kRight},
                {"DEST", A::kLeft},
                {"ERROR", A::kLeft}});
}

std::vector<std::string> job_row(const json& job) {
  auto text = [&](std::string_view key) {
    auto v = json_string(job, key);
    return v ? sanitize(*v) : std::string("-");
  };
  auto bytes = json_int(job, "bytes");
  std::string error = text("error");
  if (error == "-") error.clear();
  std::string state = text("state");
  if (skipped(job)) state += " (skipped)";
  return {int_or_dash(job, "id"),
          state,
          int_or_dash(job, "attempts"),
          bytes && *bytes >= 0 ? format_bytes(static_cast<std::uint64_t>(*bytes)) : "-",
          text("dest"),
          error};
}

std::string job_details(const json& job) {
  std::string out;
  if (const json* options = member(job, "options"); options != nullptr && options->is_object() &&
                                                    !options->empty()) {
    out += "options";
    for (const auto& [name, value] : options->items()) {
      out += fmt::format("  {}={}", sanitize(name),
                         sanitize(value.is_string() ? value.get<std::string>()
                                                    : value.dump(-1, ' ', false, json::error_handler_t::replace)));
    }
    out += '\n';
  }
  if (const json* errors = member(job, "errors"); errors != nullptr && errors->is_array()) {
    std::size_t n = 0;
    for (const auto& e : *errors) {
      ++n;
      out += fmt::format("error {}  {}\n", n, e.is_string() ? sanitize(e.get<std::string>()) : "-");
    }
  }
  return out;
}

std::string format_stats(const json& stats) {
  struct Known {
    const char* key;
    const char* label;
    enum Kind { kText, kInt, kBytes, kFloat1, kFloat2, kSeconds } kind;
  };
  static constexpr std::array<Known, 12> kKnown{{{"strategy", "strategy", Known::kText},
                                                 {"concurrency", "concurrency", Known::kInt},
                                                 {"active", "active", Known::kInt},
                                                 {"queued", "queued", Known::kInt},
                                                 {"done", "done", Known::kInt},
                                                 {"failed", "failed", Known::kInt},
                                                 {"cancelled", "cancelled", Known::kInt},
                                                 {"bytes", "downloaded", Known::kBytes},
                                                 {"files_per_s", "files/s", Known::kFloat1},
                                                 {"mib_per_s", "MiB/s", Known::kFloat2},
                                                 {"uptime_s", "uptime", Known::kSeconds},
                                                 {"store", "store", Known::kText}}};
  std::vector<std::pair<std::string, std::string>> lines;
  for (const auto& k : kKnown) {
    const json* v = member(stats, k.key);
    if (v == nullptr || v->is_null()) continue;
    std::string value;
    switch (k.kind) {
      case Known::kText:
        value = v->is_string() ? sanitize(v->get<std::string>()) : sanitize(v->dump());
        break;
      case Known::kInt:
        value = int_or_dash(stats, k.key);
        break;
      case Known::kBytes: {
        auto b = json_int(stats, k.key);
        value = b && *b >= 0 ? format_bytes(static_cast<std::uint64_t>(*b)) : "-";
        break;
      }
      case Known::kFloat1:
      case Known::kFloat2: {
        auto f = json_number(stats, k.key);
        value = f ? fmt::format("{:.{}f}", *f, k.kind == Known::kFloat1 ? 1 : 2) : "-";
        break;
      }
      case Known::kSeconds: {
        auto f = json_number(stats, k.key);
        value = f ? format_seconds(*f) : "-";
        break;
      }
    }
    lines.emplace_back(k.label, value);
  }
  if (stats.is_object()) {
    for (const auto& [key, value] : stats.items()) {
      bool known = std::any_of(kKnown.begin(), kKnown.end(), [&wanted = key](const Known& k) { return wanted == k.key; });
      if (known) continue;
      lines.emplace_back(sanitize(key),
                         value.is_string() ? sanitize(value.get<std::string>()) : sanitize(value.dump()));
    }
  }
  std::size_t label_width = 0;
  for (const auto& [label, value] : lines) label_width = std::max(label_width, display_width(label));
  std::string out;
  for (const auto& [label, value] : lines) out += pad_right(label, label_width) + "  " + value + "\n";
  return out;
}

std::string format_totals(const json& stats) {
  std::string out;
  for (const char* key : {"active", "queued", "done", "failed", "cancelled"}) {
    if (auto v = json_int(stats, key)) out += fmt::format("{}{} {}", out.empty() ? "" : "  ", key, *v);
  }
  if (auto f = json_number(stats, "files_per_s")) out += fmt::format("  {:.1f} files/s", *f);
  if (auto m = json_number(stats, "mib_per_s")) out += fmt::format("  {:.2f} MiB/s", *m);
  return out;
}

std::string format_event(const json& event) {
  std::string name = json_string(event, "event").value_or("?");
  if (name == "stats") {
    const json* stats = member(event, "stats");
    std::string out = "stats";
    if (stats != nullptr) {
      for (const char* key : {"active", "queued", "done", "failed", "cancelled"}) {
        if (auto v = json_int(*stats, key)) out += fmt::format(" {}={}", key, *v);
      }
      if (auto b = json_int(*stats, "bytes")) out += fmt::format(" bytes={}", *b);
      if (auto f = json_number(*stats, "files_per_s")) out += fmt::format(" files/s={:.1f}", *f);
      if (auto m = json_number(*stats, "mib_per_s")) out += fmt::format(" MiB/s={:.2f}", *m);
    }
    return out;
  }
  const json* job = member(event, "job");
  if (job == nullptr)
    return sanitize(name) + "  " + sanitize(event.dump(-1, ' ', false, json::error_handler_t::replace));
  std::string out = fmt::format("{}  {}  {}", sanitize(name), int_or_dash(*job, "id"),
                                sanitize(json_string(*job, "dest").value_or("-")));
  auto bytes = json_int(*job, "bytes");
  auto size = json_int(*job, "size");
  if (name == "done" && skipped(*job)) {
    out += "  skipped (the file was there already)";
  } else if (name == "progress" || name == "done" || name == "cancelled") {
    if (bytes && *bytes >= 0) {
      out += "  " + format_bytes(static_cast<std::uint64_t>(*bytes));
      if (size && *size > 0 && name != "done") {
        out += " of " + format_bytes(static_cast<std::uint64_t>(*size));
        out += fmt::format(" ({}%)", std::min<std::int64_t>(100, *bytes * 100 / *size));
      }
    }
  } else if (name == "queued") {
    if (auto url = json_string(*job, "url")) out += "  " + sanitize(redact_url(*url));
  }
  if (name == "failed" || name == "queued") {
    auto error = json_string(*job, "error").value_or("");
    auto attempts = json_int(*job, "attempts");
    if (!error.empty()) {
      out += attempts ? fmt::format("  attempt {}: {}", *attempts, sanitize(error)) : "  " + sanitize(error);
    }
  }
  return out;
}

std::string format_progress_line(std::string_view dest, std::uint64_t bytes,
                                 std::optional<std::uint64_t> size, std::optional<double> rate,
                                 std::size_t width, bool unicode) {
  static constexpr std::size_t kBarWidth = 20;
  static constexpr std::size_t kMinDest = 12;
  std::string percent = "--";
  double fraction = 0;
  if (size && *size > 0) {
    fraction = std::min(1.0, static_cast<double>(bytes) / static_cast<double>(*size));
    percent = fmt::format("{}%", static_cast<int>(std::floor(fraction * 100.0)));
  } else if (size && *size == 0) {
    fraction = 1.0;
    percent = "100%";
  }
  std::string numbers = "  " + pad_left(percent, 4) + "  " + pad_left(format_bytes(bytes), 10) + "  " +
                        pad_left(rate ? format_rate(*rate) : "--", 12);
  bool with_bar = width >= kMinDest + 2 + kBarWidth + 2 + display_width(numbers);
  std::string bar;
  if (with_bar) {
    bar = "  [" + (size ? render_bar(fraction, kBarWidth, unicode) : render_unknown_bar(kBarWidth, unicode)) +
          "]";
  }
  std::size_t fixed = display_width(bar) + display_width(numbers);
  std::size_t dest_width = width > fixed + kMinDest ? width - fixed : kMinDest;
  std::string line =
      pad_right(truncate_left(sanitize(dest), dest_width, unicode), dest_width) + bar + numbers;
  return truncate_right(line, width, unicode);
}

bool locale_is_utf8(const char* lc_all, const char* lc_ctype, const char* lang) {
  for (const char* v : {lc_all, lc_ctype, lang}) {
    if (v == nullptr || *v == '\0') continue;
    std::string lower(v);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    return lower.find("utf-8") != std::string::npos || lower.find("utf8") != std::string::npos;
  }
  return false;
}

std::optional<std::int64_t> json_int(const json& object, std::string_view key) {
  const json* v = member(object, key);
  if (v == nullptr) return std::nullopt;
  if (v->is_number_integer()) return v->get<std::int64_t>();
  if (v->is_number_unsigned()) {
    auto u = v->get<std::uint64_t>();
    if (u <= static_cast<std::uint64_t>(INT64_MAX)) return static_cast<std::int64_t>(u);
  }
  return std::nullopt;
}

std::optional<double> json_number(const json& object, std::string_view key) {
  const json* v = member(object, key);
  if (v == nullptr || !v->is_number()) return std::nullopt;
  return v->get<double>();
}

std::optional<std::string> json_string(const json& object, std::string_view key) {
  const json* v = member(object, key);
  if (v == nullptr || !v->is_string()) return std::nullopt;
  return v->get<std::string>();
}

}  // namespace fetchd::ctl
