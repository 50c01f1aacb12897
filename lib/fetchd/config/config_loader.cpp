// SPDX-License-Identifier: Apache-2.0
// Loading: YAML text -> a validated Config. The walk never stops at the first problem: every error is
// collected with its file, line, column and dotted key, and thrown at the end as one ConfigErrors.
#include <fmt/format.h>
#include <unistd.h>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <optional>
#include <sstream>
#include <system_error>
#include <unordered_map>
#include <utility>

#include "fetchd/config/config.hpp"
#include "fetchd/core/dest_path.hpp"
#include "fetchd/core/units.hpp"
#include "fetchd/core/version.hpp"
#include "fetchd/curl/curl.hpp"
#include "fetchd/config/validate.hpp"
#include "fetchd/config/value_reader.hpp"
#include "text_util.hpp"

namespace fetchd::config {
namespace fs = std::filesystem;
using std::chrono::milliseconds;

namespace {

// Aliases can make a small document expand to a huge tree; stop walking long before that hurts.
constexpr std::size_t kMaxVisitedNodes = 1'000'000;

const std::vector<std::string_view> kRootKeys{"strategy", "output", "defaults", "limits", "tls",
                                              "security", "log",    "control",  "state",  "shutdown",
                                              "jobs"};
const std::vector<std::string_view> kLimitsKeys{"per_host", "rate"};
const std::vector<std::string_view> kTlsKeys{"ca_file", "ca_path"};
const std::vector<std::string_view> kSecurityKeys{"deny_private_addresses", "redact_query"};
const std::vector<std::string_view> kControlKeys{"socket", "mode", "group", "tcp", "max_connections"};
const std::vector<std::string_view> kStateKeys{"dir", "synchronous", "history", "url", "node", "lease"};
const std::vector<std::string_view> kHistoryKeys{"max_age", "max_jobs"};
const std::vector<std::string_view> kShutdownKeys{"grace"};
const std::vector<std::string_view> kStrategyKeys{"kind", "concurrency", "workers", "inner", "threads"};
const std::vector<std::string_view> kOutputKeys{"dir", "on_exists", "fsync"};
const std::vector<std::string_view> kDefaultsKeys{
    "timeout",    "connect_timeout", "low_speed", "retries", "backoff",  "retry_on", "retry_after_max",
    "max_redirects", "user_agent",   "headers",   "max_size", "rate"};
const std::vector<std::string_view> kLowSpeedKeys{"limit", "time"};
const std::vector<std::string_view> kLogKeys{"level", "interval"};
const std::vector<std::string_view> kJobKeys{"url",     "dest",    "sha256",   "sha512",          "size",
                                             "headers", "timeout", "max_size", "rate",            "retries",
                                             "backoff", "retry_on", "retry_after_max", "urls_file"};
const std::vector<std::string_view> kLogLevels{"trace", "debug", "info", "warn", "error", "off"};

Pos pos_of(const YAML::Mark& m) {
  if (m.is_null() || m.line < 0 || m.column < 0) return {};
  return {m.line + 1, m.column + 1};
}

Pos pos_of(const YAML::Node& n) {
  return pos_of(n.Mark());
}

// The document as a Value tree for the reader (value_reader.hpp). Recursive: check_shape bounded the depth.
Value to_value(const YAML::Node& n) {
  Value v;
  v.pos = pos_of(n);
  switch (n.Type()) {
    case YAML::NodeType::Scalar:
      v.kind = Value::Kind::kScalar;
      v.text = n.Scalar();
      break;
    case YAML::NodeType::Sequence:
      v.kind = Value::Kind::kList;
      for (const auto& item : n) v.items.push_back(to_value(item));
      break;
    case YAML::NodeType::Map:
      v.kind = Value::Kind::kMap;
      for (const auto& kv : n) v.members.push_back(Member{to_value(kv.first), to_value(kv.second)});
      break;
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      break;
  }
  return v;
}

// Where each YAML document of `text` starts, up to the second one. yaml-cpp 0.7's LoadAll never returns on some
// invalid input (a lone ','): its parser reports empty documents forever without consuming anything
// (jbeder/yaml-cpp#1040, fixed after 0.7.0; found by tests/fuzz/config_fuzz.cpp). So the documents are counted
// from the parser's events, which stops at the second; two that start at the same place mean the parser is
// stuck. Throws what the parser throws.
std::vector<YAML::Mark> document_starts(const std::string& text) {
  struct Starts final : YAML::EventHandler {
    std::vector<YAML::Mark> marks;
    void OnDocumentStart(const YAML::Mark& mark) override { marks.push_back(mark); }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
    void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
    void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
    void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
    void OnMapEnd() override {}
  } starts;
  std::istringstream in(text);
  YAML::Parser parser(in);
  while (starts.marks.size() < 2 && parser.HandleNextDocument(starts)) {
  }
  return std::move(starts.marks);
}

using detail::escape;
using detail::show;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// The whole file, or nullopt with *error set to the reason (errno text, or its size).
std::optional<std::string> read_file(const fs::path& path, std::uintmax_t limit, std::string* error) {
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  if (ec) {
    *error = ec.message();
    return std::nullopt;
  }
  if (fs::is_directory(st)) {
    *error = std::make_error_code(std::errc::is_a_directory).message();
    return std::nullopt;
  }
  auto too_large = [&] {
    *error = fmt::format("file is larger than the limit of {}", core::format_size(limit));
  };
  if (fs::is_regular_file(st)) {
    std::uintmax_t size = fs::file_size(path, ec);
    if (!ec && size > limit) {
      // Refused before reading, let alone parsing.
      too_large();
      return std::nullopt;
    }
  }
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int e = errno;
    *error = e != 0 ? std::generic_category().message(e) : std::string("cannot open the file");
    return std::nullopt;
  }
  std::string data;
  std::array<char, 64 * 1024> buf{};
  // The size was checked above, but a pipe or a growing file has no reliable size: cap while reading too.
  while (in.read(buf.data(), buf.size()) || in.gcount() > 0) {
    data.append(buf.data(), static_cast<std::size_t>(in.gcount()));
    if (data.size() > limit) {
      too_large();
      return std::nullopt;
    }
  }
  if (in.bad()) {
    int e = errno;
    *error = e != 0 ? std::generic_category().message(e) : std::string("read error");
    return std::nullopt;
  }
  return data;
}

// Where a job was defined, for messages about its destination.
struct Site {
  std::string file;
  Pos pos;
  std::string key;
  std::array<int, 4> order{};  // position in the config file, then in the urls_file
};

class Loader final : public ValueReader {
 public:
  Loader(std::string name, const fs::path& base_dir) : name_(std::move(name)) {
    base_dir_ = strip_trailing_separator(fs::absolute(base_dir).lexically_normal());
    config_.defaults.user_agent = std::string("fetchd/") + core::kVersion;
    config_.output.dir = strip_trailing_separator((base_dir_ / config_.output.dir).lexically_normal());
  }

