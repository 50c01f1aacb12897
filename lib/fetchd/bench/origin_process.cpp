// SPDX-License-Identifier: Apache-2.0
#include "fetchd/bench/origin_process.hpp"

#include <fmt/format.h>

#include <stdexcept>

#include "fetchd/core/units.hpp"

namespace fetchd::bench {

namespace {

constexpr std::string_view kPrefix = "listening on ";
constexpr std::string_view kScheme = "http://";
constexpr unsigned kMaxPort = 65535;
constexpr std::chrono::milliseconds kExitWait{1000};

}  // namespace

std::optional<std::string> parse_listening_line(std::string_view line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
    line.remove_suffix(1);
  if (!line.starts_with(kPrefix)) return std::nullopt;
  std::string_view url = line.substr(kPrefix.size());
  if (!url.starts_with(kScheme)) return std::nullopt;
  auto authority = url.substr(kScheme.size());
  auto colon = authority.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  auto port = authority.substr(colon + 1);
  if (port.empty() || port.size() > 5) return std::nullopt;
  unsigned value = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value == 0 || value > kMaxPort) return std::nullopt;
  if (authority.substr(0, colon).find_first_of("/?# ") != std::string_view::npos) return std::nullopt;
  return std::string(url);
}

std::vector<std::string> origin_argv(const std::string& exe, std::chrono::milliseconds latency) {
  return {exe, "origin", "--host", "127.0.0.1", "--port", "0", "--latency", core::format_duration(latency)};
}

OriginProcess OriginProcess::start(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                                   const std::function<bool()>& cancelled) {
  auto child = ChildProcess::spawn(argv, ChildStdout::kPipe);
  auto line = read_first_line(child.stdout_fd(), timeout, cancelled);
  if (line.status == LineResult::Status::kCancelled) {
    throw std::runtime_error("interrupted while waiting for the origin to start");
  }
  if (!line.ok()) {
    std::string how;
    // At end of output the child is exiting, but may not be a zombie yet: give it a moment to be reaped.
    const auto wait =
        line.status == LineResult::Status::kEndOfOutput ? kExitWait : std::chrono::milliseconds(0);
    if (auto status = child.wait_for(wait)) how = fmt::format(" (it exited: {})", status->describe());
    throw std::runtime_error(fmt::format("origin did not announce its address within {}: {}{}",
                                         core::format_duration(timeout), line.text, how));
  }
  auto url = parse_listening_line(line.text);
  if (!url) {
    throw std::runtime_error(
        fmt::format("origin printed '{}' instead of 'listening on http://127.0.0.1:PORT'", line.text));
  }
  // Nothing else is read from its stdout: closing our end means a later write gets EPIPE (fetchd ignores
  // SIGPIPE) instead of blocking forever on a full pipe.
  child.close_stdout();
  return OriginProcess(std::move(child), std::move(*url));
}

std::optional<std::string> OriginProcess::exited() {
  if (!exit_ && !child_.reaped()) exit_ = child_.wait_for(std::chrono::milliseconds(0));
  if (exit_) return exit_->describe();
  return std::nullopt;
}

ExitStatus OriginProcess::stop() {
  if (!exit_) exit_ = child_.stop();
  return *exit_;
}

}  // namespace fetchd::bench
