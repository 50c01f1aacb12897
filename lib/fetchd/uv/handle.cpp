// SPDX-License-Identifier: Apache-2.0
#include "fetchd/uv/handle.hpp"

#include <spdlog/spdlog.h>

#include <memory>

namespace fetchd::uv {

namespace {

// Allocates a Box, runs init on it, and frees it again if init fails (an uninitialised handle must not be closed).
template <typename Box, typename Init>
Box* make_box(Init init, const char* what) {
  auto box = std::make_unique<Box>();
  check(init(&box->handle), what);
  return box.release();
}
}  // namespace

Timer::Timer(uv_loop_t* loop) {
  adopt(make_box<Box>([loop](uv_timer_t* t) { return uv_timer_init(loop, t); }, "uv_timer_init"));
}

void Timer::start(std::uint64_t timeout_ms, std::uint64_t repeat_ms, std::function<void()> cb) {
  box()->callback = std::move(cb);
  check(uv_timer_start(
            get(), [](uv_timer_t* t) noexcept { guarded("timer", [t] { box_of(t).callback(); }); }, timeout_ms,
            repeat_ms),
        "uv_timer_start");
}

void Timer::stop() {
  if (get()) uv_timer_stop(get());
}

Poll::Poll(uv_loop_t* loop, int fd) {
  adopt(make_box<Box>([loop, fd](uv_poll_t* p) { return uv_poll_init_socket(loop, p, fd); }, "uv_poll_init"));
}

void Poll::start(int events, std::function<void(int, int)> cb) {
  box()->callback = std::move(cb);
  check(uv_poll_start(get(), events,
                      [](uv_poll_t* p, int status, int ev) noexcept {
                        guarded("poll", [&] { box_of(p).callback(status, ev); });
                      }),
        "uv_poll_start");
}

void Poll::stop() {
  if (get()) uv_poll_stop(get());
}

Async::Async(uv_loop_t* loop, std::function<void()> cb) {
  adopt(make_box<Box>(
      [loop](uv_async_t* a) { return uv_async_init(loop, a, [](uv_async_t* h) noexcept { guarded("async", [h] { box_of(h).callback(); }); }); },
      "uv_async_init"));
  box()->callback = std::move(cb);
}

void Async::send() { uv_async_send(get()); }

Signal::Signal(uv_loop_t* loop) {
  adopt(make_box<Box>([loop](uv_signal_t* s) { return uv_signal_init(loop, s); }, "uv_signal_init"));
}

void Signal::start(int signum, std::function<void(int)> cb) {
  box()->callback = std::move(cb);
  check(uv_signal_start(
            get(), [](uv_signal_t* s, int sig) noexcept { guarded("signal", [&] { box_of(s).callback(sig); }); },
            signum),
        "uv_signal_start");
}

void Signal::stop() {
  if (get()) uv_signal_stop(get());
}

Check::Check(uv_loop_t* loop) {
  adopt(make_box<Box>([loop](uv_check_t* c) { return uv_check_init(loop, c); }, "uv_check_init"));
}

void Check::start(std::function<void()> cb) {
  box()->callback = std::move(cb);
  check(uv_check_start(get(), [](uv_check_t* c) noexcept { guarded("check", [c] { box_of(c).callback(); }); }),
        "uv_check_start");
}

void Check::stop() {
  if (get()) uv_check_stop(get());
}

}  // namespace fetchd::uv