  Config load(const std::string& text) {
    if (text.size() > kMaxConfigBytes) {
      error({}, "", fmt::format("file is larger than the limit of {}", core::format_size(kMaxConfigBytes)));
      throw_errors();
    }
    std::optional<YAML::Node> doc;
    try {
      const std::vector<YAML::Mark> starts = document_starts(text);
      if (starts.size() > 1) {
        if (starts[1].pos == starts[0].pos) {
          // The parser is stuck (see document_starts): no document can begin here.
          error(pos_of(starts[1]), "", fmt::format("invalid YAML: unexpected {}",
                                                   show(text.substr(static_cast<std::size_t>(starts[1].pos), 1))));
        } else {
          error(pos_of(starts[1]), "", "only one YAML document is allowed ('---' starts a second one)");
        }
        throw_errors();
      }
      if (!starts.empty()) doc = YAML::Load(text);
    } catch (const YAML::DeepRecursion& e) {
      // yaml-cpp's own guard against stack exhaustion; its message ("bad file") would not help anyone.
      error(pos_of(e.mark), "", "invalid YAML: nested too deeply");
      throw_errors();
    } catch (const YAML::Exception& e) {
      error(pos_of(e.mark), "", fmt::format("invalid YAML: {}", e.msg));
      throw_errors();
    }
    try {
      if (doc && check_shape(*doc)) root(to_value(*doc));
    } catch (const YAML::Exception& e) {
      // Not expected: every access is type-checked first. Still, no yaml-cpp exception leaves this component.
      error(pos_of(e.mark), "", fmt::format("invalid YAML: {}", e.msg));
    }
    // Runs even after other errors: it only looks at the jobs that passed, so it adds no follow-up noise.
    check_destinations();
    if (!errors_.empty()) throw_errors();
    return std::move(config_);
  }

