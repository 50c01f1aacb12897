// SPDX-License-Identifier: Apache-2.0
#include "fetchd/config/value_reader.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <nlohmann/json.hpp>

#include "fetchd/core/units.hpp"
#include "text_util.hpp"

namespace fetchd::config {
namespace {

using detail::escape;
using detail::show;
using std::chrono::milliseconds;

const std::vector<std::string_view> kBackoffKeys{"initial", "max", "multiplier", "jitter"};

bool is_hex(char c) {
  return std::isxdigit(static_cast<unsigned char>(c)) != 0;
}

}  // namespace

const std::vector<std::string_view> kJobOptionKeys{"sha512",  "timeout", "max_size", "rate",
                                                   "retries", "backoff", "retry_on", "retry_after_max"};

Value value_from_json(const nlohmann::json& j) {
  Value v;
  v.json = true;
  if (j.is_null()) return v;
  if (j.is_array()) {
    v.kind = Value::Kind::kList;
    for (const auto& item : j) v.items.push_back(value_from_json(item));
  } else if (j.is_object()) {
    v.kind = Value::Kind::kMap;
    for (const auto& [name, member] : j.items()) {
      Value key;
      key.kind = Value::Kind::kScalar;
      key.text = name;
      key.json = true;
      v.members.push_back(Member{std::move(key), value_from_json(member)});
    }
  } else {
    v.kind = Value::Kind::kScalar;
    v.text = j.is_string() ? j.get<std::string>() : j.dump();
  }
  return v;
}

Pos Entry::value_pos() const {
  if (value->is_null()) return key_pos;
  return value->pos.line > 0 ? value->pos : key_pos;
}

std::string kind_of(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kMap:
      return v.json ? "an object" : "a map";
    case Value::Kind::kList:
      return v.json ? "an array" : "a list";
    case Value::Kind::kScalar:
      return fmt::format("the value {}", show(v.text));
    case Value::Kind::kNull:
      break;
  }
  return "nothing";
}

std::string child_key(const std::string& path, std::string_view name) {
  return path.empty() ? escape(name) : path + "." + escape(name);
}

std::vector<Entry> ValueReader::entries(const Value& v, const std::string& path, Pos pos,
                                        const std::vector<std::string_view>& allowed, bool any_key,
                                        bool case_insensitive) {
  std::vector<Entry> out;
  if (v.is_null()) return out;
  if (!v.is_map()) {
    error(v.pos.line > 0 ? v.pos : pos, path, fmt::format("expected a map, got {}", kind_of(v)));
    return out;
  }
  std::string where = path.empty() ? std::string("at the top level") : "in " + path;
  for (const auto& [k, value] : v.members) {
    Pos kp = k.pos;
    if (!k.is_scalar()) {
      error(kp, path, fmt::format("keys must be plain strings, got {}", kind_of(k)));
      continue;
    }
    const std::string& name = k.text;
    if (!detail::is_valid_utf8(name)) {
      error(kp, path, "a key that is not valid UTF-8");
      continue;
    }
    std::string key = child_key(path, name);
    if (!any_key && std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      std::string msg = fmt::format("unknown key {} {}", show(name), where);
      if (auto close = detail::closest_match(name, allowed)) {
        msg += fmt::format("; did you mean '{}'?", *close);
      } else {
        msg += fmt::format(" (allowed: {})", detail::join(allowed));
      }
      error(kp, key, std::move(msg));
      continue;
    }
    auto first = std::find_if(out.begin(), out.end(), [&](const Entry& e) {
      return case_insensitive ? detail::iequals(e.name, name) : e.name == name;
    });
    if (first != out.end()) {
      error(kp, key, fmt::format("{} is given twice (first at line {})", show(name), first->key_pos.line));
      continue;
    }
    out.push_back(Entry{name, std::move(key), kp, &value});
  }
  return out;
}

