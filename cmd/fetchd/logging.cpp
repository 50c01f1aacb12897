// SPDX-License-Identifier: Apache-2.0
#include "logging.hpp"

#include <sys/resource.h>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace fetchd::cmd {

void setup_logging(const std::string& level) {
  // Idempotent: a second call (tests, or a subcommand that sets up twice) reuses the registered logger.
  auto logger = spdlog::get("fetchd");
  if (!logger) logger = spdlog::stderr_color_mt("fetchd");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") {
    spdlog::warn("unknown log level '{}', using info", level);
    lvl = spdlog::level::info;
  }
  spdlog::set_level(lvl);
}

void raise_fd_limit(int concurrency) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  if (lim.rlim_cur < lim.rlim_max) {
    rlim_t old = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &lim) == 0) {
      spdlog::info("raised open-files limit from {} to {}", old, lim.rlim_cur);
    } else {
      getrlimit(RLIMIT_NOFILE, &lim);
    }
  }
  auto needed = static_cast<rlim_t>(concurrency) * 2 + 64;
  if (lim.rlim_cur < needed) {
    spdlog::warn("open-files limit {} is too low for concurrency {} (needs about {}): transfers will fail with "
                 "'too many open files'; raise LimitNOFILE= or ulimit -n",
                 lim.rlim_cur, concurrency, needed);
  }
}

}  // namespace fetchd::cmd
