// SPDX-License-Identifier: Apache-2.0
#include "fetchd/bench/control_client.hpp"

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <stdexcept>

namespace fetchd::bench {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::string_view kSubmitHead = R"({"op":"submit","jobs":[)";
constexpr std::string_view kSubmitTail = "]}";
constexpr std::size_t kReadChunk = 64 * 1024;
constexpr milliseconds kFirstConnectPause{1};
constexpr milliseconds kMaxConnectPause{50};

int poll_ms(Clock::time_point deadline, milliseconds tick) {
  auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp(left, milliseconds(0), tick).count());
}

std::string errno_text(int err) {
  return std::strerror(err);
}

// Fixed-width decimal field of `text` at [pos, pos + width).
std::optional<int> field(std::string_view text, std::size_t pos, std::size_t width) {
  int value = 0;
  const char* first = text.data() + pos;
  const char* last = first + width;
  if (std::any_of(first, last, [](char c) { return c < '0' || c > '9'; })) return std::nullopt;
  std::from_chars(first, last, value);
  return value;
}

}  // namespace

std::vector<std::string> encode_submit_lines(std::span<const WorkloadFile> files, bool with_checks,
                                             std::size_t max_line_bytes, std::size_t max_jobs) {
  std::vector<std::string> lines;
  std::string line;
  std::size_t jobs = 0;
  auto finish = [&] {
    line.append(kSubmitTail).push_back('\n');
    lines.push_back(std::move(line));
    line.clear();
    jobs = 0;
  };
  for (const auto& f : files) {
    nlohmann::json job = {{"url", f.url}, {"dest", f.name}};
    if (with_checks) {
      job["sha256"] = f.sha256;
      job["size"] = f.size;
    }
    const std::string text = job.dump();
    if (kSubmitHead.size() + text.size() + kSubmitTail.size() > max_line_bytes) {
      throw std::length_error(fmt::format("the submit job of {} does not fit in a request line of {} bytes",
                                          f.name, max_line_bytes));
    }
    if (jobs > 0 &&
        (jobs == max_jobs || line.size() + 1 + text.size() + kSubmitTail.size() > max_line_bytes)) {
      finish();
    }
    if (jobs == 0) {
      line.assign(kSubmitHead);
    } else {
      line.push_back(',');
    }
    line += text;
    ++jobs;
  }
  if (jobs > 0) finish();
  return lines;
}

std::optional<std::int64_t> parse_time_ms(std::string_view text) {
  // 2024-05-01T12:34:56.789Z
  constexpr std::string_view kShape = "0000-00-00T00:00:00.000Z";
  if (text.size() != kShape.size()) return std::nullopt;
  for (std::size_t i = 0; i < kShape.size(); ++i) {
    if (kShape[i] != '0' && text[i] != kShape[i]) return std::nullopt;
  }
  auto year = field(text, 0, 4);
  auto month = field(text, 5, 2);
  auto day = field(text, 8, 2);
  auto hour = field(text, 11, 2);
  auto minute = field(text, 14, 2);
  auto second = field(text, 17, 2);
  auto ms = field(text, 20, 3);
  if (!year || !month || !day || !hour || !minute || !second || !ms) return std::nullopt;
  if (*month < 1 || *month > 12 || *day < 1 || *day > 31 || *hour > 23 || *minute > 59 || *second > 60) {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = *year - 1900;
  tm.tm_mon = *month - 1;
  tm.tm_mday = *day;
  tm.tm_hour = *hour;
  tm.tm_min = *minute;
  tm.tm_sec = *second;
  const std::time_t secs = ::timegm(&tm);
  return static_cast<std::int64_t>(secs) * 1000 + *ms;
}

std::string reply_problem(const nlohmann::json& reply) {
  if (reply.is_object() && reply.value("ok", false)) return {};
  if (!reply.is_object() || !reply.contains("error") || !reply["error"].is_object()) {
    return fmt::format("unexpected reply {}", reply.dump().substr(0, 200));
  }
  const auto& e = reply["error"];
  return fmt::format("{}: {}", e.value("code", std::string("?")), e.value("message", std::string("?")));
}

std::optional<ControlClient> ControlClient::connect(const std::filesystem::path& path, milliseconds timeout,
                                                    const std::function<bool(milliseconds)>& pause,
                                                    std::string* error) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const std::string text = path.string();
  if (text.size() >= sizeof(address.sun_path)) {
    *error =
        fmt::format("the socket path {} is longer than a Unix socket allows ({} bytes; use a shorter --dir)",
                    text, sizeof(address.sun_path) - 1);
    return std::nullopt;
  }
  std::memcpy(address.sun_path, text.c_str(), text.size() + 1);
  const auto deadline = Clock::now() + timeout;
  auto step = kFirstConnectPause;
  while (true) {
    core::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) {
      *error = fmt::format("socket: {}", errno_text(errno));
      return std::nullopt;
    }
    int r = 0;
    do {
      r = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address));
    } while (r < 0 && errno == EINTR);
    if (r == 0) return ControlClient(std::move(fd));
    const int err = errno;
    // Not there yet (ENOENT), bound but not listening yet (ECONNREFUSED), or its backlog is full (EAGAIN).
    if (err != ENOENT && err != ECONNREFUSED && err != EAGAIN) {
      *error = fmt::format("connect to {}: {}", text, errno_text(err));
      return std::nullopt;
    }
    if (Clock::now() >= deadline) {
      *error = fmt::format("{} did not accept a connection within {} ms (last: {})", text, timeout.count(),
                           errno_text(err));
      return std::nullopt;
    }
    if (!pause(step)) {
      *error = fmt::format("stopped waiting for {}", text);
      return std::nullopt;
    }
    step = std::min(step * 2, kMaxConnectPause);
  }
}