 private:
  static fs::path strip_trailing_separator(fs::path p) {
    if (!p.has_filename() && p.has_relative_path()) p = p.parent_path();
    return p;
  }

  void error(const Site& site, std::string message) {
    ConfigError e;
    e.file = site.file;
    e.line = site.pos.line;
    e.column = site.pos.column;
    e.key = site.key;
    e.message = escape(message);
    errors_.emplace_back(site.order, std::move(e));
  }

  void error(Pos pos, std::string key, std::string message) override {
    error(Site{name_, pos, std::move(key), {pos.line, pos.column, 0, 0}}, std::move(message));
  }

  [[noreturn]] void throw_errors() {
    std::stable_sort(errors_.begin(), errors_.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<ConfigError> out;
    out.reserve(errors_.size());
    for (auto& [order, e] : errors_) out.push_back(std::move(e));
    throw ConfigErrors(std::move(out));
  }

  // Refuses documents nested deeper than kMaxConfigDepth before anything walks them, without recursion.
  bool check_shape(const YAML::Node& root) {
    struct Item {
      YAML::Node node;
      int depth;
    };
    std::vector<Item> stack{{root, 1}};
    std::size_t visited = 0;
    while (!stack.empty()) {
      Item item = std::move(stack.back());
      stack.pop_back();
      if (++visited > kMaxVisitedNodes) {
        error(pos_of(item.node), "", "the document is too large once its aliases are expanded");
        return false;
      }
      if (item.depth > kMaxConfigDepth) {
        error(pos_of(item.node), "", fmt::format("nested deeper than {} levels", kMaxConfigDepth));
        return false;
      }
      if (item.node.IsSequence()) {
        for (const auto& child : item.node) stack.push_back({child, item.depth + 1});
      } else if (item.node.IsMap()) {
        for (const auto& kv : item.node) {
          stack.push_back({kv.first, item.depth + 1});
          stack.push_back({kv.second, item.depth + 1});
        }
      }
    }
    return true;
  }

  // A string without control characters (a tab is fine), for headers and the user agent.
  std::optional<std::string> header_text(const Entry& e, std::string_view expected) {
    auto s = scalar(e, expected);
    if (!s) return std::nullopt;
    if (!config::header_value_ok(*s)) {
      // Never echo the value: it may be a secret.
      error(e.value_pos(), e.key,
            "contains a control character (CR, LF, NUL or similar); header values must be a single line");
      return std::nullopt;
    }
    return s;
  }

  std::optional<core::Headers> headers(const Entry& section) {
    bool ok = true;
    core::Headers out;
    auto list =
        entries(*section.value, section.key, section.key_pos, {}, /*any_key=*/true, /*case_insensitive=*/true);
    for (const auto& e : list) {
      if (!config::header_name_ok(e.name)) {
        error(e.key_pos, e.key,
              fmt::format("header name {} is not valid (letters, digits and !#$%&'*+-.^_`|~ only)",
                          show(e.name)));
        ok = false;
        continue;
      }
      auto value = header_text(e, "a string (the header value)");
      if (!value) {
        ok = false;
        continue;
      }
      out.emplace_back(e.name, std::move(*value));
    }
    if (!ok) return std::nullopt;
    return out;
  }

  void root(const Value& node) {
    for (const auto& e : entries(node, "", node.pos, kRootKeys)) {
      if (e.name == "strategy") strategy(e);
      if (e.name == "output") output(e);
      if (e.name == "defaults") defaults(e);
      if (e.name == "limits") limits(e);
      if (e.name == "tls") tls(e);
      if (e.name == "security") security(e);
      if (e.name == "log") log(e);
      if (e.name == "control") control(e);
      if (e.name == "state") state(e);
      if (e.name == "shutdown") shutdown(e);
      if (e.name == "jobs") jobs(e);
    }
  }

  void strategy(const Entry& section) {
    auto& s = config_.strategy;
    std::size_t errors_before = errors_.size();
    Pos workers_at = section.key_pos;  // where a cross-key error points when the key itself is missing
    Pos inner_at = section.key_pos;
    for (const auto& e : entries(*section.value, section.key, section.key_pos, kStrategyKeys)) {
      if (e.name == "kind") {
        if (auto v = choice<StrategyKind>(e, "strategy kind",
                                          {{"event-loop", StrategyKind::kEventLoop},
                                           {"curl-multi", StrategyKind::kCurlMulti},
                                           {"thread-pool", StrategyKind::kThreadPool},
                                           {"process-pool", StrategyKind::kProcessPool}})) {
          s.kind = *v;
        }
      } else if (e.name == "concurrency") {
        if (auto v = integer(e, 1)) s.concurrency = *v;
      } else if (e.name == "workers") {
        if (auto v = integer(e, 0)) s.workers = *v;
        workers_at = e.value_pos();
      } else if (e.name == "threads") {
        if (e.value->is_scalar() && e.value->text == "auto") {
          s.threads = 0;
        } else if (auto v = integer(e, 0)) {
          s.threads = *v;
        }
      } else if (e.name == "inner") {
        if (auto v = choice<InnerKind>(
                e, "inner strategy",
                {{"event-loop", InnerKind::kEventLoop}, {"blocking", InnerKind::kBlocking}})) {
          s.inner = *v;
        }
        inner_at = e.value_pos();
      }
    }
    // How the keys fit together, checked once each is valid on its own (otherwise it would only add noise),
    // and only for process-pool: the other kinds ignore workers and inner.
    if (errors_.size() != errors_before || s.kind != StrategyKind::kProcessPool) return;
    if (s.inner == InnerKind::kBlocking && s.workers != s.concurrency) {
      // Blocking workers run one transfer each, so there is nothing to choose: say what to write.
      error(inner_at, child_key(section.key, "inner"),
            fmt::format("'blocking' runs one transfer per worker, so workers must equal concurrency; set "
                        "workers: {} (got {}{})",
                        s.concurrency, s.workers, s.workers == 0 ? ", which means one per CPU" : ""));
    } else if (s.workers > s.concurrency) {
      // Refused rather than clamped: a worker without a transfer to run is a mistake worth pointing at.
      // (workers: 0, one per CPU, is clamped to concurrency at start-up instead: the CPU count is not known
      // here.)
      error(workers_at, child_key(section.key, "workers"),
            fmt::format("{} workers would leave some without a transfer: at most concurrency ({})", s.workers,
                        s.concurrency));
    }
  }

  void output(const Entry& section) {
    auto& o = config_.output;
    for (const auto& e : entries(*section.value, section.key, section.key_pos, kOutputKeys)) {
      if (e.name == "dir") {
        output_dir_ok_ = false;
        auto s = scalar(e, "a folder path");
        if (!s) continue;
        if (s->empty()) {
          error(e.value_pos(), e.key, "must not be empty");
          continue;
        }
        if (s->find('\0') != std::string::npos) {
          error(e.value_pos(), e.key, "contains a NUL byte");
          continue;
        }
        fs::path dir = strip_trailing_separator((base_dir_ / *s).lexically_normal());
        std::error_code ec;
        auto st = fs::status(dir, ec);
        if (!ec && !fs::is_directory(st)) {
          error(e.value_pos(), e.key, fmt::format("'{}' exists and is not a folder", dir.string()));
          continue;
        }
        o.dir = std::move(dir);
        output_dir_ok_ = true;
      } else if (e.name == "on_exists") {
        if (auto v = choice<core::OnExists>(e, "on_exists policy",
                                            {{"skip", core::OnExists::kSkip},
                                             {"overwrite", core::OnExists::kOverwrite},
                                             {"fail", core::OnExists::kFail}})) {
          o.on_exists = *v;
        }
      } else if (e.name == "fsync") {
        if (auto v = boolean(e)) o.fsync = *v;
      }
    }
  }

  void defaults(const Entry& section) {
    auto& d = config_.defaults;
    RetryOverrides retry;
    for (const auto& e : entries(*section.value, section.key, section.key_pos, kDefaultsKeys)) {
      if (retry_key(e, retry)) continue;
      if (e.name == "timeout") {
        if (auto v = duration(e, /*allow_zero=*/true)) d.timeout = *v;
      } else if (e.name == "connect_timeout") {
        if (auto v = duration(e)) d.connect_timeout = *v;
      } else if (e.name == "low_speed") {
        low_speed(e);
      } else if (e.name == "max_redirects") {
        if (auto v = integer(e, 0)) d.max_redirects = *v;
      } else if (e.name == "user_agent") {
        if (auto v = header_text(e, "a string")) d.user_agent = std::move(*v);
      } else if (e.name == "headers") {
        if (auto v = headers(e)) d.headers = std::move(*v);
      } else if (e.name == "max_size") {
        if (auto v = size(e)) d.max_size = *v;
      } else if (e.name == "rate") {
        if (auto v = size(e)) d.rate = *v;
      }
    }
    retry.apply_to(d.retry);
  }

  void limits(const Entry& section) {
    for (const auto& e : entries(*section.value, section.key, section.key_pos, kLimitsKeys)) {
      if (e.name == "per_host") {
        if (auto v = integer(e, 0)) config_.limits.per_host = *v;
      } else if (e.name == "rate") {
        if (auto v = size(e)) config_.limits.rate = *v;
      }
    }
  }

  void tls(const Entry& section) {
    for (const auto& e : entries(*section.value, section.key, section.key_pos, kTlsKeys)) {
      auto s = scalar(e, e.name == "ca_file" ? "a PEM file of CA certificates" : "a directory of CA certificates");
      if (!s) continue;
      if (s->empty()) continue;  // "" = the system's default
      fs::path given(*s);
      fs::path full = (given.is_absolute() ? given : base_dir_ / given).lexically_normal();
      std::error_code ec;
      const bool want_dir = e.name == "ca_path";
      const auto status = fs::status(full, ec);
      if (ec || !fs::exists(status) || (want_dir ? !fs::is_directory(status) : !fs::is_regular_file(status)) ||
          ::access(full.c_str(), R_OK | (want_dir ? X_OK : 0)) != 0) {
        error(e.value_pos(), e.key,
              fmt::format("'{}' is not a readable {}", escape(full.string()), want_dir ? "directory" : "file"));
        continue;
      }
      (want_dir ? config_.defaults.ca_path : config_.defaults.ca_file) = full.string();
    }
  }

  void security(const Entry& section) {
    for (const auto& e : entries(*section.value, section.key, section.key_pos, kSecurityKeys)) {
      if (e.name == "deny_private_addresses") {
        if (auto v = boolean(e)) config_.defaults.deny_private_addresses = *v;
      } else if (e.name == "redact_query") {
        if (!e.value->is_list()) {
          error(e.value_pos(), e.key,
                fmt::format("expected a list of query parameter names (\"*\" for all), got {}", kind_of(*e.value)));
          continue;
        }
        std::vector<std::string> names;
        for (std::size_t i = 0; i < e.value->items.size(); ++i) {
          Entry it = item(e, i);
          auto name = scalar(it, "a query parameter name");
          if (!name) continue;
          if (name->empty() || !std::all_of(name->begin(), name->end(), [](char c) {
                return c == '*' || c == '-' || c == '_' || c == '.' || std::isalnum(static_cast<unsigned char>(c));
              })) {
            error(it.value_pos(), it.key, fmt::format("{} is not a query parameter name", show(*name)));
            continue;
          }
          names.push_back(std::move(*name));
        }
        config_.security.redact_query = std::move(names);
      }
    }
  }

  void low_speed(const Entry& section) {
    auto& d = config_.defaults;
    for (const auto& e : entries(*section.value, section.key, section.key_pos, kLowSpeedKeys)) {
      if (e.name == "limit") {
        if (auto v = size(e)) d.low_speed_limit = *v;
      } else if (e.name == "time") {
        auto v = duration(e);
        if (!v) continue;
        // CURLOPT_LOW_SPEED_TIME counts whole seconds; a fraction would be cut off silently.
        if (v->count() % 1000 != 0) {
          error(e.value_pos(), e.key, "must be a whole number of seconds (curl measures it in seconds)");
          continue;
        }
        d.low_speed_time = *v;
      }
    }
  }

  void log(const Entry& section) {
    auto& l = config_.log;
    for (const auto& e : entries(*section.value, section.key, section.key_pos, kLogKeys)) {
      if (e.name == "level") {
        std::vector<std::pair<std::string_view, std::string_view>> levels;
        for (auto name : kLogLevels) levels.emplace_back(name, name);
        if (auto v = choice<std::string_view>(e, "log level", levels)) l.level = std::string(*v);
      } else if (e.name == "interval") {
        if (auto v = duration(e)) l.interval = *v;
      }
    }
  }

  // A path for the daemon's own files: absolute after loading (relative to the config file's folder).
  std::optional<fs::path> daemon_path(const Entry& e, std::string_view expected) {
    auto s = scalar(e, expected);
    if (!s) return std::nullopt;
    if (s->empty() || s->find('\0') != std::string::npos) {
      error(e.value_pos(), e.key, "must be a non-empty path without NUL bytes");
      return std::nullopt;
    }
    return strip_trailing_separator((base_dir_ / *s).lexically_normal());
  }

  void control(const Entry& section) {
    auto& c = config_.control;
    for (const auto& e : entries(*section.value, section.key, section.key_pos, kControlKeys)) {
      if (e.name == "socket") {
        auto p = daemon_path(e, "a socket path");
        if (!p) continue;
        // sockaddr_un.sun_path holds 108 bytes including the NUL.
        if (p->string().size() > 107) {
          error(e.value_pos(), e.key, fmt::format("path is {} bytes; a Unix socket path has at most 107",
                                                  p->string().size()));
          continue;
        }
        c.socket = std::move(*p);
      } else if (e.name == "mode") {
        auto s = scalar(e, "an octal mode such as \"0660\"");
        if (!s) continue;
        unsigned mode = 0;
        auto [end, ec] = std::from_chars(s->data(), s->data() + s->size(), mode, 8);
        if (ec != std::errc() || end != s->data() + s->size() || s->empty() || mode > 0777) {
          error(e.value_pos(), e.key, fmt::format("expected an octal mode such as \"0660\", got {}", show(*s)));
          continue;
        }
        c.mode = mode;
      } else if (e.name == "group") {
        if (auto s = scalar(e, "a group name")) c.group = std::move(*s);
      } else if (e.name == "tcp") {
        auto s = scalar(e, "\"host:port\" on loopback, or \"\"");
        if (!s) continue;
        if (!s->empty() && !loopback_endpoint(*s)) {
          error(e.value_pos(), e.key,
                fmt::format("expected \"127.0.0.1:PORT\" or \"[::1]:PORT\" (loopback only), got {}", show(*s)));
          continue;
        }
        c.tcp = std::move(*s);
      } else if (e.name == "max_connections") {
        if (auto v = integer(e, 1)) c.max_connections = *v;
      }
    }
  }

  static bool loopback_endpoint(std::string_view s) {
    auto colon = s.rfind(':');
    if (colon == std::string_view::npos) return false;
    std::string_view host = s.substr(0, colon);
    std::string_view port = s.substr(colon + 1);
    int p = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || end != port.data() + port.size() || p < 0 || p > 65535) return false;
    if (host == "[::1]" || host == "localhost") return true;
    return host.substr(0, 4) == "127." && std::count(host.begin(), host.end(), '.') == 3;
  }

