// SPDX-License-Identifier: Apache-2.0
#include "fetchd/strategy/worker_protocol.hpp"

#include <fmt/format.h>

#include <array>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace fetchd::strategy::protocol {

namespace {

using nlohmann::json;

// Thrown by the field readers below and turned into the decode error at the boundary of each decode function.
struct BadMessage : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF): what nlohmann's dump() accepts.
bool is_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (std::size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    constexpr std::array<std::uint32_t, 5> kMin{0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += len;
  }
  return true;
}

json text(const std::string& s) {
  if (is_utf8(s)) return s;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(s.size() * 2);
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    hex += kHex[u >> 4];
    hex += kHex[u & 15];
  }
  return json{{"hex", std::move(hex)}};
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

std::string as_text(const json& v, const char* key) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.size() == 1 && v.contains("hex") && v["hex"].is_string()) {
    const auto& hex = v["hex"].get_ref<const std::string&>();
    if (hex.size() % 2 != 0) throw BadMessage(fmt::format("'{}': odd number of hex digits", key));
    std::string out;
    out.reserve(hex.size() / 2);
    for (std::size_t i = 0; i < hex.size(); i += 2) {
      int hi = hex_digit(hex[i]);
      int lo = hex_digit(hex[i + 1]);
      if (hi < 0 || lo < 0) throw BadMessage(fmt::format("'{}': not lowercase hex", key));
      out += static_cast<char>((hi << 4) | lo);
    }
    return out;
  }
  throw BadMessage(fmt::format("'{}' must be a string", key));
}

const json& field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) throw BadMessage(fmt::format("missing '{}'", key));
  return *it;
}

std::string get_text(const json& j, const char* key) {
  return as_text(field(j, key), key);
}

std::uint64_t get_u64(const json& j, const char* key) {
  const json& v = field(j, key);
  if (!v.is_number_unsigned()) throw BadMessage(fmt::format("'{}' must be an unsigned integer", key));
  return v.get<std::uint64_t>();
}

std::int64_t get_i64(const json& j, const char* key, std::int64_t min, std::int64_t max) {
  const json& v = field(j, key);
  if (!v.is_number_integer()) throw BadMessage(fmt::format("'{}' must be an integer", key));
  if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(max)) {
    throw BadMessage(fmt::format("'{}' is out of range", key));
  }
  auto n = v.get<std::int64_t>();
  if (n < min || n > max) throw BadMessage(fmt::format("'{}' is out of range", key));
  return n;
}

int get_int(const json& j, const char* key) {
  return static_cast<int>(get_i64(j, key, std::numeric_limits<int>::min(), std::numeric_limits<int>::max()));
}

std::chrono::milliseconds get_ms(const json& j, const char* key) {
  return std::chrono::milliseconds(get_i64(j, key, 0, std::numeric_limits<std::int64_t>::max()));
}

bool get_bool(const json& j, const char* key) {
  const json& v = field(j, key);
  if (!v.is_boolean()) throw BadMessage(fmt::format("'{}' must be true or false", key));
  return v.get<bool>();
}

core::OnExists on_exists_from(std::string_view s) {
  for (auto v : {core::OnExists::kSkip, core::OnExists::kOverwrite, core::OnExists::kFail}) {
    if (core::to_string(v) == s) return v;
  }
  throw BadMessage("unknown 'on_exists'");
}

core::ErrorCategory category_from(std::string_view s) {
  for (int i = static_cast<int>(core::ErrorCategory::kNone);
       i <= static_cast<int>(core::ErrorCategory::kInternal); ++i) {
    auto c = static_cast<core::ErrorCategory>(i);
    if (core::to_string(c) == s) return c;
  }
  throw BadMessage("unknown 'category'");
}

