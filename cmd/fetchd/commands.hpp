// SPDX-License-Identifier: Apache-2.0
#pragma once
// Each subcommand of `fetchd` lives in its own file and registers itself here. A subcommand's callback stores
// its process exit code in `exit_code` (sysexits: 0 ok, 1 jobs failed, 2 usage, 78 config error).

#include <CLI/CLI.hpp>

namespace fetchd::cmd {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitSoftware = 70;  // EX_SOFTWARE: internal error
inline constexpr int kExitConfig = 78;    // EX_CONFIG

void register_run(CLI::App& app, int& exit_code);
void register_check_config(CLI::App& app, int& exit_code);
void register_origin(CLI::App& app, int& exit_code);
void register_bench(CLI::App& app, int& exit_code);
void register_worker(CLI::App& app, int& exit_code);
void register_serve(CLI::App& app, int& exit_code);

}  // namespace fetchd::cmd
