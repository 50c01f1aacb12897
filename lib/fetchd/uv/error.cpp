// SPDX-License-Identifier: Apache-2.0
#include "fetchd/uv/error.hpp"

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

}  // namespace fetchd::uv
