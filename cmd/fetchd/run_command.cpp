// SPDX-License-Identifier: Apache-2.0
// Placeholder: `fetchd run` is not built yet.
#include <iostream>

#include "commands.hpp"

namespace fetchd::cmd {

void register_run(CLI::App& app, int& exit_code) {
  auto* sub = app.add_subcommand("run", "not implemented yet");
  sub->callback([&exit_code] {
    std::cerr << "fetchd: run is not implemented yet\n";
    exit_code = kExitSoftware;
  });
}

}  // namespace fetchd::cmd
