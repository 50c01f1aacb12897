// SPDX-License-Identifier: Apache-2.0
#pragma once
// fetchctl's subcommands: each opens one connection to fetchd, sends its request(s), prints the result on
// stdout and returns the process exit code. Errors talking to the daemon arrive as ClientError (client.hpp);
// main maps them with exit_code_for(). Main thread only (watch blocks SIGINT/SIGTERM for itself).

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "client.hpp"
#include "requests.hpp"

namespace fetchd::ctl {

// Exit codes (sysexits.h where one fits).
inline constexpr int kExitOk = 0;
inline constexpr int kExitRejected = 1;      // the daemon answered ok=false (message on stderr)
inline constexpr int kExitUsage = 2;         // wrong command line (CLI11's message)
inline constexpr int kExitUnavailable = 69;  // EX_UNAVAILABLE: cannot connect, or the connection dropped
inline constexpr int kExitSoftware = 70;     // EX_SOFTWARE: internal error
inline constexpr int kExitIoError = 74;      // EX_IOERR: cannot read stdin or write stdout
inline constexpr int kExitTempFail = 75;     // EX_TEMPFAIL: no reply within --timeout
inline constexpr int kExitProtocol = 76;     // EX_PROTOCOL: the daemon's reply does not follow the protocol

inline constexpr std::chrono::milliseconds kDefaultTimeout = std::chrono::seconds(30);
// reload answers once the new configuration is in force, which may mean loading a long job list.
inline constexpr std::chrono::milliseconds kReloadTimeout = std::chrono::seconds(120);
// Batches of one submit that may be on their way at once; bounds memory and the daemon's reply backlog.
inline constexpr std::size_t kMaxSubmitsInFlight = 8;

struct GlobalOptions {
  Endpoint endpoint;
  bool json = false;
  std::optional<std::chrono::milliseconds> timeout;  // --timeout; otherwise each command's default
  std::chrono::milliseconds timeout_or(std::chrono::milliseconds fallback) const {
    return timeout.value_or(fallback);
  }
};

struct SubmitOptions {
  std::vector<std::string> urls;  // empty: read URLs from `input`
  JobTemplate job;
  bool quiet = false;  // one summary line ("N submitted, N existing, N conflicts") instead of a line per job
};

struct ListOptions {
  std::optional<std::string> state;
  std::optional<std::int64_t> limit;  // all jobs when unset
};

int run_submit(const GlobalOptions& g, const SubmitOptions& options, std::FILE* input);
int run_status(const GlobalOptions& g, std::int64_t id);
int run_cancel(const GlobalOptions& g, std::int64_t id);
int run_list(const GlobalOptions& g, const ListOptions& options);
int run_stats(const GlobalOptions& g);
int run_reload(const GlobalOptions& g);
int run_ping(const GlobalOptions& g);
int run_watch(const GlobalOptions& g);  // watch.cpp

int exit_code_for(Failure failure);

// Thrown by write_stdout() when stdout's reader went away (EPIPE: `fetchctl list | head`). That is the end of
// the output, not an error: main exits 0, as `git log | head` does. (SIGPIPE is ignored, so the write fails
// instead of killing the process with 141.)
class StdoutClosed : public std::exception {
 public:
  const char* what() const noexcept override { return "stdout closed by its reader"; }
};

// Writes to stdout (buffered; flush = now). Throws StdoutClosed on EPIPE and std::system_error on any other
// write error (exit 74).
void write_stdout(std::string_view text, bool flush = false);
// Whether a write to stdout met EPIPE (the reader went away), caught or not.
bool stdout_closed();

// Prints an ok=false reply as "fetchctl: <code>: <message>" (one stderr line per message line, so each stays
// meaningful in the journal when `systemctl reload` runs fetchctl). `global` renames "jobs[N]" (submit
// batches).
void print_daemon_error(const nlohmann::json& reply, const std::vector<std::size_t>* global = nullptr,
                        const std::string& context = {});

}  // namespace fetchd::ctl
