// SPDX-License-Identifier: Apache-2.0
// fetchctl: the command-line client of fetchd's control socket (docs/protocol.md). Parses the command line
// with CLI11 and runs one subcommand from commands.hpp; links neither libcurl nor libuv.

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "commands.hpp"
#include "fetchd/core/units.hpp"
#include "fetchd/core/version.hpp"

namespace {

using namespace fetchd::ctl;

constexpr const char* kFooter =
    "Exit codes: 0 ok, 1 fetchd refused the request, 2 usage error, 69 fetchd unreachable or the connection "
    "dropped, 74 cannot read stdin or write stdout, 75 no reply within --timeout, 76 malformed reply. A "
    "reader that stops reading (| head) ends the output; that is not an error.";

// CLI11 validators with fetchctl's wording.
CLI::Validator duration_validator(bool allow_zero = false) {
  return CLI::Validator(
      [allow_zero](std::string& text) {
        std::string error;
        auto d = fetchd::core::parse_duration(text, &error);
        if (!d) return error;
        if (d->count() < 0 || (d->count() == 0 && !allow_zero))
          return std::string("the timeout must be longer than 0");
        return std::string();
      },
      "");
}

CLI::Validator size_validator() {
  return CLI::Validator(
      [](std::string& text) {
        std::string error;
        return fetchd::core::parse_size(text, &error) ? std::string() : error;
      },
      "");
}

CLI::Validator header_validator() {
  return CLI::Validator(
      [](std::string& text) {
        std::string error;
        return parse_header_arg(text, &error) ? std::string() : error;
      },
      "");
}

CLI::Validator positive_validator() {
  return CLI::Validator(
      [](std::string& text) {
        std::int64_t n = 0;
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
        if (ec != std::errc() || end != text.data() + text.size() || n <= 0)
          return fmt::format("'{}' is not a positive number", text);
        return std::string();
      },
      "");
}

CLI::Validator job_id_validator() {
  return CLI::Validator(
      [](std::string& text) {
        std::int64_t id = -1;
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
        if (ec != std::errc() || end != text.data() + text.size() || id <= 0)
          return fmt::format("'{}' is not a job id (a positive number like 12)", text);
        return std::string();
      },
      "");
}

int usage_error(const std::string& message) {
  fmt::print(stderr, "fetchctl: {}\nRun with --help for more information.\n", message);
  return kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  // A reader that goes away (`fetchctl list | head`) makes writes fail with EPIPE instead of killing us with
  // SIGPIPE: write_stdout() turns that into the end of the output (exit 0). The socket uses MSG_NOSIGNAL.
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{
      "fetchctl: control a running fetchd (submit downloads, list and watch jobs, reload the daemon)"};
  app.set_version_flag("--version", std::string("fetchctl ") + fetchd::core::kVersion);
  app.require_subcommand(1);
  app.fallthrough();  // global options may come after the subcommand too: `fetchctl list --json`
  app.footer(kFooter);

  std::string socket(kDefaultSocket);
  std::string timeout_text;
  bool json = false;
  app.add_option("--socket", socket, "fetchd's control socket: a path, or tcp:127.0.0.1:PORT")
      ->type_name("PATH")
      ->envname("FETCHD_SOCKET")
      ->capture_default_str();
  app.add_flag("--json", json, "print the daemon's results as JSON, for scripts");
  app.add_option("--timeout", timeout_text, "how long to wait for a reply (default 30s; reload 120s)")
      ->type_name("DURATION")
      ->check(duration_validator());

  SubmitOptions submit;
  std::string size_text;
  std::vector<std::string> header_args;
  auto* submit_cmd =
      app.add_subcommand("submit", "add download jobs; without URLs, read them from stdin (one per line)");
  submit_cmd->add_option("urls", submit.urls, "http(s) URLs to download")->type_name("URL");
  submit_cmd->add_flag("-q,--quiet", submit.quiet,
                       "print one line: N submitted, N existing, N conflicts (with --json, one object)");
  auto* dest_opt = submit_cmd->add_option("--dest", submit.job.dest,
                                          "file name relative to the output dir (one URL only)");
  auto* sha_opt =
      submit_cmd->add_option("--sha256", submit.job.sha256, "expected SHA-256, 64 hex digits (one URL only)");
  auto* size_opt =
      submit_cmd->add_option("--size", size_text, "expected size, e.g. 4096 or 12MiB (one URL only)")
          ->type_name("SIZE")
          ->check(size_validator());
  submit_cmd->add_option("--priority", submit.job.priority, "higher runs first");
  auto* key_opt =
      submit_cmd->add_option("--key", submit.job.key,
                             "idempotency key: submitting it again returns the existing job (one URL only)");
  submit_cmd->add_option("-H,--header", header_args, "request header 'Name: value' (repeatable)")
      ->type_name("'NAME: VALUE'")
      ->check(header_validator());
  // The job's own options (docs/protocol.md); checked here for a quick usage error, and again by the daemon.
  std::string sha512;
  std::string max_size_text;
  std::string rate_text;
  std::string job_timeout_text;
  int retries = 0;
  auto* sha512_opt =
      submit_cmd->add_option("--sha512", sha512, "expected SHA-512, 128 hex digits (one URL only)");
  auto* max_size_opt = submit_cmd->add_option("--max-size", max_size_text, "refuse bodies larger than this")
                           ->type_name("SIZE")
                           ->check(size_validator());
  auto* rate_opt = submit_cmd->add_option("--rate", rate_text, "this job's bandwidth cap per second, e.g. 1MiB")
                       ->type_name("SIZE")
                       ->check(size_validator());
  auto* job_timeout_opt =
      submit_cmd->add_option("--job-timeout", job_timeout_text, "total time of one attempt (0 = no limit)")
          ->type_name("DURATION")
          ->check(duration_validator(true));
  auto* retries_opt = submit_cmd->add_option("--retries", retries, "attempts after the first")
                          ->type_name("N")
                          ->check(CLI::NonNegativeNumber);

  std::int64_t status_id = 0;
  auto* status_cmd = app.add_subcommand("status", "show one job");
  status_cmd->add_option("id", status_id, "job id")->required()->type_name("ID")->check(job_id_validator());

  ListOptions list;
  auto* list_cmd = app.add_subcommand("list", "list jobs (all of them unless --limit)");
  list_cmd->add_option("--state", list.state, "only jobs in this state")
      ->check(CLI::IsMember({"queued", "running", "done", "failed", "cancelled"}));
  list_cmd->add_option("--limit", list.limit, "at most this many jobs")
      ->type_name("N")
      ->check(positive_validator());

  std::int64_t cancel_id = 0;
  auto* cancel_cmd = app.add_subcommand("cancel", "cancel a job");
  cancel_cmd->add_option("id", cancel_id, "job id")->required()->type_name("ID")->check(job_id_validator());

  auto* stats_cmd = app.add_subcommand("stats", "show the daemon's counters and throughput");
  auto* watch_cmd = app.add_subcommand("watch", "follow transfers live (Ctrl-C ends)");
  auto* reload_cmd = app.add_subcommand("reload", "re-read the configuration; fails when it has errors");
  auto* ping_cmd = app.add_subcommand("ping", "check that fetchd answers");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }

