// SPDX-License-Identifier: Apache-2.0
// Placeholder: `fetchd origin` is not built yet.
#include <iostream>

#include "commands.hpp"

namespace fetchd::cmd {

void register_origin(CLI::App& app, int& exit_code) {
  auto* sub = app.add_subcommand("origin", "not implemented yet");
  sub->callback([&exit_code] {
    std::cerr << "fetchd: origin is not implemented yet\n";
    exit_code = kExitSoftware;
  });
}

}  // namespace fetchd::cmd
