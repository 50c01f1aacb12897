// SPDX-License-Identifier: Apache-2.0
// Placeholder: `fetchd check-config` is not built yet.
#include <iostream>

#include "commands.hpp"

namespace fetchd::cmd {

void register_check_config(CLI::App& app, int& exit_code) {
  auto* sub = app.add_subcommand("check-config", "not implemented yet");
  sub->callback([&exit_code] {
    std::cerr << "fetchd: check-config is not implemented yet\n";
    exit_code = kExitSoftware;
  });
}

}  // namespace fetchd::cmd
