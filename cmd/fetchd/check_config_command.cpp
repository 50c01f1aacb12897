// SPDX-License-Identifier: Apache-2.0
// `fetchd check-config FILE`: validates a config file and prints it normalized on stdout (exit 0), or prints
// every error on stderr, one per line as "file:line:col: key: message" (exit 78, EX_CONFIG).
#include <iostream>
#include <memory>
#include <string>

#include "commands.hpp"
#include "fetchd/config/config.hpp"

namespace fetchd::cmd {

void register_check_config(CLI::App& app, int& exit_code) {
  struct Options {
    std::string file;
    bool show_secrets = false;
  };
  auto options = std::make_shared<Options>();
  auto* sub = app.add_subcommand("check-config", "Validate a config file and print it normalized");
  // No CLI::ExistingFile check: an unreadable file is a config error (exit 78) with the errno text, like any
  // other.
  sub->add_option("file", options->file, "The YAML config file")->required();
  sub->add_flag("--show-secrets", options->show_secrets,
                "Print header values and URL credentials instead of <redacted>");
  sub->callback([options, &exit_code] {
    try {
      config::Config cfg = config::load_config(options->file);
      std::cout << config::dump_config(cfg, options->show_secrets) << std::flush;
      exit_code = kExitOk;
    } catch (const config::ConfigErrors& e) {
      for (const auto& error : e.errors()) std::cerr << error.to_string() << "\n";
      exit_code = kExitConfig;
    }
  });
}

}  // namespace fetchd::cmd
