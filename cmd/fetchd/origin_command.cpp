// SPDX-License-Identifier: Apache-2.0
// `fetchd origin`: runs the embedded origin server (lib/fetchd/origin) as a process, for `fetchd bench` and
// by hand. The first stdout line is exactly "listening on http://HOST:PORT" (bench parses it); logs go to
// stderr. Serves until SIGTERM or SIGINT, then closes every handle and exits 0.

#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>

#include "commands.hpp"
#include "fetchd/core/units.hpp"
#include "fetchd/origin/origin.hpp"
#include "fetchd/uv/handle.hpp"
#include "fetchd/uv/loop.hpp"
#include "logging.hpp"

namespace fetchd::cmd {

namespace {

struct OriginArgs {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::string latency = "0";
  std::string log_level = "info";
};

// Thousands of simultaneous connections need more descriptors than the usual soft limit of 1024. (Not
// raise_fd_limit() from logging.hpp: its advice is about transfers.)
void raise_nofile_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    spdlog::warn("getrlimit(RLIMIT_NOFILE): {}", std::strerror(errno));
    return;
  }
  if (limit.rlim_cur == limit.rlim_max) return;
  const auto soft = limit.rlim_cur;
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    spdlog::warn("setrlimit(RLIMIT_NOFILE, {}): {}", limit.rlim_max, std::strerror(errno));
    return;
  }
  spdlog::info("RLIMIT_NOFILE raised from {} to {}", soft, limit.rlim_max);
}

int run_origin(const OriginArgs& args) {
  setup_logging(args.log_level);
  std::string error;
  auto latency = core::parse_duration(args.latency, &error);
  if (!latency) {
    std::cerr << "fetchd origin: --latency: " << error << "\n";
    return kExitUsage;
  }
  raise_nofile_limit();

  origin::OriginOptions options;
  options.host = args.host;
  options.port = args.port;
  options.latency = *latency;

  int exit_code = kExitOk;
  uv::Loop loop;
  {
    origin::Origin server(loop.get(), options);
    uv::Signal sigterm(loop.get());
    uv::Signal sigint(loop.get());
    auto stop = [&](int signum) {
      spdlog::info("origin: {} received, shutting down", signum == SIGTERM ? "SIGTERM" : "SIGINT");
      server.close();
      sigterm.close();
      sigint.close();
    };
    sigterm.start(SIGTERM, stop);
    sigint.start(SIGINT, stop);

    std::printf("listening on %s\n", server.url("").c_str());
    std::fflush(stdout);

    loop.run();
    const auto stats = server.stats();
    spdlog::info("origin: stopped: {} connections, {} requests, {} bytes sent", stats.connections_total,
                 stats.requests_total, stats.bytes_sent);
  }
  if (int rc = loop.close(); rc != 0) {
    spdlog::error("origin: the loop did not close cleanly (rc {})", rc);
    exit_code = kExitSoftware;
  }
  return exit_code;
}

}  // namespace

void register_origin(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<OriginArgs>();
  auto* sub = app.add_subcommand("origin", "Run the embedded HTTP/1.1 origin server (for bench and tests)");
  sub->add_option("--host", args->host, "Numeric address to bind (127.0.0.1, ::1)")->capture_default_str();
  sub->add_option("--port", args->port, "TCP port; 0 picks an ephemeral one")->capture_default_str();
  sub->add_option("--latency", args->latency, "Delay before every response (250ms, 1s)")
      ->capture_default_str();
  sub->add_option("--log-level", args->log_level, "trace|debug|info|warn|error|off")->capture_default_str();
  sub->callback([&exit_code, args] {
    try {
      exit_code = run_origin(*args);
    } catch (const std::exception& e) {
      spdlog::error("origin: {}", e.what());
      exit_code = kExitSoftware;
    }
  });
}

}  // namespace fetchd::cmd
