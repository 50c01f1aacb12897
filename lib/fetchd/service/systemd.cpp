// SPDX-License-Identifier: Apache-2.0
#include "fetchd/service/systemd.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <cstring>
#include <ctime>

#include <fmt/format.h>

namespace fetchd::service {

void Notifier::send(const std::string& message) {
  int r = sd_notify(0, message.c_str());
  if (r < 0 && !warned_) {
    warned_ = true;  // once: a broken NOTIFY_SOCKET must not flood the log every second
    spdlog::warn("sd_notify failed: {}", std::strerror(-r));
  }
}

void Notifier::ready() { send("READY=1\nSTATUS=ready"); }

void Notifier::stopping() { send("STOPPING=1\nSTATUS=stopping: finishing in-flight transfers"); }

void Notifier::reloading() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  auto usec = static_cast<long long>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
  send(fmt::format("RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading configuration", usec));
}

void Notifier::status(std::string_view line) { send(fmt::format("STATUS={}", line)); }

void Notifier::watchdog() { send("WATCHDOG=1"); }

void Notifier::extend_timeout(std::chrono::microseconds extra) {
  send(fmt::format("EXTEND_TIMEOUT_USEC={}", extra.count()));
}

std::optional<std::chrono::microseconds> watchdog_interval() {
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) return std::chrono::microseconds(usec);
  return std::nullopt;
}

std::vector<int> take_listen_fds() {
  // unset_environment=1: the variables name our pid and fds; a worker process must not think they are its own.
  int n = sd_listen_fds(1);
  if (n < 0) {
    spdlog::warn("socket activation: {}", std::strerror(-n));
    return {};
  }
  std::vector<int> fds;
  for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; ++fd) {
    // systemd passes them without FD_CLOEXEC; worker processes must not inherit the listening socket.
    int flags = fcntl(fd, F_GETFD);
    if (flags >= 0) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
    fds.push_back(fd);
  }
  return fds;
}

}  // namespace fetchd::service