  void state(const Entry& section) {
    auto& st = config_.state;
    for (const auto& e : entries(*section.value, section.key, section.key_pos, kStateKeys)) {
      if (e.name == "dir") {
        if (auto p = daemon_path(e, "a folder path")) st.dir = std::move(*p);
      } else if (e.name == "synchronous") {
        if (auto v = choice<Synchronous>(e, "synchronous setting",
                                         {{"full", Synchronous::kFull}, {"normal", Synchronous::kNormal}})) {
          st.synchronous = *v;
        }
      } else if (e.name == "url") {
        auto v = scalar(e, "a PostgreSQL URL such as \"postgresql://fetchd@db.example/fetchd\"");
        if (!v) continue;
        if (!v->empty() && v->rfind("postgresql://", 0) != 0 && v->rfind("postgres://", 0) != 0) {
          error(e.value_pos(), e.key,
                "expected a URL starting with postgresql:// (the fleet's shared queue)");
          continue;
        }
        st.url = std::move(*v);
      } else if (e.name == "node") {
        auto v = scalar(e, "a node name");
        if (!v) continue;
        // It names the node's .part files too ("<dest>.<node>.part").
        const bool plain = std::all_of(v->begin(), v->end(), [](unsigned char c) {
          return std::isalnum(c) || c == '-' || c == '_' || c == '.';
        });
        if (v->size() > 64 || !plain || *v == "." || *v == "..") {
          error(e.value_pos(), e.key, "expected up to 64 of A-Z a-z 0-9 - _ . (\"\": the host name)");
          continue;
        }
        st.node = std::move(*v);
      } else if (e.name == "lease") {
        auto v = duration(e);
        if (!v) continue;
        if (*v < std::chrono::seconds(3)) {
          error(e.value_pos(), e.key, "must be at least 3s (a claim is renewed every third of it)");
          continue;
        }
        st.lease = *v;
      } else if (e.name == "history") {
        for (const auto& h : entries(*e.value, e.key, e.key_pos, kHistoryKeys)) {
          if (h.name == "max_age") {
            if (auto v = duration(h)) st.history_max_age = *v;
          } else if (h.name == "max_jobs") {
            if (auto v = integer(h, 0)) st.history_max_jobs = static_cast<std::uint64_t>(*v);
          }
        }
      }
    }
  }

