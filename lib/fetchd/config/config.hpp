// SPDX-License-Identifier: Apache-2.0
#pragma once
// The validated, normalized configuration: a YAML job list and the daemon's settings. No yaml-cpp type leaves
// this component. Loading either yields a Config or every error found, each naming file, line, column and key.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "fetchd/core/job_options.hpp"
#include "fetchd/core/transfer_types.hpp"

namespace fetchd::config {

enum class StrategyKind { kEventLoop, kCurlMulti, kThreadPool, kProcessPool };
std::string_view to_string(StrategyKind k);
std::optional<StrategyKind> strategy_kind_from_string(std::string_view s);

// How a process-pool worker runs its share of the transfers: an event loop (many per worker), or one blocking
// curl_easy_perform at a time (then every worker runs exactly one transfer: workers == concurrency).
enum class InnerKind { kEventLoop, kBlocking };
std::string_view to_string(InnerKind k);

struct StrategyConfig {
  StrategyKind kind = StrategyKind::kEventLoop;
  int concurrency = 256;  // simultaneous transfers in total, >= 1
  int workers = 0;        // process-pool only; 0 = number of CPUs (at most concurrency)
  int threads = 1;        // event-loop only: loop threads sharing concurrency; 0 = number of CPUs ("auto")
  InnerKind inner = InnerKind::kEventLoop;  // process-pool only
  // process-pool only, NOT read from YAML: the executable started as `<worker_exe> worker ...`. The running
  // binary itself by default (the same inode even if the file was replaced on disk since); tests point it at
  // the fetchd binary because their own executable has no `worker` subcommand.
  std::string worker_exe = "/proc/self/exe";

  bool operator==(const StrategyConfig&) const = default;
};

struct OutputConfig {
  std::filesystem::path dir = "./downloads";  // absolute after loading (relative to the config file's folder)
  core::OnExists on_exists = core::OnExists::kSkip;
  bool fsync = true;

  bool operator==(const OutputConfig&) const = default;
};

struct LogConfig {
  std::string level = "info";  // trace|debug|info|warn|error|off
  std::chrono::milliseconds interval{std::chrono::seconds(5)};

  bool operator==(const LogConfig&) const = default;
};

// The daemon's control socket (fetchd serve). Ignored when systemd passes the sockets (socket activation).
struct ControlConfig {
  std::filesystem::path socket = "/run/fetchd/fetchd.sock";  // absolute after loading
  unsigned mode = 0660;   // permission bits of the socket file
  std::string group;      // group owning the socket file; "" = the daemon's primary group
  std::string tcp;        // "host:port" of an extra loopback-only listener; "" = none
  int max_connections = 1024;

  bool operator==(const ControlConfig&) const = default;
};

enum class Synchronous { kFull, kNormal };
std::string_view to_string(Synchronous s);

// The durable job store (fetchd serve).
struct StateConfig {
  std::filesystem::path dir = "/var/lib/fetchd";  // holds jobs.db; absolute after loading
  Synchronous synchronous = Synchronous::kFull;
  std::chrono::milliseconds history_max_age{std::chrono::hours(24 * 7)};  // finished jobs older are pruned
  std::uint64_t history_max_jobs = 100000;  // at most this many finished jobs are kept
  // The shared queue of a fleet (docs/fleet.md): a PostgreSQL URL (libpq URI or key=value string); "" = the
  // SQLite store in dir. node: this daemon's name in the fleet ("" = the host name); lease: how long a claim
  // lasts without renewal.
  std::string url;
  std::string node;
  std::chrono::milliseconds lease{std::chrono::seconds(30)};

  bool operator==(const StateConfig&) const = default;
};

struct ShutdownConfig {
  std::chrono::milliseconds grace{std::chrono::seconds(30)};  // SIGTERM: in-flight transfers may finish

  bool operator==(const ShutdownConfig&) const = default;
};

// Limits shared by every job (docs/configuration.md, limits).
struct LimitsConfig {
  int per_host = 0;        // simultaneous transfers to one origin (scheme+host+port); 0 = no limit
  std::uint64_t rate = 0;  // bytes/s for all transfers together; 0 = no limit

  bool operator==(const LimitsConfig&) const = default;
};

// Query parameters whose values never appear in logs or socket answers; "*" means every parameter.
struct SecurityConfig {
  std::vector<std::string> redact_query{"*"};

  bool operator==(const SecurityConfig&) const = default;
};

using RetryOverrides = core::RetryOverrides;

struct Job {
  std::string url;
  std::string dest;  // relative to output.dir, normalized ("sub/a.bin"); absolute path = output.dir / dest
  std::optional<std::string> sha256;  // lowercase hex
  std::optional<std::uint64_t> size;
  core::Headers headers;  // the job's own headers (merged over defaults by effective_options)
  // The job's own values of defaults' keys, and sha512 (effective_options merges them).
  core::JobOptions options;
  // Where the job was defined, for messages: "jobs.yaml:12" or "lists/more.txt:3".
  std::string origin;
};

struct Config {
  std::filesystem::path source;  // the config file, absolute
  StrategyConfig strategy;
  OutputConfig output;
  // user_agent defaults to "fetchd/<version>"; ca_file/ca_path come from `tls:`, deny_private_addresses from
  // `security:`.
  core::TransferOptions defaults;
  LimitsConfig limits;
  SecurityConfig security;
  LogConfig log;
  ControlConfig control;
  StateConfig state;
  ShutdownConfig shutdown;
  std::vector<Job> jobs;

  // defaults with the job's own keys merged over (headers: same name, case-insensitive, replaces).
  core::TransferOptions effective_options(const Job& job) const { return effective_options(job.options, job.headers); }
  core::TransferOptions effective_options(const core::JobOptions& options, const core::Headers& headers) const;
  std::filesystem::path dest_path(const Job& job) const { return output.dir / job.dest; }
};

struct ConfigError {
  std::string file;  // path as given
  int line = 0;      // 1-based; 0 when unknown
  int column = 0;    // 1-based; 0 when unknown
  std::string key;   // dotted path: "strategy.concurrency", "jobs[3].url"
  std::string message;
  std::string to_string() const;  // "file:line:col: key: message"
};

// Thrown by load_config with every error found, in file order.
class ConfigErrors : public std::runtime_error {
 public:
  explicit ConfigErrors(std::vector<ConfigError> errors);
  const std::vector<ConfigError>& errors() const { return errors_; }

 private:
  std::vector<ConfigError> errors_;
};

inline constexpr std::uintmax_t kMaxConfigBytes = 1 << 20;  // bigger files are refused before parsing
inline constexpr std::uintmax_t kMaxUrlsFileBytes = 64 << 20;  // a urls_file may list many URLs
inline constexpr int kMaxConfigDepth = 64;  // deeper YAML is refused before it is walked

// Loads and validates a config file. Throws ConfigErrors (never a yaml-cpp exception). Any thread; it reads the
// file system (the file, urls_files, and the output directory's existing parts for the symlink check).
Config load_config(const std::filesystem::path& file);
// Same from text; `name` is used in messages and relative paths resolve against `base_dir`. `source` becomes
// base_dir / the file name of `name` (or `name` when it is absolute).
Config load_config_text(const std::string& text, const std::string& name, const std::filesystem::path& base_dir);

// The normalized config as YAML (every key, defaults filled in, durations/sizes human, output.dir absolute,
// urls_files expanded into jobs with an explicit dest); loading it again yields an equal Config (apart from
// `source` and `Job::origin`). Header values and URL userinfo are printed as "<redacted>" unless show_secrets.
std::string dump_config(const Config& config, bool show_secrets = false);

}  // namespace fetchd::config