PipelineResult ControlClient::pipeline(std::span<const std::string> lines, milliseconds idle_timeout,
                                       milliseconds tick, const KeepWaiting& keep_waiting) {
  PipelineResult result;
  result.replies.reserve(lines.size());
  std::size_t next_line = 0;
  std::size_t sent_of_line = 0;
  auto last_progress = Clock::now();
  auto last_tick = last_progress;
  bool started = false;
  char buffer[kReadChunk];
  std::size_t scanned = 0;  // of pending_: no '\n' before this

  while (result.replies.size() < lines.size()) {
    const bool sending = next_line < lines.size();
    pollfd p{fd_.get(), static_cast<short>(POLLIN | (sending ? POLLOUT : 0)), 0};
    const int r = ::poll(&p, 1, poll_ms(last_progress + idle_timeout, tick));
    if (r < 0 && errno != EINTR) {
      result.error = fmt::format("poll: {}", errno_text(errno));
      return result;
    }
    const auto now = Clock::now();
    if (r <= 0 || now - last_tick >= tick) {
      last_tick = now;
      if (!keep_waiting()) {
        result.error = fmt::format("stopped after {} of {} replies", result.replies.size(), lines.size());
        return result;
      }
      if (r <= 0 && now - last_progress >= idle_timeout) {
        result.error = fmt::format("no progress for {} ms after {} of {} replies", idle_timeout.count(),
                                   result.replies.size(), lines.size());
        return result;
      }
      if (r <= 0) continue;
    }

    if ((p.revents & POLLOUT) != 0 && sending) {
      while (next_line < lines.size()) {
        const auto& line = lines[next_line];
        if (!started) {
          result.first_sent_wall = std::chrono::system_clock::now();
          result.first_sent = Clock::now();
          started = true;
        }
        const ssize_t n =
            ::send(fd_.get(), line.data() + sent_of_line, line.size() - sent_of_line, MSG_NOSIGNAL);
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          result.error =
              fmt::format("send: {} after {} of {} requests", errno_text(errno), next_line, lines.size());
          return result;
        }
        last_progress = Clock::now();
        sent_of_line += static_cast<std::size_t>(n);
        if (sent_of_line == line.size()) {
          ++next_line;
          sent_of_line = 0;
        }
      }
    }

    if ((p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      while (true) {
        const ssize_t n = ::recv(fd_.get(), buffer, sizeof(buffer), 0);
        // A reset is a close with our requests unread: the same news.
        if (n < 0 && errno != ECONNRESET) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          result.error = fmt::format("recv: {} after {} of {} replies", errno_text(errno),
                                     result.replies.size(), lines.size());
          return result;
        }
        if (n <= 0) {
          result.error = fmt::format("the daemon closed the connection after {} of {} replies",
                                     result.replies.size(), lines.size());
          return result;
        }
        const auto received = Clock::now();
        last_progress = received;
        pending_.append(buffer, static_cast<std::size_t>(n));
        std::size_t start = 0;
        for (auto nl = pending_.find('\n', scanned); nl != std::string::npos;
             nl = pending_.find('\n', start)) {
          std::string_view reply(pending_.data() + start, nl - start);
          if (!reply.empty() && reply.back() == '\r') reply.remove_suffix(1);
          if (!reply.empty()) {
            result.replies.emplace_back(reply);
            result.last_received = received;
          }
          start = nl + 1;
        }
        pending_.erase(0, start);
        scanned = pending_.size();
        if (pending_.size() > kMaxReplyBytes) {
          result.error = fmt::format("a reply is longer than {} bytes", kMaxReplyBytes);
          return result;
        }
        if (result.replies.size() > lines.size()) {
          result.error = "more replies than requests";
          return result;
        }
        if (result.replies.size() == lines.size()) return result;
      }
    }
  }
  return result;
}

std::optional<nlohmann::json> ControlClient::request(const std::string& line, milliseconds timeout,
                                                     milliseconds tick, const KeepWaiting& keep_waiting,
                                                     std::string* error) {
  auto result = pipeline(std::span(&line, 1), timeout, tick, keep_waiting);
  if (!result.ok()) {
    *error = result.error;
    return std::nullopt;
  }
  auto reply = nlohmann::json::parse(result.replies.front(), nullptr, false);
  if (reply.is_discarded()) {
    *error = "a reply is not JSON";
    return std::nullopt;
  }
  if (auto problem = reply_problem(reply); !problem.empty()) {
    *error = std::move(problem);
    return std::nullopt;
  }
  return reply;
}

}  // namespace fetchd::bench