  GlobalOptions g;
  std::string error;
  auto endpoint = parse_endpoint(socket, &error);
  if (!endpoint) return usage_error(fmt::format("--socket {}: {}", socket, error));
  g.endpoint = *endpoint;
  g.json = json;
  // Capped at a year: deadlines are steady_clock time points, and "1000000d" would overflow them.
  if (!timeout_text.empty())
    g.timeout = std::min<std::chrono::milliseconds>(*fetchd::core::parse_duration(timeout_text),
                                                    std::chrono::hours(24 * 365));

  int rc = kExitSoftware;
  try {
    if (submit_cmd->parsed()) {
      // These describe one file, so they make no sense for a list of URLs.
      for (auto* opt : {dest_opt, sha_opt, sha512_opt, size_opt, key_opt}) {
        if (opt->count() > 0 && submit.urls.size() != 1)
          return usage_error(fmt::format("{} needs exactly one URL on the command line", opt->get_name()));
      }
      if (!size_text.empty()) submit.job.size = fetchd::core::parse_size(size_text);
      auto& options = submit.job.options;
      if (sha512_opt->count() > 0) options["sha512"] = sha512;
      if (job_timeout_opt->count() > 0) options["timeout"] = job_timeout_text;
      if (max_size_opt->count() > 0) options["max_size"] = max_size_text;
      if (rate_opt->count() > 0) options["rate"] = rate_text;
      if (retries_opt->count() > 0) options["retries"] = retries;
      for (const auto& h : header_args) {
        auto header = parse_header_arg(h, nullptr);
        for (const auto& [name, value] : submit.job.headers) {
          if (CLI::detail::to_lower(name) == CLI::detail::to_lower(header->first))
            return usage_error(fmt::format("header '{}' is given twice", header->first));
        }
        submit.job.headers.push_back(*header);
      }
      rc = run_submit(g, submit, stdin);
    } else if (status_cmd->parsed()) {
      rc = run_status(g, status_id);
    } else if (list_cmd->parsed()) {
      rc = run_list(g, list);
    } else if (cancel_cmd->parsed()) {
      rc = run_cancel(g, cancel_id);
    } else if (stats_cmd->parsed()) {
      rc = run_stats(g);
    } else if (watch_cmd->parsed()) {
      rc = run_watch(g);
    } else if (reload_cmd->parsed()) {
      rc = run_reload(g);
    } else if (ping_cmd->parsed()) {
      rc = run_ping(g);
    }
  } catch (const StdoutClosed&) {
    return kExitOk;
  } catch (const ClientError& e) {
    std::fflush(stdout);
    fmt::print(stderr, "fetchctl: {}\n", e.what());
    return exit_code_for(e.failure());
  } catch (const std::system_error& e) {
    std::fflush(stdout);
    fmt::print(stderr, "fetchctl: {}\n", e.what());
    return kExitIoError;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "fetchctl: internal error: {}\n", e.what());
    return kExitSoftware;
  }
  errno = 0;
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    if (errno == EPIPE || stdout_closed()) return rc;  // the reader went away: the end of the output
    fmt::print(stderr, "fetchctl: cannot write to stdout\n");
    return kExitIoError;
  }
  return rc;
}
