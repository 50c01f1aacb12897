// SPDX-License-Identifier: Apache-2.0
#pragma once
// Process-wide set-up shared by the subcommands: spdlog to stderr, and the open-files limit.

#include <string>

namespace fetchd::cmd {

// Logs to stderr at `level` (trace|debug|info|warn|error|off); unknown levels fall back to info with a warning.
void setup_logging(const std::string& level);

// Raises the soft RLIMIT_NOFILE to the hard limit and logs it; warns when it is still too low for
// `concurrency` transfers (a socket and a .part file each, plus headroom).
void raise_fd_limit(int concurrency);

}  // namespace fetchd::cmd
