// SPDX-License-Identifier: Apache-2.0
#include "fetchd/transfer/transfer.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
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

bool in_v4(std::uint32_t a, std::uint32_t net, int bits) {
  const std::uint32_t mask = bits == 0 ? 0 : ~std::uint32_t{0} << (32 - bits);
  return (a & mask) == net;
}

bool denied_v4(std::uint32_t a) {  // host byte order
  return in_v4(a, 0x00000000, 8) ||    // "this network"
         in_v4(a, 0x0a000000, 8) ||    // 10/8
         in_v4(a, 0x64400000, 10) ||   // 100.64/10 carrier-grade NAT
         in_v4(a, 0x7f000000, 8) ||    // loopback
         in_v4(a, 0xa9fe0000, 16) ||   // link-local (cloud metadata services live here)
         in_v4(a, 0xac100000, 12) ||   // 172.16/12
         in_v4(a, 0xc0000000, 24) ||   // IETF protocol assignments
         in_v4(a, 0xc0a80000, 16) ||   // 192.168/16
         in_v4(a, 0xc6120000, 15) ||   // 198.18/15 benchmarking
         in_v4(a, 0xe0000000, 4) ||    // multicast
         in_v4(a, 0xf0000000, 4);      // reserved, broadcast
}

// Transfers of this process holding a large receive buffer (atomic: thread-pool workers prepare at once).
std::atomic<int> large_receive_buffers{0};

}  // namespace

bool is_denied_address(const struct sockaddr* address) {
  if (address == nullptr) return true;
  if (address->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(address);
    return denied_v4(ntohl(in->sin_addr.s_addr));
  }
  if (address->sa_family != AF_INET6) return true;
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(address);
  const unsigned char* b = in6->sin6_addr.s6_addr;
  auto v4_at = [&](int i) {
    return (std::uint32_t{b[i]} << 24) | (std::uint32_t{b[i + 1]} << 16) | (std::uint32_t{b[i + 2]} << 8) | b[i + 3];
  };
  static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  static constexpr unsigned char kNat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  if (std::equal(kMapped, kMapped + 12, b) || std::equal(kNat64, kNat64 + 12, b)) return denied_v4(v4_at(12));
  if (std::all_of(b, b + 15, [](unsigned char c) { return c == 0; }) && b[15] <= 1) return true;  // :: and ::1
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return true;  // fe80::/10 link-local
  if ((b[0] & 0xfe) == 0xfc) return true;                  // fc00::/7 unique-local
  if (b[0] == 0xff) return true;                           // multicast
  return false;
}

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

