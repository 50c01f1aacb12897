// SPDX-License-Identifier: Apache-2.0
#pragma once
// libuv error codes as exceptions at boundaries (setup), and as text everywhere else.

#include <stdexcept>
#include <string>
#include <string_view>

namespace fetchd::uv {

class Error : public std::runtime_error {
 public:
  Error(std::string_view what, int code);
  int code() const { return code_; }

 private:
  int code_;
};

// Throws Error("<what>: <uv_strerror>") when rc < 0; returns rc otherwise.
int check(int rc, std::string_view what);

std::string describe(int code);  // "ECONNREFUSED (connection refused)"

// Every uv trampoline runs the owner's callback through this: an exception must never unwind through libuv's C
// frames (undefined behaviour). Callbacks handle their own errors; one escaping here is a bug, logged loudly.
void log_escaped_exception(const char* what) noexcept;  // call from a catch block only
template <typename F>
void guarded(const char* what, F&& f) noexcept {
  try {
    f();
  } catch (...) {
    log_escaped_exception(what);
  }
}

}  // namespace fetchd::uv
