// SPDX-License-Identifier: Apache-2.0
#pragma once
// One attempt at one job, shared by all four strategies: turns a TransferRequest into a configured curl easy
// handle whose body streams through a Sink into <dest>.part (hashed as it arrives), then classifies the
// outcome and publishes the file atomically. The blocking steps (prepare, publish) are separate so that the
// event loop can run them off-loop; the rest never blocks for long.
// Thread: one thread at a time drives a Transfer; request_cancel() and bytes_received() may be called
// from any thread.

#include <curl/curl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "fetchd/core/digest.hpp"
#include "fetchd/core/transfer_types.hpp"
#include "fetchd/curl/curl.hpp"
#include "fetchd/transfer/rate_limiter.hpp"

namespace fetchd::transfer {

// Whether deny_private_addresses refuses a connection to this address: loopback, RFC 1918 private, CGNAT,
// link-local, unique-local, multicast, unspecified and reserved ranges, also inside IPv4-mapped and NAT64
// IPv6 addresses. Checked on the resolved address in curl's open-socket callback, never on the URL's text.
bool is_denied_address(const struct sockaddr* address);

class FileSystem;  // file_system.hpp: the injectable file interface (tests inject EIO/ENOSPC)
class Sink;
struct ResponseHeaders;

// curl 7.88 gives every easy handle a receive buffer of CURLOPT_BUFFERSIZE bytes (16 KiB by default) at its
// first connect and frees it in curl_easy_cleanup. Once a body larger than the buffer arrived, all of it is
// resident: the largest part of a transfer's memory (docs/benchmarks.md). A smaller buffer costs syscalls per
// byte (a recv, a poll and our write per read: 4 KiB cost 15-30 % more CPU per byte on large files), which
// matters only for a few fast transfers. So at most kLargeReceiveBuffers transfers of a process hold 16 KiB
// at a time and the others 4 KiB: thousands in flight cost 4 KiB each plus a fixed 3 MiB at most (256 covers
// every transfer up to concurrency 256, where a 4 KiB buffer would cost a second recv per small file).
inline constexpr long kLargeReceiveBuffer = 16 * 1024;
inline constexpr long kSmallReceiveBuffer = 4 * 1024;
inline constexpr int kLargeReceiveBuffers = 256;

class Transfer {
 public:
  // fs: nullptr means the real file system (posix_file_system()); tests inject a fake.
  explicit Transfer(core::TransferRequest request, FileSystem* fs = nullptr);
  ~Transfer();
  Transfer(const Transfer&) = delete;
  Transfer& operator=(const Transfer&) = delete;  // callbacks hold `this`: never moves

  const core::TransferRequest& request() const { return request_; }

  // The Transfer that configured this easy handle (CURLOPT_PRIVATE), e.g. for a CURLMsg; nullptr if none.
  static Transfer* from_easy(CURL* easy);

  // Blocking file work before the network: applies on_exists, creates parent directories, opens <dest>.part.
  // Returns the final result when the transfer must not run (skipped, destination exists, file-system error).
  std::optional<core::TransferResult> prepare();

  // The configured easy handle (valid after a successful prepare()).
  CURL* easy() const { return easy_ ? easy_->get() : nullptr; }

  // limits.rate: body bytes take tokens from `limiter` (nullptr: none), shared with the strategy's other
  // transfers. With `pauses` (a curl multi handle drives this transfer) the body callback pauses while the
  // limiter is in debt and tells `pauses`; otherwise (curl_easy_perform) it sleeps (rate_limiter.hpp). Call
  // before prepare().
  void set_rate_limiter(RateLimiter* limiter, RatePauseListener* pauses = nullptr) {
    rate_gate_.attach(limiter, pauses, request_.options.low_speed_limit, request_.options.low_speed_time);
  }
  // Paused by the limiter and not resumed since. The thread driving the transfer.
  bool rate_paused() const { return rate_gate_.paused(); }

  // Any thread: the next write/progress callback aborts the transfer, reported as kCancelled.
  void request_cancel() { cancel_.store(true, std::memory_order_relaxed); }

  // What the headers of the last response said (status, Content-Length, Retry-After, ETag, Last-Modified,
  // ...). Same thread as the one driving the transfer.
  const ResponseHeaders& response_headers() const { return *response_; }

