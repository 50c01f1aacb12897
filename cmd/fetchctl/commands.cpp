// SPDX-License-Identifier: Apache-2.0
#include "commands.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <string_view>
#include <system_error>

#include "format.hpp"

namespace fetchd::ctl {

namespace {

using nlohmann::json;
using nlohmann::ordered_json;

std::string dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

void out(std::string_view text) {
  write_stdout(text);
}

[[noreturn]] void protocol_error(const Endpoint& endpoint, std::string_view what) {
  throw ClientError(Failure::kProtocol, fmt::format("fetchd on {} sent {}", endpoint.display, what));
}

// The "result" object of an ok reply (its absence is a protocol error).
const json& result_of(const json& reply, const Endpoint& endpoint) {
  auto it = reply.find("result");
  if (it == reply.end() || !it->is_object()) protocol_error(endpoint, "an ok reply without a result object");
  return *it;
}

// Sends one request and returns the reply's result; nullopt when the daemon said no (already printed).
std::optional<json> call(const GlobalOptions& g, const ordered_json& request,
                         std::chrono::milliseconds timeout) {
  Connection connection = Connection::open(g.endpoint, timeout);
  connection.queue(request.dump());
  json reply = read_reply(connection, timeout);
  if (!reply["ok"].get<bool>()) {
    print_daemon_error(reply);
    return std::nullopt;
  }
  return result_of(reply, g.endpoint);
}

const json& job_of(const json& result, const Endpoint& endpoint) {
  auto it = result.find("job");
  if (it == result.end() || !it->is_object()) protocol_error(endpoint, "a result without a job object");
  return *it;
}

void print_job_table(const json& job) {
  Table table = job_table();
  auto row = job_row(job);
  table.fit({row});
  out(table.header());
  out(table.row(row));
  out(job_details(job));
}

int run_job_op(const GlobalOptions& g, const char* op, std::int64_t id) {
  ordered_json request{{"op", op}, {"id", id}};
  auto result = call(g, request, g.timeout_or(kDefaultTimeout));
  if (!result) return kExitRejected;
  const json& job = job_of(*result, g.endpoint);
  if (g.json) {
    out(dump(*result) + "\n");
  } else {
    print_job_table(job);
  }
  return kExitOk;
}

// Where one job of a submit came from: its index among all URLs and its stdin line (0 for arguments).
struct Batch {
  std::vector<std::size_t> index;
  std::vector<std::size_t> line;
  std::vector<std::string> url;  // redacted, for the human output
};

}  // namespace

namespace {
bool g_stdout_closed = false;  // main thread only, like all of fetchctl's output
}  // namespace

bool stdout_closed() {
  return g_stdout_closed;
}

void write_stdout(std::string_view text, bool flush) {
  errno = 0;
  bool ok = std::fwrite(text.data(), 1, text.size(), stdout) == text.size();
  if (ok && flush) ok = std::fflush(stdout) == 0;
  if (ok && !std::ferror(stdout)) return;
  const int err = errno;
  if (err == EPIPE) {
    g_stdout_closed = true;
    throw StdoutClosed();
  }
  throw std::system_error(err, std::generic_category(), "cannot write to stdout");
}

int exit_code_for(Failure failure) {
  switch (failure) {
    case Failure::kUnavailable:
      return kExitUnavailable;
    case Failure::kTimeout:
      return kExitTempFail;
    case Failure::kProtocol:
      return kExitProtocol;
  }
  return kExitSoftware;
}

void print_daemon_error(const json& reply, const std::vector<std::size_t>* global,
                        const std::string& context) {
  std::string code = "error";
  std::string message = "(no message)";
  if (auto it = reply.find("error"); it != reply.end() && it->is_object()) {
    code = json_string(*it, "code").value_or(code);
    message = json_string(*it, "message").value_or(message);
  }
  if (global != nullptr) message = rewrite_job_indexes(message, *global);
  std::string_view rest = message;
  bool first = true;
  while (first || !rest.empty()) {
    auto nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    if (!line.empty() || first) {
      std::string text = sanitize(line);
      if (first && !context.empty()) text += " (" + context + ")";
      fmt::print(stderr, "fetchctl: {}: {}\n", sanitize(code), text);
    }
    first = false;
  }
}

int run_submit(const GlobalOptions& g, const SubmitOptions& options, std::FILE* input) {
  const bool from_stdin = options.urls.empty();
  const auto timeout = g.timeout_or(kDefaultTimeout);
  Connection connection = Connection::open(g.endpoint, timeout);
  if (from_stdin && ::isatty(::fileno(input)) == 1)
    fmt::print(stderr, "fetchctl: reading URLs from stdin, one per line (end with Ctrl-D)\n");

  std::size_t arg_pos = 0;
  std::size_t line_no = 0;
  char* buffer = nullptr;
  std::size_t capacity = 0;
  struct FreeBuffer {
    char*& p;
    ~FreeBuffer() { std::free(p); }
  } free_buffer{buffer};
  auto next_url = [&](std::string& url, std::size_t& line) {
    if (!from_stdin) {
      if (arg_pos == options.urls.size()) return false;
      url = options.urls[arg_pos++];
      line = 0;
      return true;
    }
    for (;;) {
      errno = 0;
      ssize_t n = ::getline(&buffer, &capacity, input);
      if (n < 0) {
        if (std::ferror(input)) throw std::system_error(errno, std::generic_category(), "cannot read stdin");
        return false;
      }
      ++line_no;
      std::string_view u = url_from_line(std::string_view(buffer, static_cast<std::size_t>(n)));
      if (u.empty()) continue;
      url.assign(u);
      line = line_no;
      return true;
    }
  };

  // Every job is submitted even when stdout's reader went away (`fetchctl submit < urls | head`): only the
  // printing stops, and the summary still goes to stderr.
  bool stdout_closed = false;
  auto print = [&](std::string_view text) {
    if (stdout_closed) return;
    try {
      out(text);
    } catch (const StdoutClosed&) {
      stdout_closed = true;
    }
  };
  std::deque<Batch> in_flight;
  SubmitBatch batch;
  Batch current;
  std::size_t seen = 0, created = 0, existing = 0, conflicts = 0, rejected = 0;
  const bool per_job = !options.quiet;  // a line (or JSON object) per job
  bool exhausted = false;
  bool first_json = true;
  int rc = kExitOk;
  auto where = [&](std::size_t index, std::size_t line) {
    return line > 0 ? fmt::format("stdin line {}", line) : fmt::format("URL {}", index + 1);
  };
  auto send_batch = [&] {
    connection.queue(batch.finish());
    connection.send_now();
    in_flight.push_back(std::move(current));
    current = Batch{};
  };
  for (;;) {
    while (!exhausted && in_flight.size() < kMaxSubmitsInFlight) {
      std::string url;
      std::size_t line = 0;
      if (!next_url(url, line)) {
        exhausted = true;
        if (!batch.empty()) send_batch();
        break;
      }
      std::size_t index = seen++;
      std::string job = make_job(url, options.job).dump(-1, ' ', false, json::error_handler_t::replace);
      if (!SubmitBatch::fits_alone(job)) {
        fmt::print(stderr, "fetchctl: {}: the job is larger than one request may be ({} bytes)\n",
                   where(index, line), kMaxRequestLine);
        ++rejected;
        rc = kExitRejected;
        continue;
      }
      if (!batch.try_add(job)) {
        send_batch();
        batch.try_add(job);  // an empty batch takes any job that fits_alone
      }
      current.index.push_back(index);
      current.line.push_back(line);
      if (per_job && !g.json) current.url.push_back(sanitize(redact_url(url)));
    }
    if (in_flight.empty()) break;

    json reply = read_reply(connection, timeout);
    Batch done = std::move(in_flight.front());
    in_flight.pop_front();
    const json* jobs = nullptr;
    if (!reply["ok"].get<bool>()) {
      std::string context;
      auto error = reply.find("error");
      if (error != reply.end() && error->is_object()) {
        auto i = first_job_index(json_string(*error, "message").value_or(""));
        if (i && *i < done.line.size() && done.line[*i] > 0)
          context = fmt::format("stdin line {}", done.line[*i]);
      }
      print_daemon_error(reply, &done.index, context);
      rc = kExitRejected;
      // A conflict is not all or nothing: the daemon stored the other jobs and lists each one's outcome.
      if (error != reply.end() && error->is_object() && json_string(*error, "code") == "conflict") {
        if (auto it = error->find("jobs");
            it != error->end() && it->is_array() && it->size() == done.index.size())
          jobs = &*it;
      }
      if (jobs == nullptr) {
        rejected += done.index.size();
        continue;
      }
    } else {
      const json& result = result_of(reply, g.endpoint);
      auto it = result.find("jobs");
      if (it == result.end() || !it->is_array() || it->size() != done.index.size())
        protocol_error(g.endpoint, "a submit result whose jobs do not match the request");
      jobs = &*it;
    }
    for (std::size_t i = 0; i < jobs->size(); ++i) {
      const json& j = (*jobs)[i];
      const bool is_conflict = json_string(j, "error") == "conflict";
      auto e = j.is_object() ? j.find("existing") : j.end();
      bool is_existing = e != j.end() && e->is_boolean() && e->get<bool>();
      (is_conflict ? conflicts : is_existing ? existing : created)++;
      if (!per_job) continue;
      if (g.json) {
        print(first_json ? "{\"jobs\":[\n" : ",\n");
        print(dump(j));
        first_json = false;
      } else if (is_conflict) {
        auto with = json_int(j, "conflicts_with");
        print(fmt::format("-  conflict with job {}  {}\n", with ? std::to_string(*with) : "-", done.url[i]));
      } else {
        auto id = json_int(j, "id");
        print(fmt::format("{}  {}{}  {}\n", id ? std::to_string(*id) : "-",
                          sanitize(json_string(j, "state").value_or("-")), is_existing ? " (existing)" : "",
                          done.url[i]));
      }
    }
  }
  if (seen == 0) {
    fmt::print(stderr, "fetchctl: no URLs given (as arguments or on stdin)\n");
    return kExitUsage;
  }
  if (!per_job) {
    if (g.json) {
      print(dump(json{{"submitted", created},
                      {"existing", existing},
                      {"conflicts", conflicts},
                      {"rejected", rejected}}) +
            "\n");
    } else {
      print(fmt::format("{} submitted, {} existing, {} conflicts{}\n", created, existing, conflicts,
                        rejected > 0 ? fmt::format(", {} rejected", rejected) : ""));
    }
    return rc;
  }
  if (g.json) print(first_json ? "{\"jobs\":[]}\n" : "\n]}\n");
  if (!g.json && seen > 1) {
    fmt::print(stderr, "fetchctl: submitted {} of {} jobs ({} new, {} existing){}{}\n", created + existing,
               seen, created, existing, conflicts > 0 ? fmt::format(", {} conflicts", conflicts) : "",
               rejected > 0 ? fmt::format(", {} rejected", rejected) : "");
  }
  return rc;
}

int run_status(const GlobalOptions& g, std::int64_t id) {
  return run_job_op(g, "status", id);
}

int run_cancel(const GlobalOptions& g, std::int64_t id) {
  return run_job_op(g, "cancel", id);
}

int run_list(const GlobalOptions& g, const ListOptions& options) {
  const auto timeout = g.timeout_or(kDefaultTimeout);
  Connection connection = Connection::open(g.endpoint, timeout);
  Table table = job_table();
  std::optional<std::int64_t> after;
  std::int64_t printed = 0;
  std::optional<std::int64_t> total;
  bool more = true;
  bool header_done = false;
  if (g.json) out("[");
  // Keyset paging: each page starts after the last id of the previous one, so a job list that changes
  // meanwhile never shows a job twice. Bounded: next_after must grow, so the loop ends within (max id) pages.
  while (more) {
    std::int64_t limit = kMaxListLimit;
    if (options.limit) limit = std::min(limit, *options.limit - printed);
    if (limit <= 0) break;
    ordered_json request{{"op", "list"}};
    if (options.state) request["state"] = *options.state;
    if (after) request["after"] = *after;
    request["limit"] = limit;
    connection.queue(request.dump());
    json reply = read_reply(connection, timeout);
    if (!reply["ok"].get<bool>()) {
      if (g.json) out("]\n");
      print_daemon_error(reply);
      return kExitRejected;
    }
    const json& result = result_of(reply, g.endpoint);
    auto jobs = result.find("jobs");
    if (jobs == result.end() || !jobs->is_array()) protocol_error(g.endpoint, "a list result without jobs");
    if (static_cast<std::int64_t>(jobs->size()) > limit)
      protocol_error(g.endpoint, "more jobs than the limit asked for");
    total = json_int(result, "total");
    if (g.json) {
      for (const json& job : *jobs) {
        out(printed++ == 0 ? "\n" : ",\n");
        out(dump(job));
      }
    } else {
      std::vector<std::vector<std::string>> rows;
      rows.reserve(jobs->size());
      for (const json& job : *jobs) rows.push_back(job_row(job));
      table.fit(rows);
      if (!header_done) out(table.header());
      header_done = true;
      for (const auto& row : rows) out(table.row(row));
      printed += static_cast<std::int64_t>(rows.size());
    }
    auto next = result.find("next_after");
    if (next == result.end() || next->is_null()) {
      more = false;
    } else {
      auto n = json_int(result, "next_after");
      if (!n || (after && *n <= *after))
        protocol_error(g.endpoint, "a list cursor (next_after) that does not advance");
      after = *n;
    }
  }
  if (g.json) {
    out(printed == 0 ? "]\n" : "\n]\n");
  } else {
    if (!header_done) out(table.header());
    if (more && total && *total > printed) {
      fmt::print(stderr, "fetchctl: showing {} of {} jobs (--limit)\n", printed, *total);
    }
  }
  return kExitOk;
}

int run_stats(const GlobalOptions& g) {
  auto result = call(g, ordered_json{{"op", "stats"}}, g.timeout_or(kDefaultTimeout));
  if (!result) return kExitRejected;
  out(g.json ? dump(*result) + "\n" : format_stats(*result));
  return kExitOk;
}

int run_reload(const GlobalOptions& g) {
  auto result = call(g, ordered_json{{"op", "reload"}}, g.timeout_or(kReloadTimeout));
  if (!result) return kExitRejected;
  if (g.json) {
    out(dump(*result) + "\n");
  } else {
    auto added = json_int(*result, "jobs_added");
    out(fmt::format("fetchd reloaded its configuration{}\n",
                    added ? fmt::format(" ({} jobs added)", *added) : std::string()));
  }
  return kExitOk;
}

int run_ping(const GlobalOptions& g) {
  auto start = std::chrono::steady_clock::now();
  auto result = call(g, ordered_json{{"op", "ping"}}, g.timeout_or(kDefaultTimeout));
  if (!result) return kExitRejected;
  auto elapsed = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (g.json) {
    out(dump(*result) + "\n");
  } else {
    auto pid = json_int(*result, "pid");
    out(fmt::format("fetchd {} (pid {}) on {}: answered in {:.1f} ms\n",
                    sanitize(json_string(*result, "version").value_or("?")), pid ? std::to_string(*pid) : "?",
                    sanitize(g.endpoint.display), elapsed));
  }
  return kExitOk;
}

}  // namespace fetchd::ctl
