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
// Thread: the control loop thread only.

#include <memory>
#include <unordered_map>
#include <vector>

#include "fetchd/curl/curl.hpp"
#include "fetchd/strategy/file_workers.hpp"
#include "fetchd/strategy/strategy.hpp"
#include "fetchd/transfer/transfer.hpp"
#include "fetchd/uv/handle.hpp"

namespace fetchd::strategy {

class EventLoopStrategy final : public Strategy {
 public:
  static constexpr int kShardTransfers = 512;

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
  void progress(std::vector<JobProgress>& out) const override;

 private:
  // One curl multi handle with its timer and socket watchers.
  struct Shard {
    EventLoopStrategy* owner = nullptr;
    curl::Multi multi;
    uv::Timer timer;
    std::unordered_map<curl_socket_t, uv::Poll> polls;
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

  uv_loop_t* loop_;
  int capacity_;
  ResultCallback on_result_;
  FileWorkers file_workers_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::unordered_map<core::JobId, Entry> entries_;
  std::uint64_t finished_bytes_ = 0;
  bool draining_ = false;
  std::function<void()> drain_done_;
  // Set once the shards are torn down: late callbacks from curl_multi_cleanup must not touch the loop any more.
  bool closing_ = false;
};

}  // namespace fetchd::strategy
