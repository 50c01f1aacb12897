// SPDX-License-Identifier: Apache-2.0
#include "fetchd/strategy/event_loop_strategy.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace fetchd::strategy {

namespace {
core::TransferResult failure(core::JobId id, core::ErrorCategory category, std::string message) {
  core::TransferResult r;
  r.id = id;
  r.category = category;
  r.message = std::move(message);
  return r;
}
}  // namespace

EventLoopStrategy::EventLoopStrategy(const config::StrategyConfig& config, int file_threads, uv_loop_t* loop,
                                     ResultCallback on_result, std::shared_ptr<transfer::RateLimiter> limiter)
    : loop_(loop),
      capacity_(config.concurrency),
      on_result_(std::move(on_result)),
      file_workers_(loop, file_threads),
      limiter_(std::move(limiter)) {
  if (limiter_) rate_timer_ = uv::Timer(loop);
  int shards = std::max(1, (capacity_ + kShardTransfers - 1) / kShardTransfers);
  // Least-loaded placement keeps every shard at or below ceil(capacity / shards) transfers.
  long per_shard = (capacity_ + shards - 1) / shards;
  for (int i = 0; i < shards; ++i) {
    auto shard = std::make_unique<Shard>();
    shard->owner = this;
    shard->timer = uv::Timer(loop);
    auto& m = shard->multi;
    m.set(CURLMOPT_SOCKETFUNCTION, &EventLoopStrategy::on_socket, "CURLMOPT_SOCKETFUNCTION");
    m.set(CURLMOPT_SOCKETDATA, shard.get(), "CURLMOPT_SOCKETDATA");
    m.set(CURLMOPT_TIMERFUNCTION, &EventLoopStrategy::on_timer, "CURLMOPT_TIMERFUNCTION");
    m.set(CURLMOPT_TIMERDATA, shard.get(), "CURLMOPT_TIMERDATA");
    // Capping connections like transfers keeps curl from opening extra ones while idle ones are closing, and
    // lets the connection cache hold one per transfer for reuse.
    m.set(CURLMOPT_MAX_TOTAL_CONNECTIONS, per_shard, "CURLMOPT_MAX_TOTAL_CONNECTIONS");
    m.set(CURLMOPT_MAXCONNECTS, per_shard, "CURLMOPT_MAXCONNECTS");
    shards_.push_back(std::move(shard));
  }
}

EventLoopStrategy::~EventLoopStrategy() {
  // Order (design.md pitfalls): remove easies, curl_multi_cleanup while the loop still exists (it fires the
  // socket callback with CURL_POLL_REMOVE), then close the uv handles; their memory goes in close callbacks.
  // Entries still preparing/publishing hold Transfers the file workers reference; the control loop never
  // destroys a strategy before drain() completed, which guarantees there are none.
  for (auto& [id, entry] : entries_) {
    if (entry.stage == Stage::kRunning) remove_from_shard(entry);
  }
  close_all();
}

void EventLoopStrategy::Shard::close() {
  multi.reset();
  polls.clear();
  timer.close();
}

void EventLoopStrategy::close_all() {
  closing_ = true;
  paused_.clear();
  rate_timer_.close();
  for (auto& shard : shards_) shard->close();
  file_workers_.stop();
}

void EventLoopStrategy::submit(core::TransferRequest request) {
  if (draining_) throw std::logic_error("EventLoopStrategy::submit after drain");
  core::JobId id = request.id;
  auto transfer = std::make_unique<transfer::Transfer>(std::move(request));
  if (limiter_) transfer->set_rate_limiter(limiter_.get(), this);
  auto* raw = transfer.get();
  entries_.emplace(id, Entry{std::move(transfer), Stage::kPreparing, false, nullptr});
  auto early = std::make_shared<std::optional<core::TransferResult>>();
  file_workers_.post_or_run([raw, early] { *early = raw->prepare(); },
                     [this, id, early] { prepared(id, std::move(*early)); });
}

void EventLoopStrategy::prepared(core::JobId id, std::optional<core::TransferResult> early) {
  auto& entry = entries_.at(id);
  if (!early && entry.cancelled) early = failure(id, core::ErrorCategory::kCancelled, "cancelled");
  if (early) {
    // Nothing ran on the network; publish() still cleans up a .part that prepare() may have created.
    early->id = id;
    start_publish(id, std::move(*early));
    return;
  }
  auto& shard = **std::min_element(shards_.begin(), shards_.end(),
                                    [](const auto& a, const auto& b) { return a->running < b->running; });
  CURLMcode rc = curl_multi_add_handle(shard.multi.get(), entry.transfer->easy());
  if (rc != CURLM_OK) {
    start_publish(id, failure(id, core::ErrorCategory::kInternal, "curl_multi_add_handle: " + curl::describe(rc)));
    return;
  }
  // curl_multi_add_handle calls our timer callback with 0: the timer kicks the transfer off on the next
  // loop iteration, never from inside a curl callback.
  ++shard.running;
  entry.shard = &shard;
  entry.stage = Stage::kRunning;
}

