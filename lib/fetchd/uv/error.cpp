// SPDX-License-Identifier: Apache-2.0
#include "fetchd/uv/error.hpp"

#include <spdlog/spdlog.h>

#include <fmt/format.h>
#include <uv.h>

namespace fetchd::uv {

Error::Error(std::string_view what, int code)
    : std::runtime_error(fmt::format("{}: {}", what, describe(code))), code_(code) {}

int check(int rc, std::string_view what) {
  if (rc < 0) throw Error(what, rc);
  return rc;
}

std::string describe(int code) { return fmt::format("{} ({})", uv_err_name(code), uv_strerror(code)); }

void log_escaped_exception(const char* what) noexcept {
  try {
    throw;
  } catch (const std::exception& e) {
    spdlog::critical("uncaught exception in {} callback: {}", what, e.what());
  } catch (...) {
    spdlog::critical("uncaught non-standard exception in {} callback", what);
  }
}

}  // namespace fetchd::uv
