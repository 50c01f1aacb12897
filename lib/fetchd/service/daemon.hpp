// SPDX-License-Identifier: Apache-2.0
#pragma once
// `fetchd serve`: the long-running daemon. One control loop owns the job store, the scheduler (and through it a
// strategy), the control socket, signals and timers. Jobs come from the config's job list and from clients;
// an acknowledged job is committed to the store first, so no crash, kill -9 or restart loses it.
// Thread: run_daemon() runs on the main thread and owns everything it creates.

#include <filesystem>

namespace fetchd::service {

// Exit codes of run_daemon.
inline constexpr int kExitOk = 0;
inline constexpr int kExitStartup = 1;  // store, socket or output directory unusable
inline constexpr int kExitConfig = 78;  // EX_CONFIG: the config file is invalid

// Loads the config, opens the store, re-queues unfinished jobs, enqueues the config's jobs, listens, and serves
// until SIGTERM/SIGINT (then drains for shutdown.grace). Errors at start-up are logged with what and where.
int run_daemon(const std::filesystem::path& config_path);

}  // namespace fetchd::service
