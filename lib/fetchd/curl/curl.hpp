// SPDX-License-Identifier: Apache-2.0
#pragma once
// Thin move-only owners of libcurl handles (CURL*, CURLM*, curl_slist*, CURLU*) and curl's global init. All
// knowledge of libcurl's C quirks lives in this folder.
// Thread: an Easy belongs to one thread at a time; a Multi to the thread that drives it.

#include <curl/curl.h>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace fetchd::curl {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// curl_global_init once, in main() before any thread starts; cleanup at destruction.
class Global {
 public:
  Global();
  ~Global();
  Global(const Global&) = delete;
  Global& operator=(const Global&) = delete;
};

struct EasyDeleter {
  void operator()(CURL* e) const { curl_easy_cleanup(e); }
};
struct MultiDeleter {
  void operator()(CURLM* m) const { curl_multi_cleanup(m); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
struct UrlDeleter {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};

class Easy {
 public:
  Easy();  // throws Error when libcurl cannot allocate
  CURL* get() const { return h_.get(); }

  // Throws Error naming the option when curl refuses it (e.g. unsupported protocol list).
  template <typename T>
  void set(CURLoption opt, T value, const char* name) {
    CURLcode rc = curl_easy_setopt(h_.get(), opt, value);
    if (rc != CURLE_OK) fail(name, rc);
  }

  long response_code() const;
  long info_long(CURLINFO what) const;  // 0 when curl has no value
  std::optional<std::string> info_string(CURLINFO what) const;
  double info_double(CURLINFO what) const;
  curl_off_t info_off(CURLINFO what) const;

 private:
  [[noreturn]] static void fail(const char* option, CURLcode rc);
  std::unique_ptr<CURL, EasyDeleter> h_;
};

class Slist {
 public:
  Slist() = default;
  void append(const std::string& line);  // throws Error on allocation failure
  curl_slist* get() const { return l_.get(); }

 private:
  std::unique_ptr<curl_slist, SlistDeleter> l_;
};

class Multi {
 public:
  Multi();
  CURLM* get() const { return h_.get(); }
  template <typename T>
  void set(CURLMoption opt, T value, const char* name) {
    CURLMcode rc = curl_multi_setopt(h_.get(), opt, value);
    if (rc != CURLM_OK) fail(name, rc);
  }
  void reset() { h_.reset(); }  // curl_multi_cleanup now (fires socket callbacks with CURL_POLL_REMOVE)

 private:
  [[noreturn]] static void fail(const char* option, CURLMcode rc);
  std::unique_ptr<CURLM, MultiDeleter> h_;
};

// Parses an absolute URL with curl's URL API. Returns the lowercase scheme, or nullopt with a reason.
struct ParsedUrl {
  std::string scheme;
  std::string host;
  std::string path;        // decoded path, "/" when empty
  long port = 0;           // the explicit port, else the scheme's default
  bool has_userinfo = false;
};
std::optional<ParsedUrl> parse_url(std::string_view url, std::string* error);

// "scheme://host:port" (lowercase, default port filled in): the origin whose connections per-host limits
// count. The URL itself when it cannot be parsed.
std::string origin_of(std::string_view url);

// The URL with userinfo removed and the values of secret query parameters replaced by "…", safe for logs
// and socket answers: "https://h/a?sig=…&part=2". Which parameters are secret is process-wide (config
// security.redact_query): names compared case-insensitively, '*' matching any run of characters; the
// default "*" hides every value.
std::string redact_url(std::string_view url);
// Only the query part of that, with an explicit list of secret parameter names (check-config shows a config's
// own list at work).
std::string redact_query(std::string_view url, const std::vector<std::string>& secret);

// Sets the secret query parameter names (call once at start-up, before threads start). Also exported as
// FETCHD_REDACT_QUERY (comma-separated) so that worker processes inherit it; redacted_query_from_env()
// reads it back there.
void set_redacted_query(const std::vector<std::string>& names);
void redacted_query_from_env();

std::string describe(CURLcode rc);   // "Couldn't connect to server (7)"
std::string describe(CURLMcode rc);

}  // namespace fetchd::curl
