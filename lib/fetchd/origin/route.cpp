// SPDX-License-Identifier: Apache-2.0
#include "fetchd/origin/route.hpp"

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <optional>

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

// /bytes/<n>[/<name>...]?seed=<s>: n deterministic bytes, with validators and single-range support.
void serve_bytes(const RouteContext& ctx) {
  auto size = core::parse_size(first_segment(ctx.rest));
  if (!size) return ctx.out.set_text(400, "bad size\n");
  std::uint64_t seed = 0;
  if (auto text = query_param(ctx.query, "seed")) {
    auto parsed = parse_u64(*text);
    if (!parsed) return ctx.out.set_text(400, "bad seed\n");
    seed = *parsed;
  }
  Response& out = ctx.out;
  const std::string etag = body_etag(*size, seed);
  out.add_header("Accept-Ranges", "bytes");
  out.add_header("ETag", etag);
  out.add_header("Last-Modified", kBodyLastModified);

  RangeDecision range;
  if (const std::string* value = ctx.request.header("range")) {
    // RFC 9110 §13.1.5: a Range under an If-Range that does not match (strongly) gets the whole body.
    const std::string* if_range = ctx.request.header("if-range");
    if (!if_range || *if_range == etag || *if_range == kBodyLastModified)
      range = evaluate_range(*value, *size);
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

// A query value that query_param() decodes back to s: RFC 3986 unreserved characters and '/' stay as they are.
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

// A 302 to location. Control characters (a decoded %0d%0a) would split the header: refused.
void redirect(Response& out, std::string_view location) {
  for (const char ch : location) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) return out.set_text(400, "bad redirect location\n");
  }
  out.set_text(302, status_text(302));
  out.add_header("Location", location);
}

// /redirect/<n>?to=<path>: a chain of n (>= 1) redirects on this origin, each to /redirect/<n-1>, the last to
// <path> (an absolute path here; /redirect-to leaves the origin).
void serve_redirect(const RouteContext& ctx) {
  auto hops = parse_u64(first_segment(ctx.rest));
  if (!hops || *hops == 0) return ctx.out.set_text(400, "bad redirect count\n");
  auto to = query_param(ctx.query, "to");
  // "//host/x" would be another origin (a network-path reference, RFC 3986 §4.2): that is /redirect-to's job.
  if (!to || !to->starts_with('/') || to->starts_with("//")) return ctx.out.set_text(400, "bad redirect target\n");
  if (*hops == 1) return redirect(ctx.out, *to);
  redirect(ctx.out, fmt::format("/redirect/{}?to={}", *hops - 1, encode_query_value(*to)));
}

// /redirect-to?url=<absolute-url>: one redirect to any URL, including schemes a client must refuse (file:).
void serve_redirect_to(const RouteContext& ctx) {
  if (!ctx.rest.empty()) return ctx.out.set_text(404, status_text(404));  // "/redirect-toX" is not this route
  auto url = query_param(ctx.query, "url");
  if (!url || url->empty()) return ctx.out.set_text(400, "bad redirect url\n");
  redirect(ctx.out, *url);
}

constexpr std::array kRoutes{
    Route{"/bytes/", &serve_bytes},
    Route{"/status/", &serve_status},
    Route{"/redirect/", &serve_redirect},
    Route{"/redirect-to", &serve_redirect_to},
};

}  // namespace

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
  headers.clear();
  body = Body::kNone;
  text.clear();
  seed = offset = length = 0;
  content_length_header = true;
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
  for (const Route& r : kRoutes) {
    if (target.path.starts_with(r.prefix))
      return r.handler({request, target.path.substr(r.prefix.size()), target.query, out});
  }
  out.set_text(404, status_text(404));
}

void error_response(int status, std::string_view reason, Response& out) {
  out.clear();
  out.set_text(status, fmt::format("{}\n", reason));
  out.close = true;
}

void append_head(const Response& response, int minor_version, bool keep_alive, std::string& out) {
  auto it = std::back_inserter(out);
  fmt::format_to(it, "HTTP/1.1 {} {}\r\n", response.status, reason_phrase(response.status));
  if (response.content_length_header) fmt::format_to(it, "Content-Length: {}\r\n", response.body_size());
  if (!keep_alive) {
    out.append("Connection: close\r\n");
  } else if (minor_version == 0) {
    out.append("Connection: keep-alive\r\n");  // HTTP/1.0 closes by default
  }
  out.append(response.headers);
  out.append("\r\n");
}

}  // namespace fetchd::origin
