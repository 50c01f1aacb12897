// SPDX-License-Identifier: Apache-2.0
#include "fetchd/transfer/transfer.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <ctime>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <utility>

#include "fetchd/core/units.hpp"
#include "fetchd/transfer/file_system.hpp"
#include "fetchd/transfer/response_headers.hpp"
#include "fetchd/transfer/sink.hpp"

namespace fetchd::transfer {

using core::ErrorCategory;
using core::OnExists;
using core::TransferResult;

namespace {

// The body of an error response is drained (so the connection can be reused) but never stored; one larger
// than this is not worth the bandwidth and ends the transfer with the same HTTP status result.
constexpr std::uint64_t kMaxErrorBody = std::uint64_t{1} << 20;

bool is_success(long status) {
  return status >= 200 && status < 300;
}
bool is_redirect(long status) {
  return status >= 300 && status < 400;
}

// RFC 9110 15.5.9/15.6: server-side or transient conditions. 425 Too Early: RFC 8470 says retry.
bool is_retryable_status(long status) {
  switch (status) {
    case 408:
    case 425:
    case 429:
    case 500:
    case 502:
    case 503:
    case 504:
      return true;
    default:
      return false;
  }
}

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// A header line for curl's HTTPHEADER list. The values may be secrets: the error names the header only.
std::string header_line(const std::string& name, const std::string& value) {
  auto bad = [](char c) { return c == '\r' || c == '\n' || c == '\0'; };
  if (name.empty() || name.find(':') != std::string::npos || std::any_of(name.begin(), name.end(), bad) ||
      std::any_of(value.begin(), value.end(), bad)) {
    throw std::invalid_argument(fmt::format("invalid request header '{}'", name));
  }
  // "Name:" would make curl remove the header; "Name;" is curl's way to send it with an empty value.
  return value.empty() ? name + ";" : fmt::format("{}: {}", name, value);
}

// Transfers of this process holding a large receive buffer (atomic: thread-pool workers prepare at once).
std::atomic<int> large_receive_buffers{0};

}  // namespace

bool Transfer::LargeBufferSlot::try_acquire() {
  if (held_) return true;
  int n = large_receive_buffers.load(std::memory_order_relaxed);
  while (n < kLargeReceiveBuffers) {
    if (large_receive_buffers.compare_exchange_weak(n, n + 1, std::memory_order_relaxed)) return held_ = true;
  }
  return false;
}

void Transfer::LargeBufferSlot::release() {
  if (!held_) return;
  held_ = false;
  large_receive_buffers.fetch_sub(1, std::memory_order_relaxed);
}

Transfer::Transfer(core::TransferRequest request, FileSystem* fs)
    : request_(std::move(request)),
      fs_(fs != nullptr ? fs : &posix_file_system()),
      response_(std::make_unique<ResponseHeaders>()) {}

Transfer::~Transfer() = default;

Transfer* Transfer::from_easy(CURL* easy) {
  char* p = nullptr;
  if (easy == nullptr || curl_easy_getinfo(easy, CURLINFO_PRIVATE, &p) != CURLE_OK) return nullptr;
  return reinterpret_cast<Transfer*>(p);
}

std::string Transfer::where() const {
  std::string url = curl::redact_url(request_.url);
  if (easy_ && easy_->info_long(CURLINFO_REDIRECT_COUNT) > 0) {
    if (auto effective = easy_->info_string(CURLINFO_EFFECTIVE_URL)) {
      return fmt::format("{} (redirected to {})", url, curl::redact_url(*effective));
    }
  }
  return url;
}

std::optional<TransferResult> Transfer::prepare() {
  TransferResult r;
  r.id = request_.id;
  auto fail = [&](ErrorCategory category, std::string text) {
    r.category = category;
    r.message = fmt::format("{}: {}", curl::redact_url(request_.url), text);
    return r;
  };
  try {
    if (sink_ || easy_) return fail(ErrorCategory::kInternal, "prepare() called twice");
    if (cancel_.load(std::memory_order_relaxed))
      return fail(ErrorCategory::kCancelled, "cancelled before start");

    if (request_.on_exists != OnExists::kOverwrite) {
      struct stat st {};
      int rc = fs_->stat_at(AT_FDCWD, request_.dest.c_str(), &st, AT_SYMLINK_NOFOLLOW);
      if (rc == 0) {
        if (request_.on_exists == OnExists::kSkip) {
          r.skipped = true;
          return r;
        }
        return fail(ErrorCategory::kDestExists,
                    fmt::format("destination {} exists (on_exists=fail)", request_.dest));
      }
      // ENOTDIR: a parent is not a directory; opening the .part reports that properly.
      if (rc != -ENOENT && rc != -ENOTDIR) {
        return fail(ErrorCategory::kFilesystem,
                    fmt::format("stat {}: {}", request_.dest, std::generic_category().message(-rc)));
      }
    }

    auto sink = std::make_unique<Sink>(request_.dest, *fs_);
    if (!sink->open()) {
      return fail(sink->error_code() != 0 ? ErrorCategory::kFilesystem : ErrorCategory::kInternal,
                  sink->error());
    }
    sink_ = std::move(sink);
    easy_.emplace();
    configure();
  } catch (const std::exception& e) {
    if (sink_) sink_->discard();
    easy_.reset();
    large_buffer_slot_.release();
    return fail(ErrorCategory::kInternal, fmt::format("setting up the transfer: {}", e.what()));
  }
  return std::nullopt;
}

void Transfer::configure() {
  curl::Easy& e = *easy_;
  const core::TransferOptions& o = request_.options;
  e.set(CURLOPT_URL, request_.url.c_str(), "CURLOPT_URL");
  e.set(CURLOPT_PROTOCOLS_STR, "http,https", "CURLOPT_PROTOCOLS_STR");
  e.set(CURLOPT_REDIR_PROTOCOLS_STR, "http,https", "CURLOPT_REDIR_PROTOCOLS_STR");
  e.set(CURLOPT_FOLLOWLOCATION, 1L, "CURLOPT_FOLLOWLOCATION");
  e.set(CURLOPT_MAXREDIRS, static_cast<long>(o.max_redirects), "CURLOPT_MAXREDIRS");
  e.set(CURLOPT_NOSIGNAL, 1L, "CURLOPT_NOSIGNAL");
  e.set(CURLOPT_TIMEOUT_MS, static_cast<long>(o.timeout.count()), "CURLOPT_TIMEOUT_MS");
  e.set(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(o.connect_timeout.count()), "CURLOPT_CONNECTTIMEOUT_MS");
  if (o.low_speed_limit > 0) {
    // LOW_SPEED_TIME is in whole seconds; round up so that a short configured time never disables the check.
    long seconds = std::max<long>(1, static_cast<long>((o.low_speed_time.count() + 999) / 1000));
    e.set(CURLOPT_LOW_SPEED_LIMIT, static_cast<long>(o.low_speed_limit), "CURLOPT_LOW_SPEED_LIMIT");
    e.set(CURLOPT_LOW_SPEED_TIME, seconds, "CURLOPT_LOW_SPEED_TIME");
  }
  if (!o.user_agent.empty()) e.set(CURLOPT_USERAGENT, o.user_agent.c_str(), "CURLOPT_USERAGENT");
  for (const auto& [name, value] : o.headers) headers_.append(header_line(name, value));
  if (headers_.get() != nullptr) e.set(CURLOPT_HTTPHEADER, headers_.get(), "CURLOPT_HTTPHEADER");
  // No Accept-Encoding and no decoding: the file is the bytes as sent, and those are what we hash and count.
  e.set(CURLOPT_HTTP_CONTENT_DECODING, 0L, "CURLOPT_HTTP_CONTENT_DECODING");
  e.set(CURLOPT_TCP_KEEPALIVE, 1L, "CURLOPT_TCP_KEEPALIVE");
  e.set(CURLOPT_WRITEFUNCTION, &Transfer::on_body, "CURLOPT_WRITEFUNCTION");
  e.set(CURLOPT_WRITEDATA, static_cast<void*>(this), "CURLOPT_WRITEDATA");
  e.set(CURLOPT_HEADERFUNCTION, &Transfer::on_header, "CURLOPT_HEADERFUNCTION");
  e.set(CURLOPT_HEADERDATA, static_cast<void*>(this), "CURLOPT_HEADERDATA");
  e.set(CURLOPT_XFERINFOFUNCTION, &Transfer::on_progress, "CURLOPT_XFERINFOFUNCTION");
  e.set(CURLOPT_XFERINFODATA, static_cast<void*>(this), "CURLOPT_XFERINFODATA");
  e.set(CURLOPT_NOPROGRESS, 0L, "CURLOPT_NOPROGRESS");
  e.set(CURLOPT_ERRORBUFFER, error_buffer_.data(), "CURLOPT_ERRORBUFFER");
  e.set(CURLOPT_PRIVATE, static_cast<void*>(this), "CURLOPT_PRIVATE");
  receive_buffer_ = large_buffer_slot_.try_acquire() ? kLargeReceiveBuffer : kSmallReceiveBuffer;
  e.set(CURLOPT_BUFFERSIZE, receive_buffer_, "CURLOPT_BUFFERSIZE");
}

void Transfer::abort_with(ErrorCategory category, std::string message) {
  if (failure_category_ != ErrorCategory::kNone) return;  // the first reason is the real one
  failure_category_ = category;
  failure_ = std::move(message);
}

std::size_t Transfer::body(const char* data, std::size_t size) {
  if (cancel_.load(std::memory_order_relaxed)) {
    abort_with(ErrorCategory::kCancelled, "cancelled");
    return CURL_WRITEFUNC_ERROR;
  }
  const long status = response_->status;
  if (!is_success(status)) {
    // An error page is never the file. Drain it (keeps the connection reusable) unless it is large.
    dropped_bytes_ += size;
    if (dropped_bytes_ > kMaxErrorBody) {
      abort_with(ErrorCategory::kHttpStatus, {});
      return CURL_WRITEFUNC_ERROR;
    }
    return size;
  }
  if (status == 206) {
    // We never sent Range (resume is not implemented yet): a partial body must not become the whole file.
    abort_with(ErrorCategory::kProtocol, "206 Partial Content to a request without Range");
    return CURL_WRITEFUNC_ERROR;
  }
  if (!sink_->write(data, size)) {
    abort_with(sink_->error_code() != 0 ? ErrorCategory::kFilesystem : ErrorCategory::kInternal,
               sink_->error());
    return CURL_WRITEFUNC_ERROR;
  }
  bytes_.fetch_add(size, std::memory_order_relaxed);
  return size;
}

std::size_t Transfer::on_body(char* data, std::size_t size, std::size_t nmemb, void* self) noexcept {
  auto* t = static_cast<Transfer*>(self);
  try {
    return t->body(data, size * nmemb);
  } catch (...) {
    if (t->failure_category_ == ErrorCategory::kNone) t->failure_category_ = ErrorCategory::kInternal;
    return CURL_WRITEFUNC_ERROR;
  }
}

std::size_t Transfer::on_header(char* data, std::size_t size, std::size_t nmemb, void* self) noexcept {
  auto* t = static_cast<Transfer*>(self);
  const std::size_t n = size * nmemb;
  try {
    if (t->cancel_.load(std::memory_order_relaxed)) {
      t->abort_with(ErrorCategory::kCancelled, "cancelled");
      return CURL_WRITEFUNC_ERROR;
    }
    if (!t->response_->on_line(std::string_view(data, n), std::time(nullptr))) {
      t->abort_with(ErrorCategory::kProtocol, t->response_->error);
      return CURL_WRITEFUNC_ERROR;
    }
    return n;
  } catch (...) {
    if (t->failure_category_ == ErrorCategory::kNone) t->failure_category_ = ErrorCategory::kInternal;
    return CURL_WRITEFUNC_ERROR;
  }
}

int Transfer::on_progress(void* self, curl_off_t, curl_off_t, curl_off_t, curl_off_t) noexcept {
  auto* t = static_cast<Transfer*>(self);
  if (!t->cancel_.load(std::memory_order_relaxed)) return 0;
  try {
    t->abort_with(ErrorCategory::kCancelled, "cancelled");
  } catch (...) {
    if (t->failure_category_ == ErrorCategory::kNone) t->failure_category_ = ErrorCategory::kCancelled;
  }
  return 1;  // any non-zero value: CURLE_ABORTED_BY_CALLBACK
}

TransferResult Transfer::finish(CURLcode rc) {
  TransferResult r;
  r.id = request_.id;
  r.curl_code = static_cast<int>(rc);
  r.bytes = bytes_.load(std::memory_order_relaxed);
  try {
    r.http_status = response_->status;
    if (r.http_status == 0 && easy_) r.http_status = easy_->response_code();
    if (sink_) sha256_ = sink_->sha256_hex();
    if (rc != CURLE_OK) {
      classify_curl_error(rc, r);
    } else {
      classify_response(r);
    }
  } catch (const std::exception& e) {
    r.category = ErrorCategory::kInternal;
    r.retryable = false;
    r.message = e.what();
  }
  return r;
}

void Transfer::classify_status(TransferResult& r) const {
  const ResponseHeaders& h = *response_;
  r.category = ErrorCategory::kHttpStatus;
  r.retryable = is_retryable_status(h.status);
  r.retry_after = h.retry_after;
  r.message = fmt::format("{}: HTTP {}{}{}", where(), h.status, h.reason.empty() ? "" : " ", h.reason);
}

void Transfer::classify_curl_error(CURLcode rc, TransferResult& r) const {
  const std::string_view buffer(error_buffer_.data());
  // curl's own words: the error buffer is more specific than curl_easy_strerror.
  const std::string detail =
      buffer.empty() ? curl::describe(rc) : fmt::format("{}: {}", curl::describe(rc), buffer);
  auto set = [&](ErrorCategory category, bool retryable, std::string_view text) {
    r.category = category;
    r.retryable = retryable;
    r.message = fmt::format("{}: {}", where(), text);
  };
  const core::TransferOptions& o = request_.options;
  switch (rc) {
    case CURLE_WRITE_ERROR:
    case CURLE_ABORTED_BY_CALLBACK:
      if (failure_category_ == ErrorCategory::kHttpStatus) {
        classify_status(r);
        r.message += fmt::format(" (error body over {} abandoned)", core::format_size(kMaxErrorBody));
      } else if (failure_category_ != ErrorCategory::kNone) {
        set(failure_category_, false,
            failure_.empty() ? std::string(core::to_string(failure_category_)) : failure_);
      } else {
        set(ErrorCategory::kInternal, false, detail);
      }
      return;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      set(ErrorCategory::kResolve, true, fmt::format("cannot resolve: {}", detail));
      return;
    case CURLE_COULDNT_CONNECT:
    case CURLE_PROXY:
      set(ErrorCategory::kConnect, true, fmt::format("cannot connect: {}", detail));
      return;
    case CURLE_OPERATION_TIMEDOUT: {
      std::string which;
      if (buffer.starts_with("Operation too slow")) {
        which = fmt::format("below the low-speed limit of {}/s for {}", core::format_size(o.low_speed_limit),
                            core::format_duration(o.low_speed_time));
      } else if (buffer.starts_with("Connection timed out") || buffer.starts_with("Resolving timed out") ||
                 buffer.starts_with("Failed to connect")) {
        which = fmt::format("connect timeout of {} exceeded", core::format_duration(o.connect_timeout));
      } else {
        which = fmt::format("total timeout of {} exceeded", core::format_duration(o.timeout));
      }
      set(ErrorCategory::kTimeout, true, fmt::format("{}: {}", which, detail));
      return;
    }
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
      set(ErrorCategory::kPartial, true, fmt::format("transfer interrupted: {}", detail));
      return;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_USE_SSL_FAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
      set(ErrorCategory::kTls, false, fmt::format("TLS: {}", detail));
      return;
    case CURLE_TOO_MANY_REDIRECTS:
      set(ErrorCategory::kRedirect, false,
          fmt::format("more than {} redirects: {}", o.max_redirects, detail));
      return;
    case CURLE_UNSUPPORTED_PROTOCOL:
      if (is_redirect(response_->status)) {
        const std::string& location = response_->location;
        set(ErrorCategory::kRedirect, false,
            fmt::format("refused redirect to {} (only http and https are allowed): {}",
                        location.empty() ? std::string("a forbidden scheme") : curl::redact_url(location),
                        detail));
      } else {
        // Submission rejects other schemes already; this is the URL itself, not a redirect.
        set(ErrorCategory::kProtocol, false,
            fmt::format("scheme not allowed (only http and https): {}", detail));
      }
      return;
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      // A stream reset or GOAWAY (server restarting) mid-transfer: like a dropped connection.
      set(ErrorCategory::kProtocol, true, fmt::format("HTTP/2 error: {}", detail));
      return;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_HTTP3:
    case CURLE_FILESIZE_EXCEEDED:
    case CURLE_RANGE_ERROR:
    case CURLE_BAD_DOWNLOAD_RESUME:
    case CURLE_HTTP_RETURNED_ERROR:
      set(ErrorCategory::kProtocol, false, fmt::format("protocol error: {}", detail));
      return;
    default:
      set(ErrorCategory::kInternal, false, detail);
      return;
  }
}

void Transfer::classify_response(TransferResult& r) const {
  const ResponseHeaders& h = *response_;
  auto set = [&](ErrorCategory category, bool retryable, std::string_view text) {
    r.category = category;
    r.retryable = retryable;
    r.message = fmt::format("{}: {}", where(), text);
  };
  if (!sink_) return set(ErrorCategory::kInternal, false, "finish() without a successful prepare()");
  if (h.status == 0) return set(ErrorCategory::kProtocol, false, "no HTTP status line");
  if (!is_success(h.status)) return classify_status(r);
  if (h.status == 206)
    return set(ErrorCategory::kProtocol, false, "206 Partial Content to a request without Range");
  if (failure_category_ != ErrorCategory::kNone) {
    return set(failure_category_, false,
               failure_.empty() ? std::string(core::to_string(failure_category_)) : failure_);
  }
  const std::uint64_t got = sink_->bytes();
  if (h.content_length && !h.chunked && got != *h.content_length) {
    if (got < *h.content_length) {
      return set(ErrorCategory::kPartial, true,
                 fmt::format("body shorter than Content-Length: {} of {} bytes", got, *h.content_length));
    }
    return set(ErrorCategory::kProtocol, false,
               fmt::format("body longer than Content-Length: {} of {} bytes", got, *h.content_length));
  }
  if (request_.expected_size && got != *request_.expected_size) {
    return set(ErrorCategory::kSize, false,
               fmt::format("size mismatch: expected {} bytes, got {}", *request_.expected_size, got));
  }
  if (request_.sha256 && to_lower(*request_.sha256) != sha256_) {
    return set(ErrorCategory::kChecksum, false,
               fmt::format("sha256 mismatch: expected {}, got {}", to_lower(*request_.sha256), sha256_));
  }
}

TransferResult Transfer::publish(TransferResult result) {
  if (!sink_) return result;  // prepare() ended early: nothing on disk belongs to this attempt
  try {
    if (!result.ok()) {
      // Resume (a later issue) will keep the .part of a retryable partial body here instead.
      sink_->discard();
      return result;
    }
    const bool replace = request_.on_exists == OnExists::kOverwrite;
    if (sink_->commit({.fsync = request_.fsync, .replace = replace})) {
      result.sha256 = sha256_;
      result.bytes = sink_->bytes();
      spdlog::debug("job {}: published {} ({} bytes)", request_.id, request_.dest, result.bytes);
      return result;
    }
    const int err = sink_->error_code();
    const std::string error = sink_->error();
    sink_->discard();
    result.retryable = false;
    result.sha256.clear();
    if (err == EEXIST && !replace) {
      // Someone created the destination while we downloaded; RENAME_NOREPLACE kept it intact.
      if (request_.on_exists == OnExists::kSkip) {
        result.skipped = true;
        result.message = fmt::format("{}: destination {} appeared meanwhile and was kept (on_exists=skip)",
                                     where(), request_.dest);
      } else {
        result.category = ErrorCategory::kDestExists;
        result.message =
            fmt::format("{}: destination {} appeared meanwhile (on_exists=fail)", where(), request_.dest);
      }
      return result;
    }
    result.category = err != 0 ? ErrorCategory::kFilesystem : ErrorCategory::kInternal;
    result.message = fmt::format("{}: {}", where(), error);
  } catch (const std::exception& e) {
    if (!sink_->committed()) sink_->discard();
    result.category = ErrorCategory::kInternal;
    result.retryable = false;
    result.sha256.clear();
    result.message = e.what();
  }
  return result;
}

TransferResult perform_blocking(Transfer& transfer) {
  if (auto early = transfer.prepare()) return transfer.publish(std::move(*early));
  const CURLcode rc = curl_easy_perform(transfer.easy());
  return transfer.publish(transfer.finish(rc));
}

}  // namespace fetchd::transfer