void Transfer::fail(TransferResult& r, ErrorCategory category, bool retryable, std::string_view text) const {
  r.category = category;
  r.retryable = retryable;
  r.message = fmt::format("{}: {}", where(), text);
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

// A destination that carries this job's own publish record, and still holds the bytes it records, is this job's
// result: an earlier run published it and died before the job store recorded that. Only for jobs of a durable
// store (request.publish_record): job ids of `fetchd run` start afresh every run.
std::optional<TransferResult> Transfer::own_result(const struct stat& st) const {
  if (!request_.publish_record || !S_ISREG(st.st_mode)) return std::nullopt;
  auto record = read_publish_record(*fs_, request_.dest);
  if (!record || record->job != request_.id) return std::nullopt;
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (request_.expected_size && *request_.expected_size != size) return std::nullopt;
  if (request_.sha256 && to_lower(*request_.sha256) != record->sha256) return std::nullopt;
  auto hashed = file_sha256_hex(*fs_, request_.dest);
  if (!hashed || *hashed != record->sha256) return std::nullopt;
  TransferResult r;
  r.id = request_.id;
  r.sha256 = record->sha256;
  r.bytes = size;
  spdlog::info("job {}: {} already holds this job's own download (published before a restart); done without "
               "downloading it again",
               request_.id, request_.dest);
  return r;
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
        if (auto own = own_result(st)) return std::move(*own);
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

    auto sink = std::make_unique<Sink>(request_.dest, *fs_, request_.sha512.has_value(), request_.part_tag);
    if (!sink->open(request_.url)) {
      return fail(sink->error_code() != 0 ? ErrorCategory::kFilesystem : ErrorCategory::kInternal,
                  sink->error());
    }
    resume_offset_ = sink->resumed_from();
    if (resume_offset_ > 0 && request_.expected_size && resume_offset_ > *request_.expected_size) {
      if (!sink->restart()) return fail(ErrorCategory::kFilesystem, sink->error());
      resume_offset_ = 0;
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
  if (o.rate > 0) e.set(CURLOPT_MAX_RECV_SPEED_LARGE, static_cast<curl_off_t>(o.rate), "CURLOPT_MAX_RECV_SPEED_LARGE");
  // TLS verification stays on (curl's default, set again so no code path can lose it); a private CA is added
  // by configuration, never by switching verification off.
  e.set(CURLOPT_SSL_VERIFYPEER, 1L, "CURLOPT_SSL_VERIFYPEER");
  e.set(CURLOPT_SSL_VERIFYHOST, 2L, "CURLOPT_SSL_VERIFYHOST");
  if (!o.ca_file.empty()) e.set(CURLOPT_CAINFO, o.ca_file.c_str(), "CURLOPT_CAINFO");
  if (!o.ca_path.empty()) e.set(CURLOPT_CAPATH, o.ca_path.c_str(), "CURLOPT_CAPATH");
  // curl 7.88 creates its sockets without SOCK_CLOEXEC: a worker process spawned meanwhile would inherit
  // them. Our own socket(2) call fixes that, and is where deny_private_addresses sees the resolved address.
  e.set(CURLOPT_OPENSOCKETFUNCTION, &Transfer::on_open_socket, "CURLOPT_OPENSOCKETFUNCTION");
  e.set(CURLOPT_OPENSOCKETDATA, static_cast<void*>(this), "CURLOPT_OPENSOCKETDATA");
  for (const auto& [name, value] : o.headers) headers_.append(header_line(name, value));
  if (resume_offset_ > 0) {
    // CURLOPT_RANGE rather than CURLOPT_RESUME_FROM: with the latter curl 7.88 fails a 200 answer with
    // CURLE_RANGE_ERROR, while we want to take the 200 as the whole file and restart the .part from zero.
    e.set(CURLOPT_RANGE, fmt::format("{}-", resume_offset_).c_str(), "CURLOPT_RANGE");
    headers_.append(header_line("If-Range", sink_->resume_validator()));
  }
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

void Transfer::abort_with(ErrorCategory category, std::string message, bool retryable) {
  if (failure_category_ != ErrorCategory::kNone) return;  // the first reason is the real one
  failure_category_ = category;
  failure_ = std::move(message);
  failure_retryable_ = retryable;
}

bool Transfer::begin_body() {
  const ResponseHeaders& h = *response_;
  const std::uint64_t max_size = request_.options.max_size;
  std::optional<std::uint64_t> total;  // the whole file's size, as far as this response says
  if (h.status == 206) {
    if (resume_offset_ == 0) {
      abort_with(ErrorCategory::kProtocol, "206 Partial Content to a request without Range");
      return false;
    }
    if (!h.content_range || !h.content_range->satisfied || h.content_range->first != resume_offset_ ||
        (sink_->resume_total() && h.content_range->total && *h.content_range->total != *sink_->resume_total())) {
      // Splicing these bytes onto the .part would corrupt the file: start over on the next attempt.
      restart_part_ = true;
      abort_with(ErrorCategory::kProtocol,
                 fmt::format("asked for bytes {}- but the Content-Range does not fit; the .part is dropped "
                             "and the next attempt starts from zero",
                             resume_offset_),
                 true);
      return false;
    }
    // The 206 must come from the version the .part holds. A server that ignores If-Range answers a changed
    // file with 206 too; only its own validator tells (RFC 9110 13.1.5 asks the server, we check anyway).
    // The record holds a strong ETag (quoted) or else a Last-Modified date: compare like with like, and a
    // 206 without that validator cannot prove anything.
    const std::string& recorded = sink_->resume_validator();
    const std::string& sent = recorded.starts_with('"') ? h.etag : h.last_modified;
    if (sent != recorded) {
      restart_part_ = true;
      abort_with(ErrorCategory::kProtocol,
                 fmt::format("the resume from byte {} was answered for another version of the file ({} instead "
                             "of {}: the server ignored If-Range); the .part is dropped and the next attempt "
                             "starts from zero",
                             resume_offset_, sent.empty() ? std::string("no validator") : sent, recorded),
                 true);
      return false;
    }
    total = h.content_range->total;
    if (!total && h.content_length && !h.chunked) total = resume_offset_ + *h.content_length;
  } else {
    if (resume_offset_ > 0) {
      // RFC 9110 13.1.5: a 200 to a Range with If-Range means the file changed (or ranges are unsupported).
      spdlog::info("job {}: {} answered {} to a resume from byte {}: downloading from zero", request_.id, where(),
                   h.status, resume_offset_);
      if (!sink_->restart()) {
        abort_with(sink_->error_code() != 0 ? ErrorCategory::kFilesystem : ErrorCategory::kInternal, sink_->error());
        return false;
      }
      resume_offset_ = 0;
    }
    if (h.content_length && !h.chunked) total = *h.content_length;
  }
  if (total && max_size > 0 && *total > max_size) {
    abort_with(ErrorCategory::kSize,
               fmt::format("declared size of {} bytes exceeds max_size of {}", *total, core::format_size(max_size)));
    return false;
  }
  if (total && request_.expected_size && *total != *request_.expected_size) {
    abort_with(ErrorCategory::kSize, fmt::format("size mismatch: expected {} bytes, the server declares {}",
                                                 *request_.expected_size, *total));
    return false;
  }
  // Remember what a later attempt needs for If-Range: a strong ETag, else Last-Modified (weak ETags never
  // match in If-Range, RFC 9110 13.1.5). Without one, the .part is not resumable.
  std::string validator = h.status == 206 ? sink_->resume_validator() : h.etag;
  if (validator.starts_with("W/")) validator.clear();
  if (validator.empty()) validator = h.last_modified;
  sink_->record_resume(validator, total);
  if (h.status == 206 && !h.content_digest_sha256.empty()) range_md_.emplace(core::DigestKind::kSha256);
  return true;
}

std::size_t Transfer::body(const char* data, std::size_t size) {
  if (cancel_.load(std::memory_order_relaxed)) {
    abort_with(ErrorCategory::kCancelled, "cancelled");
    return CURL_WRITEFUNC_ERROR;
  }
  switch (rate_gate_.admit(*this, size, cancel_)) {  // limits.rate (rate_limiter.hpp)
    case RateGate::Admit::kGo:
      break;
    case RateGate::Admit::kPause:
      return CURL_WRITEFUNC_PAUSE;  // nothing consumed: curl delivers these bytes again on resume
    case RateGate::Admit::kCancelled:
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
  const std::uint64_t max_size = request_.options.max_size;
  if (max_size > 0 && sink_->bytes() + size > max_size) {
    // curl 7.88 checks CURLOPT_MAXFILESIZE only against a declared length: count the bytes ourselves.
    abort_with(ErrorCategory::kSize, fmt::format("body exceeds max_size of {}; stopped after {} bytes",
                                                 core::format_size(max_size), sink_->bytes()));
    return CURL_WRITEFUNC_ERROR;
  }
  if (!sink_->write(data, size)) {
    abort_with(sink_->error_code() != 0 ? ErrorCategory::kFilesystem : ErrorCategory::kInternal,
               sink_->error());
    return CURL_WRITEFUNC_ERROR;
  }
  if (range_md_ && !range_md_->update(data, size)) {
    abort_with(ErrorCategory::kInternal, "sha256: EVP_DigestUpdate failed");
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
    const bool was_complete = t->response_->complete;
    if (!t->response_->on_line(std::string_view(data, n), std::time(nullptr))) {
      t->abort_with(ErrorCategory::kProtocol, t->response_->error);
      return CURL_WRITEFUNC_ERROR;
    }
    if (!was_complete && t->response_->complete && is_success(t->response_->status) && !t->begin_body())
      return CURL_WRITEFUNC_ERROR;
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

curl_socket_t Transfer::on_open_socket(void* self, curlsocktype purpose, struct curl_sockaddr* address) noexcept {
  auto* t = static_cast<Transfer*>(self);
  try {
    if (purpose != CURLSOCKTYPE_IPCXN) return CURL_SOCKET_BAD;
    if (t->request_.options.deny_private_addresses && is_denied_address(&address->addr)) {
      char text[INET6_ADDRSTRLEN] = "?";
      const void* raw = address->family == AF_INET
                            ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(&address->addr)->sin_addr)
                            : static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(&address->addr)->sin6_addr);
      (void)inet_ntop(address->family, raw, text, sizeof text);
      t->denied_ = fmt::format("connection to {} refused: a loopback, private or link-local address "
                               "(deny_private_addresses)",
                               text);
      return CURL_SOCKET_BAD;
    }
    return ::socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
  } catch (...) {
    if (t->failure_category_ == ErrorCategory::kNone) t->failure_category_ = ErrorCategory::kInternal;
    return CURL_SOCKET_BAD;
  }
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
    r.resumed_from = resume_offset_;
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

void Transfer::classify_curl_error(CURLcode rc, TransferResult& r) {
  const std::string_view buffer(error_buffer_.data());
  // curl's own words: the error buffer is more specific than curl_easy_strerror.
  const std::string detail =
      buffer.empty() ? curl::describe(rc) : fmt::format("{}: {}", curl::describe(rc), buffer);
  const core::TransferOptions& o = request_.options;
  if (rc == CURLE_COULDNT_CONNECT && !denied_.empty()) {
    // Our open-socket callback refused the address (deny_private_addresses): a policy, not a network fault.
    fail(r, ErrorCategory::kConnect, false, denied_);
    return;
  }
  switch (rc) {
    case CURLE_WRITE_ERROR:
    case CURLE_ABORTED_BY_CALLBACK:
      if (failure_category_ == ErrorCategory::kHttpStatus) {
        classify_status(r);
        r.message += fmt::format(" (error body over {} abandoned)", core::format_size(kMaxErrorBody));
      } else if (failure_category_ != ErrorCategory::kNone) {
        fail(r, failure_category_, failure_retryable_,
             failure_.empty() ? std::string(core::to_string(failure_category_)) : failure_);
      } else {
        fail(r, ErrorCategory::kInternal, false, detail);
      }
      return;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      fail(r, ErrorCategory::kResolve, true, fmt::format("cannot resolve: {}", detail));
      return;
    case CURLE_COULDNT_CONNECT:
    case CURLE_PROXY:
      fail(r, ErrorCategory::kConnect, true, fmt::format("cannot connect: {}", detail));
      return;
    case CURLE_OPERATION_TIMEDOUT: {
      std::string which;
      if (buffer.starts_with("Operation too slow")) {
        which = fmt::format("below the low-speed limit of {}/s for {}", core::format_size(o.low_speed_limit),
                            core::format_duration(o.low_speed_time));
      } else if (buffer.starts_with("Connection timed out") || buffer.starts_with("Resolving timed out") ||
                 buffer.starts_with("Failed to connect")) {
        which = fmt::format("connect timeout of {} exceeded", core::format_duration(o.connect_timeout));
      } else if (buffer.starts_with("SSL connection timeout")) {
        // curl counts the TLS handshake as part of connecting: connect_timeout is what cut it (unless a
        // shorter total timeout came first).
        const bool total_first = o.timeout.count() > 0 && o.timeout < o.connect_timeout;
        which = total_first ? fmt::format("TLS handshake not completed within the total timeout of {}",
                                          core::format_duration(o.timeout))
                            : fmt::format("TLS handshake not completed within connect_timeout ({})",
                                          core::format_duration(o.connect_timeout));
      } else {
        which = fmt::format("total timeout of {} exceeded", core::format_duration(o.timeout));
      }
      fail(r, ErrorCategory::kTimeout, true, fmt::format("{}: {}", which, detail));
      return;
    }
    case CURLE_OUT_OF_MEMORY:
      // curl 7.88 reports a single response header line over its 100 KB limit as out of memory.
      if (response_->status != 0 && !response_->complete) {
        fail(r, ErrorCategory::kProtocol, false, fmt::format("response header too large: {}", detail));
      } else {
        fail(r, ErrorCategory::kInternal, false, detail);
      }
      return;
    case CURLE_RECV_ERROR:
      if (buffer.starts_with("Too large response headers")) {  // over curl's 300 KB total: not transient
        fail(r, ErrorCategory::kProtocol, false, fmt::format("response headers too large: {}", detail));
        return;
      }
      [[fallthrough]];
    case CURLE_PARTIAL_FILE:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
      fail(r, ErrorCategory::kPartial, true, fmt::format("transfer interrupted: {}", detail));
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
      fail(r, ErrorCategory::kTls, false, fmt::format("TLS: {}", detail));
      return;
    case CURLE_TOO_MANY_REDIRECTS:
      fail(r, ErrorCategory::kRedirect, false,
           fmt::format("more than {} redirects: {}", o.max_redirects, detail));
      return;
    case CURLE_UNSUPPORTED_PROTOCOL:
      if (is_redirect(response_->status)) {
        const std::string& location = response_->location;
        fail(r, ErrorCategory::kRedirect, false,
             fmt::format("refused redirect to {} (only http and https are allowed): {}",
                         location.empty() ? std::string("a forbidden scheme") : curl::redact_url(location),
                         detail));
      } else {
        // Submission rejects other schemes already; this is the URL itself, not a redirect.
        fail(r, ErrorCategory::kProtocol, false,
             fmt::format("scheme not allowed (only http and https): {}", detail));
      }
      return;
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      // A stream reset or GOAWAY (server restarting) mid-transfer: like a dropped connection.
      fail(r, ErrorCategory::kPartial, true, fmt::format("HTTP/2 error: {}", detail));
      return;
    case CURLE_RANGE_ERROR:
    case CURLE_BAD_DOWNLOAD_RESUME:
      // We resume with CURLOPT_RANGE, which never raises these; should a server still provoke them, the .part
      // does not fit: drop it and start from zero.
      restart_part_ = true;
      fail(r, ErrorCategory::kProtocol, true,
           fmt::format("resume refused, restarting from zero: {}", detail));
      return;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_HTTP3:
    case CURLE_FILESIZE_EXCEEDED:
    case CURLE_HTTP_RETURNED_ERROR:
      fail(r, ErrorCategory::kProtocol, false, fmt::format("protocol error: {}", detail));
      return;
    default:
      fail(r, ErrorCategory::kInternal, false, detail);
      return;
  }
}

void Transfer::classify_response(TransferResult& r) {
  const ResponseHeaders& h = *response_;
  if (!sink_) return fail(r, ErrorCategory::kInternal, false, "finish() without a successful prepare()");
  if (h.status == 0) return fail(r, ErrorCategory::kProtocol, false, "no HTTP status line");
  if (h.status == 416 && resume_offset_ > 0) {
    // Range bytes=N- past the end: complete if the server's size is exactly what the .part holds.
    if (h.content_range && !h.content_range->satisfied && h.content_range->total == resume_offset_) {
      return verify_body(r);
    }
    restart_part_ = true;
    return fail(r, ErrorCategory::kProtocol, true,
                fmt::format("416 to a resume from byte {}: the .part does not fit the file; the next attempt "
                            "starts from zero",
                            resume_offset_));
  }
  if (!is_success(h.status)) return classify_status(r);
  if (h.status == 206 && resume_offset_ == 0)
    return fail(r, ErrorCategory::kProtocol, false, "206 Partial Content to a request without Range");
  if (failure_category_ != ErrorCategory::kNone) {
    return fail(r, failure_category_, failure_retryable_,
                failure_.empty() ? std::string(core::to_string(failure_category_)) : failure_);
  }
  const std::uint64_t got = sink_->bytes() - resume_offset_;  // this response's body
  if (h.content_length && !h.chunked && got != *h.content_length) {
    if (got < *h.content_length) {
      return fail(r, ErrorCategory::kPartial, true,
                  fmt::format("body shorter than Content-Length: {} of {} bytes", got, *h.content_length));
    }
    return fail(r, ErrorCategory::kProtocol, false,
                fmt::format("body longer than Content-Length: {} of {} bytes", got, *h.content_length));
  }
  if (h.status == 206 && h.content_range && got != h.content_range->last - h.content_range->first + 1) {
    return fail(r, ErrorCategory::kPartial, true,
                fmt::format("body shorter than its Content-Range: {} of {} bytes", got,
                            h.content_range->last - h.content_range->first + 1));
  }
  verify_body(r);
}

void Transfer::verify_body(TransferResult& r) {
  const ResponseHeaders& h = *response_;
  // A mismatch in a file that was partly resumed may come from splicing: drop the .part and try once more from
  // zero. A mismatch in a file downloaded in one go is final (the server has other bytes than expected).
  const bool resumed = resume_offset_ > 0;
  auto mismatch = [&](ErrorCategory category, std::string text) {
    restart_part_ = true;
    if (resumed) text += " (in a resumed download: retrying from zero)";
    fail(r, category, resumed, text);
  };
  const std::uint64_t got = sink_->bytes();
  if (request_.expected_size && got != *request_.expected_size) {
    return mismatch(ErrorCategory::kSize,
                    fmt::format("size mismatch: expected {} bytes, got {}", *request_.expected_size, got));
  }
  if (request_.sha256 && to_lower(*request_.sha256) != sha256_) {
    return mismatch(ErrorCategory::kChecksum,
                    fmt::format("sha256 mismatch: expected {}, got {}", to_lower(*request_.sha256), sha256_));
  }
  if (request_.sha512) {
    const std::string got512 = sink_->sha512_hex();
    if (to_lower(*request_.sha512) != got512) {
      return mismatch(ErrorCategory::kChecksum,
                      fmt::format("sha512 mismatch: expected {}, got {}", to_lower(*request_.sha512), got512));
    }
  }
  // RFC 9530: what the server says it sent. A mismatch is corruption on the way (or a lying server): retried.
  if (!h.repr_digest_sha256.empty() && h.repr_digest_sha256 != sha256_) {
    restart_part_ = true;
    return fail(r, ErrorCategory::kChecksum, true,
                fmt::format("Repr-Digest sha-256 mismatch: the server says {}, the file has {}",
                            h.repr_digest_sha256, sha256_));
  }
  if (!h.content_digest_sha256.empty()) {
    std::string content = sha256_;
    if (h.status == 206) content = range_md_ ? range_md_->hex() : std::string();
    if (h.status != 416 && h.content_digest_sha256 != content) {
      restart_part_ = true;
      return fail(r, ErrorCategory::kChecksum, true,
                  fmt::format("Content-Digest sha-256 mismatch: the server says {}, the body has {}",
                              h.content_digest_sha256, content));
    }
  }
}

TransferResult Transfer::publish(TransferResult result) {
  if (!sink_) return result;  // prepare() ended early: nothing on disk belongs to this attempt
  try {
    if (!result.ok()) {
      // A transient failure (or a cancel: shutdown) keeps a resumable .part for the next attempt; anything
      // else, or a .part that does not fit the server's file, is removed.
      const bool keep = (result.retryable || result.category == ErrorCategory::kCancelled) && !restart_part_ &&
                        sink_->resumable();
      if (keep) {
        sink_->keep();
      } else {
        sink_->discard();
      }
      return result;
    }
    const bool replace = request_.on_exists == OnExists::kOverwrite;
    if (sink_->commit({.fsync = request_.fsync,
                       .replace = replace,
                       .publish_job = request_.publish_record ? request_.id : 0,
                       .fenced = request_.fenced})) {
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
    if (err == ENOLCK && request_.fenced) {
      result.category = ErrorCategory::kCancelled;
      result.fenced_out = true;
      result.message = fmt::format("{}: {}", where(), error);
      return result;
    }
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