json request_json(const core::TransferRequest& r) {
  json headers = json::array();
  for (const auto& [name, value] : r.options.headers)
    headers.push_back(json::array({text(name), text(value)}));
  json j{{"op", "submit"},
         {"id", r.id},
         {"url", text(r.url)},
         {"dest", text(r.dest)},
         {"on_exists", std::string(core::to_string(r.on_exists))},
         {"fsync", r.fsync},
         {"publish_record", r.publish_record},
         {"part_tag", text(r.part_tag)},
         {"fenced", r.fenced},
         {"attempt", r.attempt},
         {"timeout_ms", r.options.timeout.count()},
         {"connect_timeout_ms", r.options.connect_timeout.count()},
         {"low_speed_limit", r.options.low_speed_limit},
         {"low_speed_time_ms", r.options.low_speed_time.count()},
         {"max_redirects", r.options.max_redirects},
         {"user_agent", text(r.options.user_agent)},
         {"max_size", r.options.max_size},
         {"rate", r.options.rate},
         {"ca_file", text(r.options.ca_file)},
         {"ca_path", text(r.options.ca_path)},
         {"deny_private_addresses", r.options.deny_private_addresses},
         {"headers", std::move(headers)}};
  if (r.sha256) j["sha256"] = text(*r.sha256);
  if (r.sha512) j["sha512"] = text(*r.sha512);
  if (r.expected_size) j["size"] = *r.expected_size;
  return j;
}

core::TransferRequest request_from(const json& j) {
  core::TransferRequest r;
  r.id = get_u64(j, "id");
  r.url = get_text(j, "url");
  r.dest = get_text(j, "dest");
  if (j.contains("sha256")) r.sha256 = get_text(j, "sha256");
  if (j.contains("sha512")) r.sha512 = get_text(j, "sha512");
  if (j.contains("size")) r.expected_size = get_u64(j, "size");
  r.on_exists = on_exists_from(get_text(j, "on_exists"));
  r.fsync = get_bool(j, "fsync");
  r.publish_record = get_bool(j, "publish_record");
  r.part_tag = get_text(j, "part_tag");
  r.fenced = get_bool(j, "fenced");
  r.attempt = get_int(j, "attempt");
  r.options.timeout = get_ms(j, "timeout_ms");
  r.options.connect_timeout = get_ms(j, "connect_timeout_ms");
  r.options.low_speed_limit = get_u64(j, "low_speed_limit");
  r.options.low_speed_time = get_ms(j, "low_speed_time_ms");
  r.options.max_redirects = get_int(j, "max_redirects");
  r.options.user_agent = get_text(j, "user_agent");
  r.options.max_size = get_u64(j, "max_size");
  r.options.rate = get_u64(j, "rate");
  r.options.ca_file = get_text(j, "ca_file");
  r.options.ca_path = get_text(j, "ca_path");
  r.options.deny_private_addresses = get_bool(j, "deny_private_addresses");
  const json& headers = field(j, "headers");
  if (!headers.is_array()) throw BadMessage("'headers' must be a list");
  for (const auto& h : headers) {
    if (!h.is_array() || h.size() != 2) throw BadMessage("'headers' items must be [name, value]");
    r.options.headers.emplace_back(as_text(h[0], "headers"), as_text(h[1], "headers"));
  }
  return r;
}

json result_json(const core::TransferResult& r) {
  json j{{"op", "result"},
         {"id", r.id},
         {"category", std::string(core::to_string(r.category))},
         {"curl_code", r.curl_code},
         {"http_status", r.http_status},
         {"message", text(r.message)},
         {"bytes", r.bytes},
         {"skipped", r.skipped},
         {"retryable", r.retryable},
         {"sha256", text(r.sha256)},
         {"resumed_from", r.resumed_from}};
  if (r.retry_after) j["retry_after_s"] = r.retry_after->count();
  return j;
}

core::TransferResult result_from(const json& j) {
  core::TransferResult r;
  r.id = get_u64(j, "id");
  r.category = category_from(get_text(j, "category"));
  r.curl_code = get_int(j, "curl_code");
  r.http_status = static_cast<long>(get_i64(j, "http_status", 0, std::numeric_limits<int>::max()));
  r.message = get_text(j, "message");
  r.bytes = get_u64(j, "bytes");
  r.skipped = get_bool(j, "skipped");
  r.retryable = get_bool(j, "retryable");
  if (j.contains("retry_after_s")) {
    r.retry_after =
        std::chrono::seconds(get_i64(j, "retry_after_s", 0, std::numeric_limits<std::int64_t>::max()));
  }
  r.sha256 = get_text(j, "sha256");
  r.resumed_from = get_u64(j, "resumed_from");
  return r;
}

