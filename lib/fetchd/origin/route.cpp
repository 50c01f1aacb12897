// SPDX-License-Identifier: Apache-2.0
#include "fetchd/origin/route.hpp"

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <iterator>
#include <optional>
#include <string>
#include <utility>

#include "fetchd/core/units.hpp"
#include "fetchd/origin/body.hpp"
#include "fetchd/origin/http.hpp"

namespace fetchd::origin {

namespace {

struct RouteContext {
  const Request& request;
  std::string_view rest;  // the path after the route's prefix
  std::string_view query;
  Response& out;
};

using Handler = void (*)(const RouteContext&);

struct Route {
  std::string_view prefix;
  Handler handler;
};

std::optional<std::uint64_t> parse_u64(std::string_view s) {
  std::uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

// "4096/f1.bin" -> "4096": later segments only give clients distinct file names.
std::string_view first_segment(std::string_view rest) {
  return rest.substr(0, rest.find('/'));
}

// "not found\n" for 404: a short body that says what happened.
std::string status_text(int status) {
  std::string text(reason_phrase(status));
  if (text.empty()) return fmt::format("status {}\n", status);
  for (auto& c : text) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  text.push_back('\n');
  return text;
}

// A header value from a query parameter: CR or LF would end the line and forge other headers, so they are
// refused; anything else (NUL, non-ASCII, quotes) is passed on, since clients must survive it.
bool header_safe(std::string_view value) {
  return value.find_first_of("\r\n") == std::string_view::npos;
}

enum class RangeMode { kHonour, kIgnore, kWrong };

// /bytes/<n>[/<name>...]?seed=<s>: n deterministic bytes, with validators and single-range support.
// Fault parameters (docs/origin.md): range=ignore|wrong, if_range=ignore, etag=, last_modified=, digest=.
void serve_bytes(const RouteContext& ctx) {
  auto size = core::parse_size(first_segment(ctx.rest));
  if (!size) return ctx.out.set_text(400, "bad size\n");
  std::uint64_t seed = 0;
  if (auto text = query_param(ctx.query, "seed")) {
    auto parsed = parse_u64(*text);
    if (!parsed) return ctx.out.set_text(400, "bad seed\n");
    seed = *parsed;
  }
  RangeMode range_mode = RangeMode::kHonour;
  if (auto mode = query_param(ctx.query, "range")) {
    if (*mode == "ignore") {
      range_mode = RangeMode::kIgnore;
    } else if (*mode == "wrong") {
      range_mode = RangeMode::kWrong;
    } else if (*mode != "honour") {
      return ctx.out.set_text(400, "bad range mode\n");
    }
  }
  bool honour_if_range = true;
  if (auto mode = query_param(ctx.query, "if_range")) {
    if (*mode == "ignore") {
      honour_if_range = false;
    } else if (*mode != "honour") {
      return ctx.out.set_text(400, "bad if_range mode\n");
    }
  }
  // Validators: derived from (n, seed) unless overridden, so a test can present "the same URL, changed".
  std::optional<std::string> etag = body_etag(*size, seed);
  if (auto value = query_param(ctx.query, "etag")) {
    if (!header_safe(*value)) return ctx.out.set_text(400, "bad etag\n");
    etag = *value == "none" ? std::nullopt : std::optional(*value);
  }
  std::optional<std::string> last_modified = std::string(kBodyLastModified);
  if (auto value = query_param(ctx.query, "last_modified")) {
    if (!header_safe(*value)) return ctx.out.set_text(400, "bad last_modified\n");
    last_modified = *value == "none" ? std::nullopt : std::optional(*value);
  }
  bool content_digest = false;
  bool repr_digest = false;
  bool wrong_digest = false;
  if (auto which = query_param(ctx.query, "digest")) {
    content_digest = *which == "content" || *which == "both" || *which == "wrong";
    repr_digest = *which == "repr" || *which == "both" || *which == "wrong";
    wrong_digest = *which == "wrong";
    if (!content_digest && !repr_digest) return ctx.out.set_text(400, "bad digest\n");
  }

  Response& out = ctx.out;
  out.add_header("Accept-Ranges", "bytes");  // also with range=ignore: a server that claims it and does not
  if (etag) out.add_header("ETag", *etag);
  if (last_modified) out.add_header("Last-Modified", *last_modified);

  RangeDecision range;
  const std::string* value = ctx.request.header("range");
  if (value && range_mode != RangeMode::kIgnore) {
    // RFC 9110 §13.1.5: a Range under an If-Range that does not match (strongly) gets the whole body.
    const std::string* if_range = ctx.request.header("if-range");
    if (!if_range || !honour_if_range || (etag && *if_range == *etag) ||
        (last_modified && *if_range == *last_modified))
      range = evaluate_range(*value, *size);
  }
  if (range.kind == RangeDecision::Kind::kPartial && range_mode == RangeMode::kWrong) {
    // A 206 that starts one byte away from what was asked (and ends where asked), with a Content-Range true
    // to the bytes sent: a client must check where the answer starts, not only its status. A 1-byte body has
    // nowhere to go: 200.
    const std::uint64_t first = range.first > 0 ? range.first - 1 : range.first + 1;
    if (first >= *size) {
      range.kind = RangeDecision::Kind::kFull;
    } else {
      range.last = std::max(range.last, first);
      range.first = first;
    }
  }
  switch (range.kind) {
    case RangeDecision::Kind::kUnsatisfiable:
      out.add_header("Content-Range", fmt::format("bytes */{}", *size));
      return out.set_text(416, status_text(416));
    case RangeDecision::Kind::kPartial:
      out.status = 206;
      out.add_header("Content-Range", fmt::format("bytes {}-{}/{}", range.first, range.last, *size));
      out.offset = range.first;
      out.length = range.last - range.first + 1;
      break;
    case RangeDecision::Kind::kFull:
      out.status = 200;
      out.offset = 0;
      out.length = *size;
      break;
  }
  out.add_header("Content-Type", "application/octet-stream");
  out.body = Response::Body::kGenerated;
  out.seed = seed;
  out.repr_size = *size;
  out.content_digest = content_digest;
  out.repr_digest = repr_digest;
  out.wrong_digest = wrong_digest;
}

// Routes whose rest is empty or "/<name>...": the name only gives clients a file name.
bool name_only(std::string_view rest) {
  return rest.empty() || rest.starts_with('/');
}

// /endless[/<name>...]?seed=<s>: deterministic bytes that never end, close-delimited (framing=chunked for a
// chunked one). Generated as they are sent: no memory grows with it (fault case 7).
void serve_endless(const RouteContext& ctx) {
  if (!name_only(ctx.rest)) return ctx.out.set_text(404, status_text(404));
  std::uint64_t seed = 0;
  if (auto text = query_param(ctx.query, "seed")) {
    auto parsed = parse_u64(*text);
    if (!parsed) return ctx.out.set_text(400, "bad seed\n");
    seed = *parsed;
  }
  Response& out = ctx.out;
  out.add_header("Content-Type", "application/octet-stream");
  out.body = Response::Body::kGenerated;
  out.seed = seed;
  out.length = Response::kEndless;
  out.repr_size = Response::kEndless;
  out.framing = Response::Framing::kClose;  // apply_transport() closes after it, or makes it chunked
}

// /stall[/<name>...]: a 200 that declares 1 MiB, then sends no body byte and keeps the connection open
// (shorthand for /bytes/1MiB?stall; fault case 5).
void serve_stall(const RouteContext& ctx) {
  if (!name_only(ctx.rest)) return ctx.out.set_text(404, status_text(404));
  Response& out = ctx.out;
  out.add_header("Content-Type", "application/octet-stream");
  out.body = Response::Body::kGenerated;
  out.length = out.repr_size = 1024 * 1024;
  out.cut = Response::Cut::kStall;
  out.cut_after = 0;
}

// /status/<code>: that status with a short text body.
void serve_status(const RouteContext& ctx) {
  auto code = parse_u64(first_segment(ctx.rest));
  if (!code || *code < 200 || *code > 599) return ctx.out.set_text(400, "bad status code\n");
  const int status = static_cast<int>(*code);
  if (status == 204 || status == 304) {  // never a body; 204 not even a Content-Length (RFC 9110 §8.6)
    ctx.out.status = status;
    ctx.out.content_length_header = status != 204;
    return;
  }
  ctx.out.set_text(status, status_text(status));
}

// A query value that query_param() decodes back to s: RFC 3986 unreserved characters and '/' stay as they
// are.
std::string encode_query_value(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~' || c == '/') {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

// A redirect (302 unless ?status= says 301, 303, 307 or 308) to location. Control characters (a decoded
// %0d%0a) would split the header: refused.
void redirect(const RouteContext& ctx, std::string_view location) {
  int status = 302;
  if (auto text = query_param(ctx.query, "status")) {
    auto code = parse_u64(*text);
    if (!code || (*code != 301 && *code != 302 && *code != 303 && *code != 307 && *code != 308))
      return ctx.out.set_text(400, "bad redirect status\n");
    status = static_cast<int>(*code);
  }
  for (const char ch : location) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) return ctx.out.set_text(400, "bad redirect location\n");
  }
  ctx.out.set_text(status, status_text(status));
  ctx.out.add_header("Location", location);
}

// /redirect/<n>?to=<path>: a chain of n (>= 1) redirects on this origin, each to /redirect/<n-1>, the last to
// <path> (an absolute path here; /redirect-to leaves the origin).
void serve_redirect(const RouteContext& ctx) {
  auto hops = parse_u64(first_segment(ctx.rest));
  if (!hops || *hops == 0) return ctx.out.set_text(400, "bad redirect count\n");
  auto to = query_param(ctx.query, "to");
  // "//host/x" would be another origin (a network-path reference, RFC 3986 §4.2): that is /redirect-to's job.
  if (!to || !to->starts_with('/') || to->starts_with("//"))
    return ctx.out.set_text(400, "bad redirect target\n");
  if (*hops == 1) return redirect(ctx, *to);
  redirect(ctx, fmt::format("/redirect/{}?to={}", *hops - 1, encode_query_value(*to)));
}

// /redirect-to?url=<absolute-url>: one redirect to any URL, including schemes a client must refuse (file:).
void serve_redirect_to(const RouteContext& ctx) {
  if (!ctx.rest.empty()) return ctx.out.set_text(404, status_text(404));  // "/redirect-toX" is not this route
  auto url = query_param(ctx.query, "url");
  if (!url || url->empty()) return ctx.out.set_text(400, "bad redirect url\n");
  redirect(ctx, *url);
}

// /loop/a and /loop/b redirect to each other, keeping the query (so a test can tag its own loop): a client
// following redirects never gets out (fault case 10).
void serve_loop(const RouteContext& ctx) {
  std::string_view other;
  if (ctx.rest == "a") {
    other = "/loop/b";
  } else if (ctx.rest == "b") {
    other = "/loop/a";
  } else {
    return ctx.out.set_text(404, status_text(404));
  }
  if (ctx.query.empty()) return redirect(ctx, other);
  redirect(ctx, fmt::format("{}?{}", other, ctx.query));
}

constexpr std::array kRoutes{
    Route{"/bytes/", &serve_bytes},       Route{"/status/", &serve_status},
    Route{"/redirect/", &serve_redirect}, Route{"/redirect-to", &serve_redirect_to},
    Route{"/loop/", &serve_loop},         Route{"/endless", &serve_endless},
    Route{"/stall", &serve_stall},
};

// Caps what one response may make the server hold in memory for generated headers.
constexpr std::uint64_t kMaxFillHeaderBytes = 8 * 1024 * 1024;
constexpr std::size_t kFillLineSize = 1024;  // header_fill's lines, CRLF included

// "<bytes>/<duration>" of ?trickle=.
bool parse_trickle(std::string_view text, Response& out) {
  const auto slash = text.find('/');
  if (slash == std::string_view::npos) return false;
  auto bytes = core::parse_size(text.substr(0, slash));
  auto interval = core::parse_duration(text.substr(slash + 1));
  if (!bytes || *bytes == 0 || !interval || interval->count() <= 0) return false;
  out.trickle_bytes = *bytes;
  out.trickle_interval = *interval;
  return true;
}

// The query parameters every route takes: how the response travels (framing, pacing, where it breaks off)
// and fault headers. Returns an error text, or nullptr when all of them were usable.
const char* apply_transport(std::string_view query, Response& out) {
  // Where the body breaks off: at most one of them.
  int cuts = 0;
  const std::pair<std::string_view, Response::Cut> cut_params[] = {
      {"close_after", Response::Cut::kClose},
      {"reset_after", Response::Cut::kReset},
      {"stall_after", Response::Cut::kStall},
  };
  for (const auto& [key, cut] : cut_params) {
    if (auto text = query_param(query, key)) {
      auto bytes = core::parse_size(*text);
      if (!bytes) return "bad close_after, reset_after or stall_after\n";
      out.cut = cut;
      out.cut_after = *bytes;
      ++cuts;
    }
  }
  if (auto text = query_param(query, "stall")) {
    if (*text != "" && *text != "1") return "bad stall\n";
    out.cut = Response::Cut::kStall;
    out.cut_after = 0;
    ++cuts;
  }
  if (cuts > 1) return "more than one of close_after, reset_after, stall_after, stall\n";

  if (auto text = query_param(query, "trickle"); text && !parse_trickle(*text, out)) return "bad trickle\n";

  // Framing only means something for a response with a body.
  auto framing = query_param(query, "framing");
  auto chunk_fault = query_param(query, "chunk_fault");
  auto chunk_size = query_param(query, "chunk_size");
  if (out.body != Response::Body::kNone) {
    if (framing) {
      if (*framing == "length") {
        out.framing = Response::Framing::kLength;
      } else if (*framing == "chunked") {
        out.framing = Response::Framing::kChunked;
      } else if (*framing == "close") {
        out.framing = Response::Framing::kClose;
      } else {
        return "bad framing\n";
      }
    }
    if (chunk_fault) {
      if (*chunk_fault == "no_end") {
        out.chunk_fault = Response::ChunkFault::kNoEnd;
      } else if (*chunk_fault == "bad_size") {
        out.chunk_fault = Response::ChunkFault::kBadSize;
      } else if (*chunk_fault == "overflow") {
        out.chunk_fault = Response::ChunkFault::kOverflowSize;
      } else {
        return "bad chunk_fault\n";
      }
      if (framing && out.framing != Response::Framing::kChunked) return "chunk_fault needs framing=chunked\n";
      out.framing = Response::Framing::kChunked;
    }
    if (chunk_size) {
      auto bytes = core::parse_size(*chunk_size);
      if (!bytes || *bytes == 0) return "bad chunk_size\n";
      out.chunk_size = *bytes;
    }
    if (out.body_size() == Response::kEndless && out.framing == Response::Framing::kLength)
      return "an endless body needs framing=close or chunked\n";
    // Broken or absent framing leaves nothing to find the next response by.
    if (out.framing == Response::Framing::kClose || out.chunk_fault != Response::ChunkFault::kNone)
      out.close = true;
  }

  // Content-Length as given (fault cases 4 and 8): one line per cl= value, or declare=<size>; the real body
  // follows and the connection closes after it, since the client cannot know where it ends.
  auto lengths = query_params(query, "cl");
  if (auto text = query_param(query, "declare")) {
    auto bytes = core::parse_size(*text);
    if (!bytes) return "bad declare\n";
    lengths.push_back(std::to_string(*bytes));
  }
  if (!lengths.empty()) {
    for (const auto& value : lengths) {
      if (!header_safe(value)) return "bad cl\n";
      out.add_header("Content-Length", value);
    }
    out.content_length_header = false;
    out.close = true;
  }

  if (auto value = query_param(query, "retry_after")) {
    if (!header_safe(*value)) return "bad retry_after\n";
    out.add_header("Retry-After", *value);
  }
  if (auto value = query_param(query, "cd")) {
    if (!header_safe(*value)) return "bad cd\n";
    out.add_header("Content-Disposition", *value);
  }

  // Oversized heads (fault case 9): one long line, and/or many 1 KiB lines.
  std::uint64_t big = 0;
  std::uint64_t fill = 0;
  if (auto text = query_param(query, "big_header")) {
    auto bytes = core::parse_size(*text);
    if (!bytes) return "bad big_header\n";
    big = *bytes;
  }
  if (auto text = query_param(query, "header_fill")) {
    auto bytes = core::parse_size(*text);
    if (!bytes) return "bad header_fill\n";
    fill = *bytes;
  }
  if (big > kMaxFillHeaderBytes || fill > kMaxFillHeaderBytes || big + fill > kMaxFillHeaderBytes)
    return "big_header and header_fill are limited to 8 MiB\n";
  if (big > 0) {
    out.headers.append("X-Big: ");
    out.headers.append(big, 'a');
    out.headers.append("\r\n");
  }
  // "X-Fill-000001: aaa...\r\n", each exactly kFillLineSize bytes; as many as reach fill.
  for (std::uint64_t line = 0; line * kFillLineSize < fill; ++line) {
    const auto before = out.headers.size();
    fmt::format_to(std::back_inserter(out.headers), "X-Fill-{:06}: ", line);
    out.headers.append(kFillLineSize - 2 - (out.headers.size() - before), 'a');
    out.headers.append("\r\n");
  }
  return nullptr;
}

}  // namespace

// A response's headers may have been megabytes (header_fill): a connection does not keep that much.
constexpr std::size_t kMaxKeptCapacity = 64 * 1024;

std::uint64_t Response::body_size() const {
  switch (body) {
    case Body::kText:
      return text.size();
    case Body::kGenerated:
      return length;
    case Body::kNone:
      break;
  }
  return 0;
}

void Response::add_header(std::string_view name, std::string_view value) {
  headers.append(name);
  headers.append(": ");
  headers.append(value);
  headers.append("\r\n");
}

void Response::set_text(int code, std::string body_text) {
  status = code;
  body = Body::kText;
  text = std::move(body_text);
  add_header("Content-Type", "text/plain");
}

void Response::clear() {
  status = 200;
  if (headers.capacity() > kMaxKeptCapacity) std::string().swap(headers);
  headers.clear();
  body = Body::kNone;
  if (text.capacity() > kMaxKeptCapacity) std::string().swap(text);
  text.clear();
  seed = offset = length = repr_size = 0;
  framing = Framing::kLength;
  chunk_fault = ChunkFault::kNone;
  chunk_size = kDefaultChunkSize;
  content_length_header = true;
  cut = Cut::kNone;
  cut_after = 0;
  trickle_bytes = 0;
  trickle_interval = std::chrono::milliseconds{0};
  content_digest = repr_digest = wrong_digest = false;
  latency = std::chrono::milliseconds{0};
  close = false;
}

void route(const Request& request, const OriginOptions& options, Response& out) {
  out.clear();
  const Target target = split_target(request.target);
  out.latency = options.latency;
  if (auto text = query_param(target.query, "latency")) {
    auto latency = core::parse_duration(*text);
    if (!latency) return out.set_text(400, "bad latency\n");
    out.latency = *latency;
  }
  if (request.method != "GET" && request.method != "HEAD") {
    out.add_header("Allow", "GET, HEAD");
    return out.set_text(405, status_text(405));
  }
  const Route* found = nullptr;
  for (const Route& r : kRoutes) {
    if (target.path.starts_with(r.prefix)) {
      found = &r;
      break;
    }
  }
  if (!found) return out.set_text(404, status_text(404));
  found->handler({request, target.path.substr(found->prefix.size()), target.query, out});
  if (const char* error = apply_transport(target.query, out)) {
    const auto latency = out.latency;
    out.clear();
    out.latency = latency;
    out.set_text(400, error);
  }
}

void error_response(int status, std::string_view reason, Response& out) {
  out.clear();
  out.set_text(status, fmt::format("{}\n", reason));
  out.close = true;
}

void append_head(const Response& response, int minor_version, bool keep_alive, std::string& out) {
  auto it = std::back_inserter(out);
  fmt::format_to(it, "HTTP/1.1 {} {}\r\n", response.status, reason_phrase(response.status));
  switch (response.framing) {
    case Response::Framing::kLength:
      if (response.content_length_header) fmt::format_to(it, "Content-Length: {}\r\n", response.body_size());
      break;
    case Response::Framing::kChunked:
      out.append("Transfer-Encoding: chunked\r\n");
      break;
    case Response::Framing::kClose:
      break;
  }
  if (!keep_alive) {
    out.append("Connection: close\r\n");
  } else if (minor_version == 0) {
    out.append("Connection: keep-alive\r\n");  // HTTP/1.0 closes by default
  }
  out.append(response.headers);
  out.append("\r\n");
}

void add_digest_headers(Response& response, const Sha256& content, const Sha256& repr) {
  // One flipped bit: still well-formed, certainly wrong.
  auto spoil = [&](Sha256 digest) {
    if (response.wrong_digest) digest[0] ^= 1;
    return digest;
  };
  if (response.content_digest) response.add_header("Content-Digest", sha256_field(spoil(content)));
  if (response.repr_digest) response.add_header("Repr-Digest", sha256_field(spoil(repr)));
}

}  // namespace fetchd::origin