  // curl's receive buffer for this transfer (CURLOPT_BUFFERSIZE), 0 until prepare() chose it:
  // kLargeReceiveBuffer while fewer than kLargeReceiveBuffers transfers of the process hold one, else
  // kSmallReceiveBuffer.
  long receive_buffer() const { return receive_buffer_; }

  // Any thread: body bytes received in this attempt so far.
  std::uint64_t bytes_received() const { return bytes_.load(std::memory_order_relaxed); }

  // After curl is done with the handle: classifies rc + status + headers and verifies size and sha256.
  // Non-blocking. The result is not final until publish() ran.
  core::TransferResult finish(CURLcode rc);

  // Blocking: on success fsyncs (unless request.fsync is false), renames .part over dest and fsyncs the
  // directory; on failure removes the .part. Returns the final result (a publish failure turns it into
  // kFilesystem).
  core::TransferResult publish(core::TransferResult result);

 private:
  static std::size_t on_body(char* data, std::size_t size, std::size_t nmemb, void* self) noexcept;
  static std::size_t on_header(char* data, std::size_t size, std::size_t nmemb, void* self) noexcept;
  static int on_progress(void* self, curl_off_t, curl_off_t, curl_off_t, curl_off_t) noexcept;
  static curl_socket_t on_open_socket(void* self, curlsocktype purpose, struct curl_sockaddr* address) noexcept;
  void configure();
  std::optional<core::TransferResult> own_result(const struct stat& st) const;
  bool begin_body();  // the header block of a 2xx response is complete; false aborts the transfer
  std::size_t body(const char* data, std::size_t size);
  void abort_with(core::ErrorCategory category, std::string message, bool retryable = false);
  void classify_curl_error(CURLcode rc, core::TransferResult& result);
  void classify_response(core::TransferResult& result);
  void classify_status(core::TransferResult& result) const;
  void verify_body(core::TransferResult& result);
  std::string where() const;  // the redacted URL (and where redirects led), for messages
  // Sets result's category, retryable and message ("<where()>: <text>").
  void fail(core::TransferResult& result, core::ErrorCategory category, bool retryable,
            std::string_view text) const;

  core::TransferRequest request_;
  FileSystem* fs_;
  std::atomic<bool> cancel_{false};
  std::atomic<std::uint64_t> bytes_{0};
  RateGate rate_gate_;
  // Response state, reset on every status line (a redirect chain shows several responses).
  std::unique_ptr<ResponseHeaders> response_;
  std::uint64_t dropped_bytes_ = 0;  // body bytes of a non-2xx response: drained, never written
  std::string failure_;              // set by a callback that aborted the transfer, with its category
  core::ErrorCategory failure_category_ = core::ErrorCategory::kNone;
  bool failure_retryable_ = false;
  // Why the open-socket callback refused an address (deny_private_addresses). Not a failure by itself: curl may
  // go on to another address of the name, and only if it connects nowhere is this the reason.
  std::string denied_;
  std::string sha256_;  // of the verified body, set by finish()
  std::uint64_t resume_offset_ = 0;  // bytes of the .part this attempt asked the rest of (Range: bytes=N-)
  bool restart_part_ = false;        // the .part does not fit what the server has: never keep it
  // Content-Digest of a 206 covers only that response's bytes: hashed separately, only when sent.
  std::optional<core::Digest> range_md_;
  std::unique_ptr<Sink> sink_;
  curl::Slist headers_;
  std::array<char, CURL_ERROR_SIZE> error_buffer_{};
  // One of the process's kLargeReceiveBuffers slots while this transfer's easy handle has a large buffer;
  // released after the handle (declared before easy_, so destroyed after it).
  class LargeBufferSlot {
   public:
    LargeBufferSlot() = default;
    ~LargeBufferSlot() { release(); }
    LargeBufferSlot(const LargeBufferSlot&) = delete;
    LargeBufferSlot& operator=(const LargeBufferSlot&) = delete;
    bool try_acquire();  // false when all slots are taken
    void release();

   private:
    bool held_ = false;
  };
  LargeBufferSlot large_buffer_slot_;
  long receive_buffer_ = 0;
  std::optional<curl::Easy> easy_;  // last: curl lets go of everything above before they are destroyed
};

// The whole attempt on the calling thread with curl_easy_perform: prepare, perform, finish, publish. For the
// blocking strategies (thread-pool, process-pool with one transfer per worker).
core::TransferResult perform_blocking(Transfer& transfer);

}  // namespace fetchd::transfer
