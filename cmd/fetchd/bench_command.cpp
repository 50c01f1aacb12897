// SPDX-License-Identifier: Apache-2.0
// Placeholder: `fetchd bench` is not built yet.
#include <iostream>

#include "commands.hpp"

namespace fetchd::cmd {

void register_bench(CLI::App& app, int& exit_code) {
  auto* sub = app.add_subcommand("bench", "not implemented yet");
  sub->callback([&exit_code] {
    std::cerr << "fetchd: bench is not implemented yet\n";
    exit_code = kExitSoftware;
  });
}

}  // namespace fetchd::cmd
