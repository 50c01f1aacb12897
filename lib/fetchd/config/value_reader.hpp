// SPDX-License-Identifier: Apache-2.0
#pragma once
// The one place where config values are read and checked: a small tree (Value) that both the YAML loader and
// the control socket's JSON parser build, and a reader that turns its scalars, lists and maps into sizes,
// durations, retry policies and a job's own options, naming the dotted key in every error. So a job's keys
// mean the same, and are refused with the same words, wherever the job comes from. Any thread.

#include <chrono>
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fetchd/core/job_options.hpp"
#include "fetchd/core/transfer_types.hpp"

namespace fetchd::config {

struct Pos {
  int line = 0;  // 1-based, 0 = unknown
  int column = 0;
};

struct Member;

// A YAML node or a JSON value. Scalars keep their text: YAML scalars as written, JSON strings as they are,
// JSON numbers and booleans as JSON writes them ("30", "1.5", "true").
struct Value {
  enum class Kind { kNull, kScalar, kList, kMap };
  Kind kind = Kind::kNull;
  std::string text;                                    // kScalar
  std::vector<Value> items;                            // kList
  std::vector<Member> members;                         // kMap, in source order
  Pos pos;
  bool json = false;  // from JSON: messages say "an object"/"an array" instead of "a map"/"a list"

  bool is_null() const { return kind == Kind::kNull; }
  bool is_scalar() const { return kind == Kind::kScalar; }
  bool is_list() const { return kind == Kind::kList; }
  bool is_map() const { return kind == Kind::kMap; }
};

// One key: value of a map. Not a std::pair: a pair of a type that is still incomplete inside its own definition
// trips libstdc++'s completeness checks under clang 14.
struct Member {
  Value key;
  Value value;
};

// A JSON value as a Value tree (JSON has no positions). Its depth is the caller's business.
Value value_from_json(const nlohmann::json& j);

// A key of a map that passed the key checks.
struct Entry {
  std::string name;
  std::string key;  // dotted path for messages
  Pos key_pos;
  const Value* value = nullptr;

  // Where the value is; a missing value (null) has no useful mark of its own, so the key's is used.
  Pos value_pos() const;
};

// "a map", "a list", "the value 'x'", "nothing".
std::string kind_of(const Value& v);

// The keys of a job that are its own options (core::JobOptions), in the YAML job list and on the socket.
extern const std::vector<std::string_view> kJobOptionKeys;

class ValueReader {
 public:
  virtual ~ValueReader() = default;

  // Reads `e` into `out` when its name is one of kJobOptionKeys (true), else leaves both alone (false).
  bool job_option(const Entry& e, core::JobOptions& out);
  // The retry keys a job shares with defaults (retries, backoff, retry_on, retry_after_max). True when `e`
  // was one of them.
  bool retry_key(const Entry& e, core::RetryOverrides& r);

 protected:
  // Every problem found; the reader goes on after it (an implementation may throw to stop at the first).
  virtual void error(Pos pos, std::string key, std::string message) = 0;

  // Checks that `v` is a map (nothing counts as empty) with string keys from `allowed` (any key when
  // `any_key`), each at most once; returns the good entries in source order.
  std::vector<Entry> entries(const Value& v, const std::string& path, Pos pos,
                             const std::vector<std::string_view>& allowed, bool any_key = false,
                             bool case_insensitive = false);
  std::optional<std::string> scalar(const Entry& e, std::string_view expected);
  std::optional<int> integer(const Entry& e, int min);
  std::optional<bool> boolean(const Entry& e);
  std::optional<std::uint64_t> size(const Entry& e);
  // allow_zero: 0 means "no limit" for this key.
  std::optional<std::chrono::milliseconds> duration(const Entry& e, bool allow_zero = false);
  // `digits` hex digits, lowercased.
  std::optional<std::string> hex(const Entry& e, std::size_t digits);
  template <typename T>
  std::optional<T> choice(const Entry& e, std::string_view what,
                          const std::vector<std::pair<std::string_view, T>>& options) {
    std::vector<std::string_view> names;
    for (const auto& o : options) names.push_back(o.first);
    auto i = choice_index(e, what, names);
    if (!i) return std::nullopt;
    return options[*i].second;
  }
  // The index of the name in `names` that `e` is.
  std::optional<std::size_t> choice_index(const Entry& e, std::string_view what,
                                          const std::vector<std::string_view>& names);
  // retry_on: a list of failure classes (connect, timeout, partial, tls) and HTTP statuses (400-599).
  std::optional<core::RetryOn> retry_on(const Entry& e);
  // The entry of item i of a list entry, for messages: "<key>[i]".
  static Entry item(const Entry& list, std::size_t i);
};

std::string child_key(const std::string& path, std::string_view name);

}  // namespace fetchd::config
