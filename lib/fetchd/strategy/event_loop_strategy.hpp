// SPDX-License-Identifier: Apache-2.0
#pragma once
// event-loop: one thread, the control loop itself, drives a curl multi handle through curl_multi_socket_action
// (curl's docs/examples/multi-uv.c pattern): one uv_poll_t per socket curl asks about, keyed by fd; one uv_timer_t
// for curl's single timeout; completions read with curl_multi_info_read after each socket_action. The blocking
// file steps of a transfer (open of the .part, fsync + rename) run on FileWorkers threads, so a slow disk never
// stalls the sockets.
// Thread: the control loop thread only.

#include <memory>
#include <unordered_map>

#include "fetchd/curl/curl.hpp"
#include "fetchd/strategy/file_workers.hpp"
#include "fetchd/strategy/strategy.hpp"
#include "fetchd/transfer/transfer.hpp"
#include "fetchd/uv/handle.hpp"

namespace fetchd::strategy {

class EventLoopStrategy final : public Strategy {
 public:
  // file_threads: see FileWorkers (1 without fsync, a few with).
  EventLoopStrategy(const config::StrategyConfig& config, int file_threads, uv_loop_t* loop,
                    ResultCallback on_result);
  ~EventLoopStrategy() override;

  std::string_view name() const override { return "event-loop"; }
  int capacity() const override { return capacity_; }
  void submit(core::TransferRequest request) override;
  void cancel(core::JobId id) override;
  void drain(std::function<void()> done) override;
  StrategySnapshot snapshot() const override;

 private:
  // Where a transfer is in its life: its file is being prepared off-loop, curl is running it, or its file is
  // being published off-loop.
  enum class Stage { kPreparing, kRunning, kPublishing };
  struct Entry {
    std::unique_ptr<transfer::Transfer> transfer;
    Stage stage = Stage::kPreparing;
    bool cancelled = false;
  };

  static int on_socket(CURL* easy, curl_socket_t fd, int what, void* self, void* socket_data) noexcept;
  static int on_timer(CURLM* multi, long timeout_ms, void* self) noexcept;
  void socket_action(curl_socket_t fd, int events);
  void read_completions();
  void prepared(core::JobId id, std::optional<core::TransferResult> early);
  void start_publish(core::JobId id, core::TransferResult result);
  void deliver(core::JobId id, core::TransferResult result);
  void maybe_finish_drain();

  uv_loop_t* loop_;
  int capacity_;
  ResultCallback on_result_;
  FileWorkers file_workers_;
  curl::Multi multi_;
  uv::Timer timer_;
  std::unordered_map<curl_socket_t, uv::Poll> polls_;
  std::unordered_map<core::JobId, Entry> entries_;
  std::uint64_t finished_bytes_ = 0;
  bool draining_ = false;
  std::function<void()> drain_done_;
  // Set by the destructor: late callbacks from curl_multi_cleanup must not touch the loop any more.
  bool closing_ = false;
};

}  // namespace fetchd::strategy
