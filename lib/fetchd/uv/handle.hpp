// SPDX-License-Identifier: Apache-2.0
#pragma once
// RAII ownership of libuv handles. A handle lives in a heap Box together with its callback; the owning wrapper may
// be moved or destroyed at any time: destruction calls uv_close, and the Box is freed only in the close callback
// (libuv's rule: handle memory must stay valid until then). So after the last owner is gone the loop must run once
// more for the memory to be released; Loop's destructor does that.
// Thread: every method must be called on the thread that runs the handle's loop, except Async::send.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <utility>

#include "fetchd/uv/error.hpp"

namespace fetchd::uv {

template <typename T, typename Callback>
class Handle {
 public:
  Handle() = default;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& other) noexcept : box_(std::exchange(other.box_, nullptr)) {}
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      close();
      box_ = std::exchange(other.box_, nullptr);
    }
    return *this;
  }
  ~Handle() { close(); }

  explicit operator bool() const { return box_ != nullptr; }
  T* get() const { return box_ ? &box_->handle : nullptr; }
  uv_loop_t* loop() const { return box_ ? box_->handle.loop : nullptr; }

  // Keeps the loop alive (default) or not while the handle is active.
  void ref(bool on) {
    if (!box_) return;
    if (on) {
      uv_ref(reinterpret_cast<uv_handle_t*>(&box_->handle));
    } else {
      uv_unref(reinterpret_cast<uv_handle_t*>(&box_->handle));
    }
  }

  // Starts closing; the memory goes in the close callback. Idempotent.
  void close() {
    if (!box_) return;
    auto* h = reinterpret_cast<uv_handle_t*>(&std::exchange(box_, nullptr)->handle);
    uv_close(h, [](uv_handle_t* handle) { delete static_cast<Box*>(handle->data); });
  }

 protected:
  struct Box {
    T handle{};
    Callback callback;
  };

  // The init function has run successfully on box->handle; take ownership.
  void adopt(Box* box) {
    close();
    box->handle.data = box;
    box_ = box;
  }
  static Box& box_of(T* h) { return *static_cast<Box*>(h->data); }
  Box* box() const { return box_; }
  // Gives up ownership without closing, for a subclass that closes with its own close callback (which must then
  // delete the Box). The handle must be initialised (i.e. the result non-null) to be passed to uv_close.
  Box* release_box() { return std::exchange(box_, nullptr); }

 private:
  Box* box_ = nullptr;
};

// A one-shot or repeating timer.
class Timer : public Handle<uv_timer_t, std::function<void()>> {
 public:
  Timer() = default;
  explicit Timer(uv_loop_t* loop);
  void start(std::uint64_t timeout_ms, std::uint64_t repeat_ms, std::function<void()> cb);
  void stop();
};

// Watches one file descriptor for readability/writability. Never create two on one fd (libuv asserts).
class Poll : public Handle<uv_poll_t, std::function<void(int status, int events)>> {
 public:
  Poll() = default;
  Poll(uv_loop_t* loop, int fd);  // uses uv_poll_init_socket
  void start(int events, std::function<void(int status, int events)> cb);
  void stop();
};

// Wakes the loop from another thread. uv_async_send coalesces: the callback must drain its whole queue.
class Async : public Handle<uv_async_t, std::function<void()>> {
 public:
  Async() = default;
  Async(uv_loop_t* loop, std::function<void()> cb);
  void send();  // any thread
};

class Signal : public Handle<uv_signal_t, std::function<void(int signum)>> {
 public:
  Signal() = default;
  explicit Signal(uv_loop_t* loop);
  void start(int signum, std::function<void(int)> cb);
  void stop();
};

// Runs its callback once per loop iteration, right after the loop polled for I/O: where work gathered during
// the iteration (e.g. the daemon's store writes) is done in one batch.
class Check : public Handle<uv_check_t, std::function<void()>> {
 public:
  Check() = default;
  explicit Check(uv_loop_t* loop);
  void start(std::function<void()> cb);
  void stop();
};

}  // namespace fetchd::uv
