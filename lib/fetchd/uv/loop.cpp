// SPDX-License-Identifier: Apache-2.0
#include "fetchd/uv/loop.hpp"

#include <spdlog/spdlog.h>

#include <memory>

#include "fetchd/uv/error.hpp"

namespace fetchd::uv {

Loop::Loop() { check(uv_loop_init(&loop_), "uv_loop_init"); }

Loop::~Loop() { close(); }

int Loop::run(uv_run_mode mode) { return uv_run(&loop_, mode); }

int Loop::close() {
  if (closed_) return 0;
  // Bounded: each pass runs pending close callbacks; a handful of passes is enough unless a handle is leaked.
  for (int pass = 0; pass < 64; ++pass) {
    int rc = uv_loop_close(&loop_);
    if (rc == 0) {
      closed_ = true;
      return 0;
    }
    uv_walk(
        &loop_,
        [](uv_handle_t* h, void*) {
          if (!uv_is_closing(h)) uv_close(h, nullptr);  // leaked by an owner; memory is the owner's problem
        },
        nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);
  }
  return uv_loop_close(&loop_);
}

namespace {
struct WorkReq {
  uv_work_t req{};
  std::function<void()> work;
  std::function<void(int)> after;
};
}  // namespace

void queue_work(uv_loop_t* loop, std::function<void()> work, std::function<void(int)> after) {
  auto w = std::make_unique<WorkReq>();
  w->req.data = w.get();
  w->work = std::move(work);
  w->after = std::move(after);
  check(uv_queue_work(
            loop, &w->req,
            [](uv_work_t* r) noexcept {
              try {
                static_cast<WorkReq*>(r->data)->work();
              } catch (const std::exception& e) {
                spdlog::critical("uncaught exception in queued work: {}", e.what());
              }
            },
            [](uv_work_t* r, int status) noexcept {
              std::unique_ptr<WorkReq> owned(static_cast<WorkReq*>(r->data));
              try {
                owned->after(status);
              } catch (const std::exception& e) {
                spdlog::critical("uncaught exception after queued work: {}", e.what());
              }
            }),
        "uv_queue_work");
  w.release();
}

}  // namespace fetchd::uv