  void shutdown(const Entry& section) {
    for (const auto& e : entries(*section.value, section.key, section.key_pos, kShutdownKeys)) {
      if (e.name == "grace") {
        if (auto v = duration(e)) config_.shutdown.grace = *v;
      }
    }
  }

  void jobs(const Entry& section) {
    if (section.value->is_null()) return;
    if (!section.value->is_list()) {
      error(section.value_pos(), section.key,
            fmt::format("expected a list of jobs, got {}", kind_of(*section.value)));
      return;
    }
    int index = 0;
    for (const auto& item : section.value->items) job(item, index++, section.key_pos);
  }

  void job(const Value& item, int index, Pos fallback) {
    std::string key = fmt::format("jobs[{}]", index);
    Pos pos = item.pos;
    if (pos.line == 0) pos = fallback;
    if (!item.is_map()) {
      error(pos, key, fmt::format("expected a map with 'url' or 'urls_file', got {}", kind_of(item)));
      return;
    }
    std::size_t errors_before = errors_.size();
    auto list = entries(item, key, pos, kJobKeys);
    auto find = [&](std::string_view name) -> const Entry* {
      auto it = std::find_if(list.begin(), list.end(), [&](const Entry& e) { return e.name == name; });
      return it == list.end() ? nullptr : &*it;
    };
    if (const Entry* file = find("urls_file")) {
      for (const auto& e : list) {
        if (&e == file) continue;
        error(e.key_pos, e.key, fmt::format("'{}' cannot be combined with 'urls_file' in one job", e.name));
      }
      urls_file(*file, pos);
      return;
    }
    Job job;
    job.origin = fmt::format("{}:{}", name_, pos.line);
    Site site{name_, pos, key, {pos.line, pos.column, 0, 0}};
    const Entry* url = find("url");
    if (!url) {
      error(pos, key, "missing 'url' (or 'urls_file')");
    } else if (auto s = scalar(*url, "a URL")) {
      if (std::string why = config::url_problem(*s); !why.empty()) {
        error(url->value_pos(), url->key, why);
      } else {
        job.url = std::move(*s);
        job.dest = core::filename_from_url(job.url);
        site =
            Site{name_, url->value_pos(), url->key, {url->value_pos().line, url->value_pos().column, 0, 0}};
      }
    }
    for (const auto& e : list) {
      if (e.name == "dest") {
        auto s = scalar(e, "a relative file path");
        if (!s) continue;
        std::string why;
        auto dest = core::normalize_relative_dest(*s, &why);
        if (!dest) {
          error(e.value_pos(), e.key, why);
          continue;
        }
        job.dest = std::move(*dest);
        site = Site{name_, e.value_pos(), e.key, {e.value_pos().line, e.value_pos().column, 0, 0}};
      } else if (e.name == "sha256") {
        if (auto v = hex(e, 64)) job.sha256 = std::move(*v);
      } else if (e.name == "size") {
        if (auto v = size(e)) job.size = *v;
      } else if (e.name == "headers") {
        if (auto v = headers(e)) job.headers = std::move(*v);
      } else {
        job_option(e, job.options);
      }
    }
    if (errors_.size() != errors_before) return;  // a broken job would only cause follow-up errors
    config_.jobs.push_back(std::move(job));
    job_sites_.push_back(std::move(site));
  }

