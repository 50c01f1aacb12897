// SPDX-License-Identifier: Apache-2.0
#pragma once
// What fetchd needs from systemd, through libsystemd: readiness and status notifications (sd_notify), the
// watchdog interval, and sockets passed by socket activation (sd_listen_fds). Every call is a no-op outside
// systemd (no NOTIFY_SOCKET / LISTEN_FDS), so the same daemon runs by hand, in tests and as a service.
// Thread: the control loop thread.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fetchd::service {

class Notifier {
 public:
  void ready();
  void stopping();
  // RELOADING=1 with MONOTONIC_USEC (systemd 252 has no Type=notify-reload, but the message is understood and
  // shown); send ready() when the reload is done.
  void reloading();
  void status(std::string_view line);
  void watchdog();
  // While a long drain runs: "give me `extra` more before you kill me".
  void extend_timeout(std::chrono::microseconds extra);

 private:
  void send(const std::string& message);
  bool warned_ = false;
};

// The watchdog interval systemd expects pings within (WatchdogSec=), when enabled for this process.
std::optional<std::chrono::microseconds> watchdog_interval();

// Listening sockets passed by systemd (LISTEN_FDS/LISTEN_PID), made close-on-exec; the environment variables
// are unset so children never see them. Empty when not socket-activated.
std::vector<int> take_listen_fds();

}  // namespace fetchd::service