std::optional<std::string> ValueReader::scalar(const Entry& e, std::string_view expected) {
  if (e.value->is_scalar()) {
    // Every string kept comes through here. Not UTF-8 (raw bytes, or yaml-cpp 0.7 decoding the escapes "\N"
    // and "\_" to single bytes): refused, since dump_config could not write it back as it is.
    if (!detail::is_valid_utf8(e.value->text)) {
      error(e.value_pos(), e.key, "not valid UTF-8");
      return std::nullopt;
    }
    return e.value->text;
  }
  if (e.value->is_null()) {
    error(e.key_pos, e.key, fmt::format("missing value; expected {}", expected));
  } else {
    error(e.value_pos(), e.key, fmt::format("expected {}, got {}", expected, kind_of(*e.value)));
  }
  return std::nullopt;
}

std::optional<int> ValueReader::integer(const Entry& e, int min) {
  auto s = scalar(e, "an integer");
  if (!s) return std::nullopt;
  int value = 0;
  const char* end = s->data() + s->size();
  auto [ptr, ec] = std::from_chars(s->data(), end, value);
  if (ec == std::errc::result_out_of_range) {
    error(e.value_pos(), e.key, fmt::format("{} is out of range", show(*s)));
    return std::nullopt;
  }
  if (ec != std::errc{} || ptr != end) {
    error(e.value_pos(), e.key, fmt::format("expected an integer, got {}", show(*s)));
    return std::nullopt;
  }
  if (value < min) {
    error(e.value_pos(), e.key,
          min == 0 ? fmt::format("must not be negative, got {}", value)
                   : fmt::format("must be at least {}, got {}", min, value));
    return std::nullopt;
  }
  return value;
}

std::optional<bool> ValueReader::boolean(const Entry& e) {
  auto s = scalar(e, "true or false");
  if (!s) return std::nullopt;
  if (detail::iequals(*s, "true")) return true;
  if (detail::iequals(*s, "false")) return false;
  error(e.value_pos(), e.key, fmt::format("expected true or false, got {}", show(*s)));
  return std::nullopt;
}

std::optional<std::uint64_t> ValueReader::size(const Entry& e) {
  auto s = scalar(e, "a size such as 4096, 64KiB or 1.5MB");
  if (!s) return std::nullopt;
  std::string why;
  auto v = core::parse_size(*s, &why);
  if (!v) error(e.value_pos(), e.key, why);
  return v;
}

std::optional<milliseconds> ValueReader::duration(const Entry& e, bool allow_zero) {
  auto s = scalar(e, "a duration such as 30s, 2m or 250ms");
  if (!s) return std::nullopt;
  std::string why;
  auto v = core::parse_duration(*s, &why);
  if (!v) {
    error(e.value_pos(), e.key, why);
    return std::nullopt;
  }
  if (v->count() < 0 || (v->count() == 0 && !allow_zero)) {
    error(e.value_pos(), e.key, fmt::format("must be longer than 0, got {}", show(*s)));
    return std::nullopt;
  }
  return v;
}

std::optional<std::string> ValueReader::hex(const Entry& e, std::size_t digits) {
  const std::string expected = fmt::format("{} hex digits", digits);
  auto s = scalar(e, expected);
  if (!s) return std::nullopt;
  if (s->size() != digits || !std::all_of(s->begin(), s->end(), is_hex)) {
    error(e.value_pos(), e.key, fmt::format("expected {}, got {} ({} characters)", expected, show(*s), s->size()));
    return std::nullopt;
  }
  for (auto& c : *s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::optional<std::size_t> ValueReader::choice_index(const Entry& e, std::string_view what,
                                                     const std::vector<std::string_view>& names) {
  auto s = scalar(e, fmt::format("one of: {}", detail::join(names)));
  if (!s) return std::nullopt;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i] == *s) return i;
  }
  std::string msg = fmt::format("unknown {} {}; expected one of: {}", what, show(*s), detail::join(names));
  if (auto close = detail::closest_match(*s, names)) msg += fmt::format(" (did you mean '{}'?)", *close);
  error(e.value_pos(), e.key, std::move(msg));
  return std::nullopt;
}