std::string line(const json& j) {
  // Every string went through text(), so dump() cannot meet invalid UTF-8; ASCII-only output keeps the line
  // free of raw control characters and of anything a terminal would interpret, should someone watch the pipe.
  std::string out = j.dump(-1, ' ', /*ensure_ascii=*/true);
  out += '\n';
  return out;
}

// Parses one line into an object with a string "op"; decode_* dispatch on it.
template <typename Decode>
auto decode_line(std::string_view text_line, std::string* error, Decode&& decode)
    -> decltype(decode(json{}, "")) {
  json j = json::parse(text_line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    *error = "not valid JSON";
    return std::nullopt;
  }
  if (!j.is_object()) {
    *error = "not a JSON object";
    return std::nullopt;
  }
  try {
    const json& op = field(j, "op");
    if (!op.is_string()) throw BadMessage("'op' must be a string");
    return decode(j, op.get_ref<const std::string&>());
  } catch (const BadMessage& e) {
    *error = e.what();
  } catch (const json::exception& e) {
    // Not expected (every access is checked first); nlohmann's messages name types, never values.
    *error = e.what();
  }
  return std::nullopt;
}

}  // namespace

std::string encode(const ToWorker& message) {
  if (const auto* s = std::get_if<Submit>(&message)) return line(request_json(s->request));
  if (const auto* r = std::get_if<Rate>(&message))
    return line(json{{"op", "rate"}, {"bytes_per_s", r->bytes_per_s}});
  const auto& c = std::get<Cancel>(message);
  return line(json{{"op", "cancel"}, {"id", c.id}});
}

std::string encode(const FromWorker& message) {
  if (const auto* r = std::get_if<Result>(&message)) return line(result_json(r->result));
  const auto& p = std::get<Progress>(message);
  return line(json{{"op", "progress"}, {"bytes", p.bytes}});
}

std::optional<ToWorker> decode_to_worker(std::string_view text_line, std::string* error) {
  return decode_line(text_line, error, [](const json& j, const std::string& op) -> std::optional<ToWorker> {
    if (op == "submit") return Submit{request_from(j)};
    if (op == "cancel") return Cancel{get_u64(j, "id")};
    if (op == "rate") return Rate{get_u64(j, "bytes_per_s")};
    throw BadMessage("unknown op for a worker");
  });
}

std::optional<FromWorker> decode_from_worker(std::string_view text_line, std::string* error) {
  return decode_line(text_line, error, [](const json& j, const std::string& op) -> std::optional<FromWorker> {
    if (op == "result") return Result{result_from(j)};
    if (op == "progress") return Progress{get_u64(j, "bytes")};
    throw BadMessage("unknown op from a worker");
  });
}

bool LineBuffer::feed(const char* data, std::size_t size,
                      const std::function<void(std::string_view)>& on_line) {
  std::size_t start = 0;
  while (start < size) {
    const void* nl = std::memchr(data + start, '\n', size - start);
    if (nl == nullptr) break;
    auto end = static_cast<std::size_t>(static_cast<const char*>(nl) - data);
    if (partial_.size() + (end - start) > kMaxLineBytes) {
      partial_.clear();
      return false;
    }
    if (partial_.empty()) {
      on_line(std::string_view(data + start, end - start));  // the common case: no copy
    } else {
      partial_.append(data + start, end - start);
      std::string complete = std::move(partial_);
      partial_.clear();
      on_line(complete);
    }
    start = end + 1;
  }
  partial_.append(data + start, size - start);
  if (partial_.size() > kMaxLineBytes) {
    partial_.clear();
    return false;
  }
  return true;
}

}  // namespace fetchd::strategy::protocol
