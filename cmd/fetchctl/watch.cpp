// SPDX-License-Identifier: Apache-2.0
// `fetchctl watch`: follows the daemon's event stream. On a terminal a live display (one bar per running job
// and a totals line) redrawn at most 10 times a second; otherwise (a pipe, a file, --json) one line per
// event. SIGINT (Ctrl-C) and SIGTERM end it cleanly: they are blocked and read from a signalfd that poll()
// watches next to the socket, so the terminal is always restored.
#include <fmt/format.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <system_error>

#include "commands.hpp"
#include "format.hpp"
#include "watch_view.hpp"

namespace fetchd::ctl {

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr std::chrono::milliseconds kFrame{100};  // at most ~10 redraws per second

void write_now(std::string_view text) {
  write_stdout(text, /*flush=*/true);
}

struct TerminalSize {
  std::size_t columns = 80;
  std::size_t rows = 24;
};

TerminalSize terminal_size() {
  TerminalSize size;
  winsize ws{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0) {
    if (ws.ws_col > 0) size.columns = ws.ws_col;
    if (ws.ws_row > 0) size.rows = ws.ws_row;
  }
  return size;
}

// The lines at the bottom of the terminal that are redrawn in place. The cursor is hidden while it lives and
// shown again when it goes, on every way out of run_watch.
class LiveArea {
 public:
  LiveArea() { write_now("\x1b[?25l"); }
  ~LiveArea() {
    try {
      write_now("\x1b[?25h");
    } catch (const std::exception&) {
      // The terminal is gone or stdout is closed: nobody left to show the cursor to.
    }
  }
  LiveArea(const LiveArea&) = delete;
  LiveArea& operator=(const LiveArea&) = delete;

  void draw(const std::vector<std::string>& lines) {
    std::string text = rewind();
    for (const auto& line : lines) text += line + "\x1b[K\n";
    text += "\x1b[J";  // clear what is left of a taller previous frame
    drawn_ = lines.size();
    write_now(text);
  }

  // A line that stays (a failed job): printed where the area was; the area is drawn again below it next time.
  void print_above(const std::string& line) {
    std::string text = rewind() + "\x1b[J" + line + "\n";
    drawn_ = 0;
    write_now(text);
  }

 private:
  // Back to the first line of the area: CR, then cursor up (CUU) by the number of lines drawn.
  std::string rewind() const { return drawn_ == 0 ? std::string("\r") : fmt::format("\r\x1b[{}A", drawn_); }

  std::size_t drawn_ = 0;
};

// Blocks SIGINT and SIGTERM and delivers them through a file descriptor instead; restores the mask on exit.
class SignalFd {
 public:
  SignalFd() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    if (::sigprocmask(SIG_BLOCK, &set_, &old_) != 0)
      throw std::system_error(errno, std::generic_category(), "sigprocmask");
    fd_.reset(::signalfd(-1, &set_, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!fd_) {
      int err = errno;
      ::sigprocmask(SIG_SETMASK, &old_, nullptr);
      throw std::system_error(err, std::generic_category(), "signalfd");
    }
  }
  ~SignalFd() {
    fd_.reset();
    ::sigprocmask(SIG_SETMASK, &old_, nullptr);
  }
  SignalFd(const SignalFd&) = delete;
  SignalFd& operator=(const SignalFd&) = delete;

  int fd() const { return fd_.get(); }
  // The signal that arrived (0 if none is pending).
  int take() {
    signalfd_siginfo info{};
    ssize_t n = ::read(fd_.get(), &info, sizeof info);
    return n == static_cast<ssize_t>(sizeof info) ? static_cast<int>(info.ssi_signo) : 0;
  }

 private:
  sigset_t set_{};
  sigset_t old_{};
  core::UniqueFd fd_;
};

int exit_for_signal(int signo) {
  return signo == SIGTERM ? 128 + SIGTERM : kExitOk;
}

}  // namespace

int run_watch(const GlobalOptions& g) {
  const auto timeout = g.timeout_or(kDefaultTimeout);
  SignalFd signals;
  Connection connection = Connection::open(g.endpoint, timeout);
  connection.queue(R"({"op":"watch"})");

  std::string line;
  switch (connection.next_line(line, timeout, signals.fd())) {
    case Connection::Status::kLine:
      break;
    case Connection::Status::kWoken:
      return exit_for_signal(signals.take());
    case Connection::Status::kTimeout:
    case Connection::Status::kClosed:
      read_reply(connection, std::chrono::milliseconds(0));  // throws the matching ClientError
      break;
  }
  json reply = parse_reply(line, g.endpoint);
  if (!reply["ok"].get<bool>()) {
    print_daemon_error(reply);
    return kExitRejected;
  }

  const bool live = !g.json && ::isatty(STDOUT_FILENO) == 1;
  const bool unicode = locale_is_utf8(std::getenv("LC_ALL"), std::getenv("LC_CTYPE"), std::getenv("LANG"));
  std::optional<LiveArea> area;
  if (live) area.emplace();
  WatchView view;
  bool dirty = live;
  auto last_draw = Clock::time_point{};
  auto last_event = Clock::now();
  auto draw = [&] {
    TerminalSize size = terminal_size();
    // One column short of the width (no auto-wrap at the margin) and one row short of the height (the area
    // must never scroll its own first line off the screen, or the next redraw could not reach it).
    area->draw(
        view.render(size.columns > 1 ? size.columns - 1 : 1, size.rows > 1 ? size.rows - 1 : 1, unicode));
    dirty = false;
    last_draw = Clock::now();
  };

  for (;;) {
    auto now = Clock::now();
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(last_event + timeout - now);
    if (live && dirty)
      wait = std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(last_draw + kFrame - now));
    wait = std::max(wait, std::chrono::milliseconds(0));
    auto status = connection.next_line(line, wait, signals.fd());
    now = Clock::now();
    switch (status) {
      case Connection::Status::kWoken: {
        int signo = signals.take();
        if (signo == 0) break;  // spurious wake-up
        if (live) draw();
        return exit_for_signal(signo);
      }
      case Connection::Status::kClosed:
        if (live) draw();
        throw ClientError(Failure::kUnavailable,
                          fmt::format("fetchd closed the watch connection on {}", g.endpoint.display));
      case Connection::Status::kTimeout:
        if (now - last_event >= timeout) {
          throw ClientError(Failure::kTimeout,
                            fmt::format("no events from fetchd on {} for {} (--timeout sets the limit)",
                                        g.endpoint.display, describe_duration(timeout)));
        }
        break;
      case Connection::Status::kLine: {
        last_event = now;
        json event = json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (event.is_discarded() || !event.is_object())
          throw ClientError(
              Failure::kProtocol,
              fmt::format("fetchd on {} sent an event that is not a JSON object", g.endpoint.display));
        if (auto ok = event.find("ok"); ok != event.end() && ok->is_boolean() && !ok->get<bool>()) {
          if (live) draw();
          print_daemon_error(event);
          return kExitRejected;
        }
        if (g.json) {
          write_now(line + "\n");
        } else if (!live) {
          write_now(format_event(event) + "\n");
        } else {
          view.apply(event, now);
          if (json_string(event, "event").value_or("") == "failed") area->print_above(format_event(event));
          dirty = true;
        }
        break;
      }
    }
    if (live && dirty && Clock::now() - last_draw >= kFrame) draw();
  }
}

}  // namespace fetchd::ctl
