// SPDX-License-Identifier: Apache-2.0
#include "fetchd/curl/curl.hpp"

#include <cctype>
#include <cstdlib>

#include <fmt/format.h>

namespace fetchd::curl {

Global::Global() {
  CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (rc != CURLE_OK) throw Error(fmt::format("curl_global_init: {}", describe(rc)));
}

Global::~Global() { curl_global_cleanup(); }

Easy::Easy() : h_(curl_easy_init()) {
  if (!h_) throw Error("curl_easy_init failed");
}

void Easy::fail(const char* option, CURLcode rc) {
  throw Error(fmt::format("curl_easy_setopt({}): {}", option, describe(rc)));
}

long Easy::response_code() const {
  long code = 0;
  curl_easy_getinfo(h_.get(), CURLINFO_RESPONSE_CODE, &code);
  return code;
}

long Easy::info_long(CURLINFO what) const {
  long v = 0;
  curl_easy_getinfo(h_.get(), what, &v);
  return v;
}

std::optional<std::string> Easy::info_string(CURLINFO what) const {
  char* s = nullptr;
  if (curl_easy_getinfo(h_.get(), what, &s) != CURLE_OK || s == nullptr) return std::nullopt;
  return std::string(s);
}

double Easy::info_double(CURLINFO what) const {
  double d = 0;
  curl_easy_getinfo(h_.get(), what, &d);
  return d;
}

curl_off_t Easy::info_off(CURLINFO what) const {
  curl_off_t v = 0;
  curl_easy_getinfo(h_.get(), what, &v);
  return v;
}

void Slist::append(const std::string& line) {
  curl_slist* next = curl_slist_append(l_.get(), line.c_str());
  if (!next) throw Error("curl_slist_append: out of memory");
  (void)l_.release();
  l_.reset(next);
}

Multi::Multi() : h_(curl_multi_init()) {
  if (!h_) throw Error("curl_multi_init failed");
}

void Multi::fail(const char* option, CURLMcode rc) {
  throw Error(fmt::format("curl_multi_setopt({}): {}", option, describe(rc)));
}

std::optional<ParsedUrl> parse_url(std::string_view url, std::string* error) {
  std::unique_ptr<CURLU, UrlDeleter> u(curl_url());
  if (!u) {
    if (error) *error = "out of memory";
    return std::nullopt;
  }
  std::string s(url);
  CURLUcode rc = curl_url_set(u.get(), CURLUPART_URL, s.c_str(), 0);
  if (rc != CURLUE_OK) {
    if (error) *error = curl_url_strerror(rc);
    return std::nullopt;
  }
  ParsedUrl out;
  auto get = [&](CURLUPart part, unsigned flags, std::string& dst) -> bool {
    char* v = nullptr;
    CURLUcode r = curl_url_get(u.get(), part, &v, flags);
    if (r != CURLUE_OK) return false;
    dst = v;
    curl_free(v);
    return true;
  };
  get(CURLUPART_SCHEME, 0, out.scheme);
  for (auto& c : out.scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!get(CURLUPART_HOST, 0, out.host) || out.host.empty()) {
    if (error) *error = "URL has no host";
    return std::nullopt;
  }
  if (!get(CURLUPART_PATH, CURLU_URLDECODE, out.path) || out.path.empty()) out.path = "/";
  std::string port;
  if (get(CURLUPART_PORT, CURLU_DEFAULT_PORT, port)) out.port = std::strtol(port.c_str(), nullptr, 10);
  std::string tmp;
  out.has_userinfo = get(CURLUPART_USER, 0, tmp) || get(CURLUPART_PASSWORD, 0, tmp);
  return out;
}

std::string origin_of(std::string_view url) {
  auto parsed = parse_url(url, nullptr);
  if (!parsed) return std::string(url);
  std::string host = parsed->host;
  for (auto& c : host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return fmt::format("{}://{}:{}", parsed->scheme, host, parsed->port);
}

namespace {

std::vector<std::string>& redacted_names() {
  static std::vector<std::string> names{"*"};
  return names;
}

// Glob with '*' only, case-insensitive.
bool name_matches(std::string_view pattern, std::string_view name) {
  if (pattern.empty()) return name.empty();
  if (pattern.front() == '*') {
    for (std::size_t skip = 0; skip <= name.size(); ++skip) {
      if (name_matches(pattern.substr(1), name.substr(skip))) return true;
    }
    return false;
  }
  return !name.empty() &&
         std::tolower(static_cast<unsigned char>(pattern.front())) ==
             std::tolower(static_cast<unsigned char>(name.front())) &&
         name_matches(pattern.substr(1), name.substr(1));
}

bool secret_param(const std::vector<std::string>& secret, std::string_view name) {
  for (const auto& p : secret) {
    if (name_matches(p, name)) return true;
  }
  return false;
}

}  // namespace

void set_redacted_query(const std::vector<std::string>& names) {
  redacted_names() = names;
  std::string joined;
  for (const auto& n : names) joined += (joined.empty() ? "" : ",") + n;
  ::setenv("FETCHD_REDACT_QUERY", joined.c_str(), 1);
}

void redacted_query_from_env() {
  const char* env = std::getenv("FETCHD_REDACT_QUERY");
  if (env == nullptr) return;  // the default: every value
  std::vector<std::string> names;
  std::string_view rest(env);
  while (!rest.empty()) {
    auto comma = rest.find(',');
    if (comma != 0) names.emplace_back(rest.substr(0, comma));
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  redacted_names() = std::move(names);
}

std::string redact_url(std::string_view url) {
  std::string s(url);
  // Strip userinfo between "://" and the first '@' that precedes the path.
  auto scheme_end = s.find("://");
  if (scheme_end != std::string::npos) {
    auto auth_start = scheme_end + 3;
    auto path_start = s.find_first_of("/?#", auth_start);
    auto at = s.rfind('@', path_start == std::string::npos ? s.size() : path_start);
    if (at != std::string::npos && at >= auth_start) s.erase(auth_start, at + 1 - auth_start);
  }
  return redact_query(s, redacted_names());
}

std::string redact_query(std::string_view url, const std::vector<std::string>& secret) {
  const std::string s(url);
  auto q = s.find('?');
  if (q == std::string::npos) return s;
  auto frag = s.find('#', q);
  const std::string_view query = std::string_view(s).substr(q + 1, (frag == std::string::npos ? s.size() : frag) - q - 1);
  std::string out = s.substr(0, q + 1);
  std::string_view rest = query;
  bool first = true;
  while (true) {
    auto amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    auto eq = pair.find('=');
    std::string_view name = pair.substr(0, eq);
    if (!first) out += '&';
    first = false;
    // A parameter without '=' may itself be a token ("?abcdef"): redacted whenever anything is.
    if (eq == std::string_view::npos) {
      out += (pair.empty() || !secret_param(secret, pair)) ? std::string(pair) : std::string("…");
    } else {
      out += name;
      out += '=';
      out += secret_param(secret, name) ? std::string_view("…") : pair.substr(eq + 1);
    }
    if (amp == std::string_view::npos) break;
    rest.remove_prefix(amp + 1);
  }
  if (frag != std::string::npos) out += s.substr(frag);
  return out;
}

std::string describe(CURLcode rc) { return fmt::format("{} ({})", curl_easy_strerror(rc), static_cast<int>(rc)); }

std::string describe(CURLMcode rc) { return fmt::format("{} ({})", curl_multi_strerror(rc), static_cast<int>(rc)); }

}  // namespace fetchd::curl