  void urls_file(const Entry& e, Pos item_pos) {
    auto s = scalar(e, "a file path");
    if (!s) return;
    if (s->empty() || s->find('\0') != std::string::npos) {
      error(e.value_pos(), e.key, "must be a file path");
      return;
    }
    fs::path given(*s);
    fs::path full = given.is_absolute() ? given : base_dir_ / given;
    // Messages name the file as the user can open it from where the config was named.
    std::string shown = given.is_absolute()
                            ? given.string()
                            : (fs::path(name_).parent_path() / given).lexically_normal().string();
    std::string why;
    auto text = read_file(full, kMaxUrlsFileBytes, &why);
    if (!text) {
      error(e.value_pos(), e.key, fmt::format("cannot read '{}': {}", escape(shown), why));
      return;
    }
    std::string_view rest = *text;
    if (rest.substr(0, 3) == "\xef\xbb\xbf") rest.remove_prefix(3);  // a UTF-8 byte order mark
    int line_no = 0;
    while (!rest.empty()) {
      ++line_no;
      auto nl = rest.find('\n');
      std::string_view raw = rest.substr(0, nl);
      rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
      std::string_view line = trim(raw);
      if (line.empty() || line.front() == '#') continue;
      int column = static_cast<int>(line.data() - raw.data()) + 1;
      Site site{shown, {line_no, column}, e.key, {item_pos.line, item_pos.column, line_no, column}};
      // URLs cannot contain blanks, so "URL  # note" is a URL with a trailing comment.
      auto blank = line.find_first_of(" \t");
      std::string_view url = line.substr(0, blank);
      if (blank != std::string_view::npos) {
        std::string_view tail = trim(line.substr(blank));
        if (!tail.empty() && tail.front() != '#') {
          error(site, "unexpected text after the URL (one URL per line; comments start with '#')");
          continue;
        }
      }
      std::string url_text(url);
      if (std::string problem = config::url_problem(url_text); !problem.empty()) {
        error(site, problem);
        continue;
      }
      Job job;
      job.url = std::move(url_text);
      job.dest = core::filename_from_url(job.url);
      job.origin = fmt::format("{}:{}", shown, line_no);
      config_.jobs.push_back(std::move(job));
      job_sites_.push_back(std::move(site));
    }
  }