Entry ValueReader::item(const Entry& list, std::size_t i) {
  const Value& v = list.value->items[i];
  return Entry{"", fmt::format("{}[{}]", list.key, i), v.pos.line > 0 ? v.pos : list.key_pos, &v};
}

bool ValueReader::job_option(const Entry& e, core::JobOptions& out) {
  if (e.name == "sha512") {
    if (auto v = hex(e, 128)) out.sha512 = std::move(*v);
  } else if (e.name == "timeout") {
    if (auto v = duration(e, /*allow_zero=*/true)) out.timeout = *v;
  } else if (e.name == "max_size") {
    if (auto v = size(e)) out.max_size = *v;
  } else if (e.name == "rate") {
    if (auto v = size(e)) out.rate = *v;
  } else {
    return retry_key(e, out.retry);
  }
  return true;
}

bool ValueReader::retry_key(const Entry& e, core::RetryOverrides& r) {
  if (e.name == "retries") {
    if (auto v = integer(e, 0)) r.retries = *v;
  } else if (e.name == "retry_after_max") {
    if (auto v = duration(e)) r.retry_after_max = *v;
  } else if (e.name == "retry_on") {
    if (auto v = retry_on(e)) r.retry_on = std::move(*v);
  } else if (e.name == "backoff") {
    for (const auto& b : entries(*e.value, e.key, e.key_pos, kBackoffKeys)) {
      if (b.name == "initial") {
        if (auto v = duration(b)) r.initial = *v;
      } else if (b.name == "max") {
        if (auto v = duration(b)) r.max = *v;
      } else if (b.name == "multiplier") {
        auto text = scalar(b, "a number of at least 1, such as 2 or 1.5");
        if (!text) continue;
        double v = 0;
        auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
        if (ec != std::errc{} || ptr != text->data() + text->size() || !(v >= 1.0) || v > 1000.0) {
          error(b.value_pos(), b.key, fmt::format("expected a number from 1 to 1000, got {}", show(*text)));
          continue;
        }
        r.multiplier = v;
      } else if (b.name == "jitter") {
        if (auto v = choice<core::Jitter>(b, "jitter", {{"full", core::Jitter::kFull}, {"none", core::Jitter::kNone}}))
          r.jitter = *v;
      }
    }
  } else {
    return false;
  }
  return true;
}

std::optional<core::RetryOn> ValueReader::retry_on(const Entry& e) {
  if (!e.value->is_list()) {
    error(e.value_pos(), e.key,
          fmt::format("expected a list such as [connect, timeout, partial, 429, 503], got {}", kind_of(*e.value)));
    return std::nullopt;
  }
  core::RetryOn out{false, false, false, false, {}};
  bool ok = true;
  for (std::size_t i = 0; i < e.value->items.size(); ++i) {
    Entry it = item(e, i);
    auto text = scalar(it, "connect, timeout, partial, tls or an HTTP status");
    if (!text) {
      ok = false;
      continue;
    }
    if (*text == "connect") {
      out.connect = true;
    } else if (*text == "timeout") {
      out.timeout = true;
    } else if (*text == "partial") {
      out.partial = true;
    } else if (*text == "tls") {
      out.tls = true;
    } else {
      int status = 0;
      auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), status);
      if (ec != std::errc{} || ptr != text->data() + text->size() || status < 400 || status > 599) {
        error(it.value_pos(), it.key,
              fmt::format("expected connect, timeout, partial, tls or an HTTP status from 400 to 599, got {}",
                          show(*text)));
        ok = false;
        continue;
      }
      out.statuses.push_back(status);
    }
  }
  if (!ok) return std::nullopt;
  std::sort(out.statuses.begin(), out.statuses.end());
  out.statuses.erase(std::unique(out.statuses.begin(), out.statuses.end()), out.statuses.end());
  return out;
}

}  // namespace fetchd::config