void EventLoopStrategy::remove_from_shard(Entry& entry) {
  CURLMcode rc = curl_multi_remove_handle(entry.shard->multi.get(), entry.transfer->easy());
  if (rc != CURLM_OK) spdlog::error("event-loop: curl_multi_remove_handle: {}", curl::describe(rc));
  --entry.shard->running;
  entry.shard = nullptr;
}

int EventLoopStrategy::on_timer(CURLM*, long timeout_ms, void* data) noexcept {
  auto* shard = static_cast<Shard*>(data);
  if (shard->owner->closing_) return 0;
  try {
    if (timeout_ms < 0) {
      shard->timer.stop();
    } else {
      // One one-shot timer: a new value replaces the old one. 0 means "soon": the timer fires on the next loop
      // iteration, which is what keeps us from calling curl from inside its own callback.
      shard->timer.start(static_cast<std::uint64_t>(timeout_ms), 0,
                         [shard] { shard->owner->socket_action(*shard, CURL_SOCKET_TIMEOUT, 0); });
    }
    return 0;
  } catch (const std::exception& e) {
    spdlog::error("event-loop: timer callback: {}", e.what());
    return -1;
  }
}

int EventLoopStrategy::on_socket(CURL*, curl_socket_t fd, int what, void* data, void*) noexcept {
  auto* shard = static_cast<Shard*>(data);
  try {
    if (what == CURL_POLL_REMOVE) {
      // Stop watching at once: the fd may be closed (or parked in curl's pool) right after we return. The
      // stopped handle stays, keyed by the fd number, and serves that number again (the pooled connection
      // taken by the next transfer, or a new socket that got the number): a new uv_poll_t per transfer cost
      // an epoll_ctl check at init and a second DEL at close, three syscalls a file. One handle per fd number
      // also keeps the rule of never two polls on one fd.
      auto it = shard->polls.find(fd);
      if (it != shard->polls.end()) it->second.stop();
      return 0;
    }
    if (shard->owner->closing_) return 0;
    int events = 0;
    if (what & CURL_POLL_IN) events |= UV_READABLE;
    if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
    auto it = shard->polls.find(fd);
    if (it == shard->polls.end()) it = shard->polls.emplace(fd, uv::Poll(shard->owner->loop_, fd)).first;
    it->second.start(events, [shard, fd](int status, int ev) {
      int flags = 0;
      if (status < 0) {
        flags = CURL_CSELECT_ERR;  // let curl find out what went wrong with the socket
      } else {
        if (ev & UV_READABLE) flags |= CURL_CSELECT_IN;
        if (ev & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
      }
      shard->owner->socket_action(*shard, fd, flags);
    });
    return 0;
  } catch (const std::exception& e) {
    spdlog::error("event-loop: socket callback for fd {}: {}", fd, e.what());
    return -1;
  }
}

void EventLoopStrategy::socket_action(Shard& shard, curl_socket_t fd, int events) {
  int running = 0;
  CURLMcode rc = curl_multi_socket_action(shard.multi.get(), fd, events, &running);
  if (rc != CURLM_OK) spdlog::error("event-loop: curl_multi_socket_action: {}", curl::describe(rc));
  read_completions(shard);
}

void EventLoopStrategy::read_completions(Shard& shard) {
  int pending = 0;
  while (CURLMsg* msg = curl_multi_info_read(shard.multi.get(), &pending)) {
    if (msg->msg != CURLMSG_DONE) continue;
    // Copy what we need before remove_handle: the CURLMsg is invalid afterwards.
    CURLcode code = msg->data.result;
    transfer::Transfer* t = transfer::Transfer::from_easy(msg->easy_handle);
    core::JobId id = t->request().id;
    auto& entry = entries_.at(id);
    remove_from_shard(entry);
    start_publish(id, t->finish(code));
  }
}

void EventLoopStrategy::start_publish(core::JobId id, core::TransferResult result) {
  auto& entry = entries_.at(id);
  entry.stage = Stage::kPublishing;
  auto* raw = entry.transfer.get();
  auto out = std::make_shared<core::TransferResult>(std::move(result));
  file_workers_.post([raw, out] { *out = raw->publish(std::move(*out)); },
                     [this, id, out] { deliver(id, std::move(*out)); });
}

void EventLoopStrategy::deliver(core::JobId id, core::TransferResult result) {
  auto it = entries_.find(id);
  finished_bytes_ += it->second.transfer->bytes_received();
  entries_.erase(it);
  result.id = id;
  on_result_(std::move(result));
  maybe_finish_drain();
}

void EventLoopStrategy::cancel(core::JobId id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  auto& entry = it->second;
  if (entry.cancelled) return;
  entry.cancelled = true;
  entry.transfer->request_cancel();
  if (entry.stage == Stage::kRunning) {
    // Safe here: we are not inside a curl callback. Removing the handle stops it at once, even if it is stalled
    // and no callback would come to notice the flag.
    remove_from_shard(entry);
    auto r = failure(id, core::ErrorCategory::kCancelled, "cancelled");
    r.bytes = entry.transfer->bytes_received();
    start_publish(id, std::move(r));
  }
}

void EventLoopStrategy::drain(std::function<void()> done) {
  draining_ = true;
  drain_done_ = std::move(done);
  maybe_finish_drain();
}

void EventLoopStrategy::maybe_finish_drain() {
  if (!draining_ || !entries_.empty() || !drain_done_) return;
  // Release curl's connections and our handles now, while the loop still runs their close callbacks.
  close_all();
  auto done = std::move(drain_done_);
  drain_done_ = nullptr;
  done();
}

void EventLoopStrategy::rate_paused(transfer::Transfer& transfer,
                                    std::chrono::steady_clock::time_point wake) {
  // Inside curl's write callback: only remember it and arm the timer; curl is called from the timer.
  paused_.push_back(Paused{transfer.request().id, &transfer});
  arm_rate_timer(wake);
}

void EventLoopStrategy::arm_rate_timer(std::chrono::steady_clock::time_point wake) {
  if (closing_ || (rate_timer_due_ && *rate_timer_due_ <= wake)) return;
  // At most one sleep slice ahead: the rate may change meanwhile (process-pool's workers), and a wake
  // computed at the old rate would be too late.
  wake = std::min(wake, std::chrono::steady_clock::now() + transfer::RateGate::kSleepSlice);
  rate_timer_due_ = wake;
  const auto left = wake - std::chrono::steady_clock::now();
  // Rounded up: a timer that fires early finds the limiter still in debt and only re-arms.
  const auto ms = std::max<std::int64_t>(0, std::chrono::ceil<std::chrono::milliseconds>(left).count());
  rate_timer_.start(static_cast<std::uint64_t>(ms), 0, [this] {
    rate_timer_due_.reset();
    resume_paused();
  });
}

void EventLoopStrategy::resume_paused() {
  // Oldest first, and only while the limiter is out of debt: each resumed transfer is handed its held bytes
  // inside curl_easy_pause and takes their tokens there, so the loop stops once they are spent. A transfer
  // that is not resumed keeps its place at the front.
  while (!paused_.empty() && !closing_) {
    const auto wait = limiter_->wait();
    if (wait.count() > 0) {
      arm_rate_timer(std::chrono::steady_clock::now() + wait);
      return;
    }
    const Paused p = paused_.front();
    paused_.pop_front();
    auto it = entries_.find(p.id);
    if (it == entries_.end() || it->second.transfer.get() != p.transfer ||
        it->second.stage != Stage::kRunning || !p.transfer->rate_paused()) {
      continue;  // finished, cancelled or failed while it waited
    }
    // Outside any curl callback (a timer), as curl_easy_pause requires of a multi_socket application: it
    // calls our write, socket and timer callbacks itself.
    const CURLcode rc = curl_easy_pause(p.transfer->easy(), CURLPAUSE_CONT);
    if (rc != CURLE_OK) {
      // The held bytes could not be delivered (the write callback failed: cancel, disk error). curl does not
      // end the transfer by itself here: do it as a completion would.
      Entry& entry = it->second;
      remove_from_shard(entry);
      start_publish(p.id, p.transfer->finish(rc));
    }
  }
}

StrategySnapshot EventLoopStrategy::snapshot() const {
  StrategySnapshot s;
  s.active = entries_.size();
  s.bytes = finished_bytes_;
  for (const auto& [id, entry] : entries_) s.bytes += entry.transfer->bytes_received();
  return s;
}

void EventLoopStrategy::progress(std::vector<JobProgress>& out) const {
  for (const auto& [id, entry] : entries_) out.push_back({id, entry.transfer->bytes_received()});
}

}  // namespace fetchd::strategy
