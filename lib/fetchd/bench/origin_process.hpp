// SPDX-License-Identifier: Apache-2.0
#pragma once
// The embedded origin as bench's child process (`fetchd origin`): started, its address read from the first
// line it prints, and stopped with SIGTERM and reaped at the end, on errors too (the destructor). Thread: the
// thread that started it.

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fetchd/bench/child_process.hpp"

namespace fetchd::bench {

// "listening on http://127.0.0.1:8080" -> "http://127.0.0.1:8080". Anything else (a path after the port, no
// port, another scheme) -> std::nullopt. A trailing '\r' or blanks are ignored.
std::optional<std::string> parse_listening_line(std::string_view line);

// `exe origin --host 127.0.0.1 --port 0 --latency <latency>`
std::vector<std::string> origin_argv(const std::string& exe, std::chrono::milliseconds latency);

class OriginProcess {
 public:
  static constexpr std::chrono::milliseconds kStartupTimeout{10'000};

  // Starts argv and waits up to `timeout` for its address. Throws std::runtime_error saying what went wrong
  // (nothing printed in time, exited first and how, printed something else); the child is then stopped.
  // `cancelled` is asked after each signal, so that ^C does not wait for the timeout.
  static OriginProcess start(const std::vector<std::string>& argv,
                             std::chrono::milliseconds timeout = kStartupTimeout,
                             const std::function<bool()>& cancelled = {});

  const std::string& base_url() const { return base_url_; }
  pid_t pid() const { return child_.pid(); }
  // Why the origin is gone ("exit 1", "signal 9 (Killed)") if it exited since; std::nullopt while it runs.
  std::optional<std::string> exited();
  // SIGTERM and reap (SIGKILL after the grace period). Later calls return the first result.
  ExitStatus stop();

 private:
  OriginProcess(ChildProcess child, std::string base_url)
      : child_(std::move(child)), base_url_(std::move(base_url)) {}

  ChildProcess child_;
  std::string base_url_;
  std::optional<ExitStatus> exit_;
};

}  // namespace fetchd::bench
