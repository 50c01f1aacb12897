// SPDX-License-Identifier: Apache-2.0
// `fetchd serve --config FILE`: the daemon (lib/fetchd/service). Exit codes: 0 after a clean shutdown, 1 when
// the store, the socket or the output directory cannot be used, 78 for an invalid config.

#include "commands.hpp"
#include "fetchd/service/daemon.hpp"
#include "logging.hpp"

namespace fetchd::cmd {

void register_serve(CLI::App& app, int& exit_code) {
  auto* sub = app.add_subcommand("serve", "Run as a daemon: job list from the config, jobs from the control socket");
  auto path = std::make_shared<std::string>();
  sub->add_option("-c,--config", *path, "The YAML config file")->required();
  sub->callback([path, &exit_code] {
    setup_logging("info");  // the daemon sets the configured level once it has read the config
    // Transfers and client connections both need descriptors; the daemon warns itself when too few remain.
    raise_fd_limit(0);
    exit_code = service::run_daemon(*path);
  });
}

}  // namespace fetchd::cmd
