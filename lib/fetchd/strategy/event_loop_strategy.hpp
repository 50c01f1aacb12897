// SPDX-License-Identifier: Apache-2.0
#pragma once
// event-loop: one thread, the control loop itself, drives curl multi handles through curl_multi_socket_action
// (curl's docs/examples/multi-uv.c pattern): one uv_poll_t per socket curl asks about, keyed by fd; one uv_timer_t
// per multi handle for curl's single timeout; completions read with curl_multi_info_read after each
// socket_action. The blocking file steps of a transfer (open of the .part, fsync + rename) run on FileWorkers
// threads, so a slow disk never stalls the sockets.
//
// Transfers are spread over shards of at most kShardTransfers, one multi handle each: curl 7.88 looks for a
// reusable connection by walking every connection to the same host (ConnectionExists), which is quadratic with
// thousands of transfers to one origin in one multi handle (docs/benchmarks.md). Connections are reused within
// a shard.
// limits.rate: every transfer takes tokens from one RateLimiter; one that must wait returns
// CURL_WRITEFUNC_PAUSE and joins a FIFO, and one uv timer (for the whole strategy, whatever the shard)
// resumes the oldest paused transfers with curl_easy_pause(CURLPAUSE_CONT) once the limiter is out of debt.
// Thread: the control loop thread only.

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "fetchd/curl/curl.hpp"
#include "fetchd/strategy/file_workers.hpp"
#include "fetchd/strategy/strategy.hpp"
#include "fetchd/transfer/transfer.hpp"
#include "fetchd/uv/handle.hpp"

namespace fetchd::strategy {

class EventLoopStrategy final : public Strategy, private transfer::RatePauseListener {
 public:
  static constexpr int kShardTransfers = 512;

  // file_threads: see FileWorkers (1 without fsync, a few with). limiter: limits.rate shared by every
  // transfer (nullptr: none); process-pool's workers change its rate while transfers run.
  EventLoopStrategy(const config::StrategyConfig& config, int file_threads, uv_loop_t* loop,
                    ResultCallback on_result, std::shared_ptr<transfer::RateLimiter> limiter = nullptr);
  ~EventLoopStrategy() override;

  std::string_view name() const override { return "event-loop"; }
  int capacity() const override { return capacity_; }
  void submit(core::TransferRequest request) override;
  void cancel(core::JobId id) override;
  void drain(std::function<void()> done) override;
  StrategySnapshot snapshot() const override;
  void progress(std::vector<JobProgress>& out) const override;

 private:
  // One curl multi handle with its timer and socket watchers.
  struct Shard {
    EventLoopStrategy* owner = nullptr;
    curl::Multi multi;
    uv::Timer timer;
    std::unordered_map<curl_socket_t, uv::Poll> polls;  // by fd number; stopped when curl lets go of the fd
    int running = 0;  // transfers added to this multi and not yet removed
    void close();     // curl_multi_cleanup (fires CURL_POLL_REMOVE), then the uv handles
  };

  // Where a transfer is in its life: its file is being prepared off-loop, curl is running it, or its file is
  // being published off-loop.
  enum class Stage { kPreparing, kRunning, kPublishing };
  struct Entry {
    std::unique_ptr<transfer::Transfer> transfer;
    Stage stage = Stage::kPreparing;
    bool cancelled = false;
    Shard* shard = nullptr;  // while kRunning
  };

  static int on_socket(CURL* easy, curl_socket_t fd, int what, void* shard, void* socket_data) noexcept;
  static int on_timer(CURLM* multi, long timeout_ms, void* shard) noexcept;
  void socket_action(Shard& shard, curl_socket_t fd, int events);
  void read_completions(Shard& shard);
  void remove_from_shard(Entry& entry);
  void prepared(core::JobId id, std::optional<core::TransferResult> early);
  void start_publish(core::JobId id, core::TransferResult result);
  void deliver(core::JobId id, core::TransferResult result);
  void maybe_finish_drain();
  void close_all();
  // limits.rate: a transfer's write callback paused it; resume_paused() runs from rate_timer_.
  void rate_paused(transfer::Transfer& transfer, std::chrono::steady_clock::time_point wake) override;
  void arm_rate_timer(std::chrono::steady_clock::time_point wake);
  void resume_paused();

  uv_loop_t* loop_;
  int capacity_;
  ResultCallback on_result_;
  FileWorkers file_workers_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::unordered_map<core::JobId, Entry> entries_;
  std::uint64_t finished_bytes_ = 0;
  std::shared_ptr<transfer::RateLimiter> limiter_;
  struct Paused {
    core::JobId id;
    transfer::Transfer* transfer;  // compared with the entry's: the job may have moved on to another attempt
  };
  std::deque<Paused> paused_;  // oldest first
  uv::Timer rate_timer_;
  std::optional<std::chrono::steady_clock::time_point> rate_timer_due_;  // while armed
  bool draining_ = false;
  std::function<void()> drain_done_;
  // Set once the shards are torn down: late callbacks from curl_multi_cleanup must not touch the loop any more.
  bool closing_ = false;
};

}  // namespace fetchd::strategy
