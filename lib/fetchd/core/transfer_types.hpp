// SPDX-License-Identifier: Apache-2.0
#pragma once
// The value types that flow between the scheduler and the strategies: what to fetch (TransferRequest) and what
// happened (TransferResult). Plain data, copyable, no C library types, so they cross threads and processes.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fetchd::core {

using JobId = std::uint64_t;

enum class OnExists { kSkip, kOverwrite, kFail };

std::string_view to_string(OnExists v);

using Headers = std::vector<std::pair<std::string, std::string>>;

// Which failures are tried again (docs/configuration.md, retry_on). A failure the transfer itself calls
// permanent (a 4xx not listed, a checksum mismatch of a complete body, a refused redirect) never is.
struct RetryOn {
  bool connect = true;  // name resolution and connection failures
  bool timeout = true;  // connect, low-speed and total timeouts
  bool partial = true;  // bodies cut short: closed or reset connections, HTTP/2 stream errors
  bool tls = false;     // TLS handshake and verification failures
  std::vector<int> statuses{408, 425, 429, 500, 502, 503, 504};  // sorted

  bool operator==(const RetryOn&) const = default;
};

enum class Jitter { kFull, kNone };

struct RetryPolicy {
  int retries = 3;  // attempts after the first
  std::chrono::milliseconds initial{std::chrono::seconds(1)};
  std::chrono::milliseconds max{std::chrono::minutes(5)};
  double multiplier = 2.0;
  Jitter jitter = Jitter::kFull;
  std::chrono::milliseconds retry_after_max{std::chrono::hours(1)};
  RetryOn retry_on;

  bool operator==(const RetryPolicy&) const = default;
};

// Per-transfer knobs; the config's `defaults:` merged with the job's own keys.
struct TransferOptions {
  // One attempt's limit, start to last byte; 0 = none. A day, not minutes: a large file on a slow or rate-limited
  // link takes hours, and stalls are the low-speed limit's business. This only stops a body that trickles just
  // above low_speed_limit forever.
  std::chrono::milliseconds timeout{std::chrono::hours(24)};
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(10)};
  std::uint64_t low_speed_limit = 1024;  // bytes/s; 0 disables the low-speed abort
  std::chrono::milliseconds low_speed_time{std::chrono::seconds(30)};
  int max_redirects = 10;
  std::string user_agent;
  Headers headers;  // values may be secrets: never log them
  std::uint64_t max_size = 0;  // body bytes; 0 = unlimited
  std::uint64_t rate = 0;      // this transfer's receive limit in bytes/s; 0 = none
  std::string ca_file;         // CA bundle replacing the system one; "" = system default
  std::string ca_path;         // directory of hashed CA certificates; "" = system default
  bool deny_private_addresses = false;  // refuse to connect to loopback/private/link-local addresses
  RetryPolicy retry;  // the scheduler's business; not sent to worker processes
};

struct TransferRequest {
  JobId id = 0;
  std::string url;
  std::string dest;  // absolute, already confined to the output directory
  std::optional<std::string> sha256;  // lowercase hex
  std::optional<std::string> sha512;  // lowercase hex
  std::optional<std::uint64_t> expected_size;
  OnExists on_exists = OnExists::kSkip;
  bool fsync = true;
  // The job lives in a durable store (fetchd serve): the published file carries a publish record (job id and
  // SHA-256), so that after a crash between the rename and the store's commit a restart recognises the file
  // as this job's own result instead of applying on_exists to it.
  bool publish_record = false;
  // Fleet nodes: the .part is "<dest>.<part_tag>.part", so that two nodes never write one .part in a shared
  // folder; and the rename waits for nothing but is refused once the node's publish fence passed
  // (transfer/publish_fence.hpp).
  std::string part_tag;
  bool fenced = false;
  int attempt = 1;  // 1-based
  int priority = 0;  // higher starts first (the scheduler's order; not sent to worker processes)
  TransferOptions options;
};

// Why a transfer did not succeed. kNone means success.
enum class ErrorCategory {
  kNone,
  kResolve,
  kConnect,
  kTls,
  kTimeout,
  kPartial,        // body shorter than declared, connection dropped mid-body
  kHttpStatus,     // non-2xx final status
  kProtocol,       // malformed response, bad chunking, too large headers, ...
  kRedirect,       // too many redirects, redirect to a forbidden scheme
  kSize,           // size differs from expectation or exceeds the cap
  kChecksum,       // sha256 mismatch of a complete body
  kFilesystem,     // open/write/fsync/rename failed
  kDestExists,     // on_exists=fail and the destination exists
  kCancelled,
  kInternal,
};

std::string_view to_string(ErrorCategory c);

struct TransferResult {
  JobId id = 0;
  ErrorCategory category = ErrorCategory::kNone;
  int curl_code = 0;      // CURLcode, 0 when not a curl error
  long http_status = 0;   // last final status seen, 0 when none
  std::string message;    // human-readable reason; never contains secrets
  std::uint64_t bytes = 0;    // body bytes received in this attempt
  bool skipped = false;       // success without download (on_exists=skip and dest exists)
  bool retryable = false;     // transient: the scheduler may try again if its retry_on allows
  std::optional<std::chrono::seconds> retry_after;  // from a Retry-After header
  std::string sha256;         // of the published file, lowercase hex, when known
  std::uint64_t resumed_from = 0;  // bytes kept from an earlier attempt's .part (Range request)
  // Complete, but not published: the publish fence had passed (the node's lease may have ended). Reported as
  // cancelled; the daemon records nothing of it, so the job runs again (here or on another node).
  bool fenced_out = false;

  bool ok() const { return category == ErrorCategory::kNone; }
};

}  // namespace fetchd::core
