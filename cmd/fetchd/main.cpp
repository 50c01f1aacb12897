// SPDX-License-Identifier: Apache-2.0
// fetchd: the concurrent URL downloader. Subcommands are registered from their own files (commands.hpp).

#include <csignal>
#include <exception>
#include <iostream>

#include "commands.hpp"
#include "fetchd/core/version.hpp"
#include "fetchd/curl/curl.hpp"

int main(int argc, char** argv) {
  // Before any thread: curl's global state, and no SIGPIPE from writes to closed sockets (design.md §3).
  std::signal(SIGPIPE, SIG_IGN);
  try {
    fetchd::curl::Global curl_global;
    CLI::App app{"fetchd: a concurrent URL downloader (event-loop, curl-multi, thread-pool, process-pool)"};
    app.set_version_flag("--version", std::string("fetchd ") + fetchd::core::kVersion);
    app.require_subcommand(1);
    int exit_code = fetchd::cmd::kExitOk;
    fetchd::cmd::register_run(app, exit_code);
    fetchd::cmd::register_check_config(app, exit_code);
    fetchd::cmd::register_origin(app, exit_code);
    fetchd::cmd::register_bench(app, exit_code);
    fetchd::cmd::register_worker(app, exit_code);
    fetchd::cmd::register_serve(app, exit_code);
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      int rc = app.exit(e);
      return rc == 0 ? 0 : fetchd::cmd::kExitUsage;
    }
    return exit_code;
  } catch (const std::exception& e) {
    std::cerr << "fetchd: " << e.what() << "\n";
    return fetchd::cmd::kExitSoftware;
  }
}