  static std::string describe(const Site& s) {
    std::string where = s.file;
    if (s.pos.line > 0) where += fmt::format(":{}:{}", s.pos.line, s.pos.column);
    return fmt::format("{} ({})", s.key, where);
  }

  // Destinations must be unique, must not need another job's file as a folder, and must stay inside
  // output.dir.
  void check_destinations() {
    std::unordered_map<std::string_view, std::size_t> by_dest;
    for (std::size_t i = 0; i < config_.jobs.size(); ++i) {
      auto [it, fresh] = by_dest.emplace(config_.jobs[i].dest, i);
      if (!fresh) {
        error(job_sites_[i], fmt::format("destination {} is also used by {}", show(config_.jobs[i].dest),
                                         describe(job_sites_[it->second])));
      }
    }
    for (std::size_t i = 0; i < config_.jobs.size(); ++i) {
      std::string_view dest = config_.jobs[i].dest;
      for (auto slash = dest.find('/'); slash != std::string_view::npos; slash = dest.find('/', slash + 1)) {
        auto it = by_dest.find(dest.substr(0, slash));
        if (it != by_dest.end()) {
          error(job_sites_[i],
                fmt::format("destination {} needs {} to be a folder, but {} downloads a file there",
                            show(dest), show(dest.substr(0, slash)), describe(job_sites_[it->second])));
          break;
        }
      }
    }
    if (!output_dir_ok_) return;
    core::Confiner confiner(config_.output.dir);  // the output folder resolved once, not once per job
    for (std::size_t i = 0; i < config_.jobs.size(); ++i) {
      std::string why;
      if (!confiner.confine(config_.jobs[i].dest, &why)) error(job_sites_[i], why);
    }
  }

  std::string name_;
  fs::path base_dir_;
  Config config_;
  std::vector<Site> job_sites_;  // parallel to config_.jobs
  bool output_dir_ok_ = true;
  std::vector<std::pair<std::array<int, 4>, ConfigError>> errors_;
};

}  // namespace

Config load_config_text(const std::string& text, const std::string& name, const fs::path& base_dir) {
  Loader loader(name, base_dir);
  Config config = loader.load(text);
  fs::path n(name);
  config.source =
      n.is_absolute() ? n.lexically_normal() : fs::absolute(base_dir).lexically_normal() / n.filename();
  return config;
}

Config load_config(const fs::path& file) {
  std::string why;
  auto text = read_file(file, kMaxConfigBytes, &why);
  if (!text) {
    ConfigError e;
    e.file = file.string();
    e.message = fmt::format("cannot read the config file: {}", why);
    throw ConfigErrors({std::move(e)});
  }
  std::error_code ec;
  fs::path absolute = fs::absolute(file, ec).lexically_normal();
  Config config = load_config_text(*text, file.string(), absolute.parent_path());
  config.source = absolute;
  return config;
}

}  // namespace fetchd::config
