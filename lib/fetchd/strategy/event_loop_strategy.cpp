// SPDX-License-Identifier: Apache-2.0
#include "fetchd/strategy/event_loop_strategy.hpp"

#include <spdlog/spdlog.h>


namespace fetchd::strategy {

EventLoopStrategy::EventLoopStrategy(const config::StrategyConfig& config, int file_threads, uv_loop_t* loop,
                                     ResultCallback on_result)
    : loop_(loop),
      capacity_(config.concurrency),
      on_result_(std::move(on_result)),
      file_workers_(loop, file_threads),
      timer_(loop) {
  multi_.set(CURLMOPT_SOCKETFUNCTION, &EventLoopStrategy::on_socket, "CURLMOPT_SOCKETFUNCTION");
  multi_.set(CURLMOPT_SOCKETDATA, this, "CURLMOPT_SOCKETDATA");
  multi_.set(CURLMOPT_TIMERFUNCTION, &EventLoopStrategy::on_timer, "CURLMOPT_TIMERFUNCTION");
  multi_.set(CURLMOPT_TIMERDATA, this, "CURLMOPT_TIMERDATA");
  // The scheduler caps transfers at `concurrency`; capping connections too keeps curl from opening extra ones
  // while idle ones are closing, and lets the connection cache hold one per transfer for reuse.
  multi_.set(CURLMOPT_MAX_TOTAL_CONNECTIONS, static_cast<long>(capacity_), "CURLMOPT_MAX_TOTAL_CONNECTIONS");
  multi_.set(CURLMOPT_MAXCONNECTS, static_cast<long>(capacity_), "CURLMOPT_MAXCONNECTS");
}

EventLoopStrategy::~EventLoopStrategy() {
  // Order (design.md pitfalls): remove easies, curl_multi_cleanup while the loop still exists (it fires the
  // socket callback with CURL_POLL_REMOVE), then close the uv handles; their memory goes in close callbacks.
  for (auto& [id, entry] : entries_) {
    if (entry.stage == Stage::kRunning) curl_multi_remove_handle(multi_.get(), entry.transfer->easy());
  }
  closing_ = true;
  multi_.reset();
  polls_.clear();
  timer_.close();
  // Entries still preparing/publishing on the thread pool hold Transfer objects the work callbacks reference;
  // the control loop never destroys a strategy before drain() completed, which guarantees there are none.
}

void EventLoopStrategy::submit(core::TransferRequest request) {
  if (draining_) throw std::logic_error("EventLoopStrategy::submit after drain");
  core::JobId id = request.id;
  auto transfer = std::make_unique<transfer::Transfer>(std::move(request));
  auto* raw = transfer.get();
  entries_.emplace(id, Entry{std::move(transfer), Stage::kPreparing, false});
  auto early = std::make_shared<std::optional<core::TransferResult>>();
  file_workers_.post([raw, early] { *early = raw->prepare(); },
                     [this, id, early] { prepared(id, std::move(*early)); });
}

void EventLoopStrategy::prepared(core::JobId id, std::optional<core::TransferResult> early) {
  auto it = entries_.find(id);
  auto& entry = it->second;
  if (!early && entry.cancelled) {
    core::TransferResult r;
    r.id = id;
    r.category = core::ErrorCategory::kCancelled;
    r.message = "cancelled";
    early = r;
  }
  if (early) {
    // Nothing ran on the network; publish() still cleans up a .part that prepare() may have created.
    early->id = id;
    start_publish(id, std::move(*early));
    return;
  }
  CURLMcode rc = curl_multi_add_handle(multi_.get(), entry.transfer->easy());
  if (rc != CURLM_OK) {
    core::TransferResult r;
    r.id = id;
    r.category = core::ErrorCategory::kInternal;
    r.message = "curl_multi_add_handle: " + curl::describe(rc);
    start_publish(id, std::move(r));
    return;
  }
  // curl_multi_add_handle calls our timer callback with 0: the timer kicks the transfer off on the next
  // loop iteration, never from inside a curl callback.
  entry.stage = Stage::kRunning;
}

int EventLoopStrategy::on_timer(CURLM*, long timeout_ms, void* self) noexcept {
  auto* s = static_cast<EventLoopStrategy*>(self);
  if (s->closing_) return 0;
  try {
    if (timeout_ms < 0) {
      s->timer_.stop();
    } else {
      // One one-shot timer: a new value replaces the old one. 0 means "soon": the timer fires on the next loop
      // iteration, which is what keeps us from calling curl from inside its own callback.
      s->timer_.start(static_cast<std::uint64_t>(timeout_ms), 0,
                      [s] { s->socket_action(CURL_SOCKET_TIMEOUT, 0); });
    }
    return 0;
  } catch (const std::exception& e) {
    spdlog::error("event-loop: timer callback: {}", e.what());
    return -1;
  }
}

int EventLoopStrategy::on_socket(CURL*, curl_socket_t fd, int what, void* self, void*) noexcept {
  auto* s = static_cast<EventLoopStrategy*>(self);
  try {
    if (what == CURL_POLL_REMOVE) {
      // Stop watching at once: the fd may be closed (or parked in curl's pool) right after we return.
      auto it = s->polls_.find(fd);
      if (it != s->polls_.end()) {
        it->second.stop();
        s->polls_.erase(it);
      }
      return 0;
    }
    if (s->closing_) return 0;
    int events = 0;
    if (what & CURL_POLL_IN) events |= UV_READABLE;
    if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
    auto it = s->polls_.find(fd);
    if (it == s->polls_.end()) it = s->polls_.emplace(fd, uv::Poll(s->loop_, fd)).first;
    it->second.start(events, [s, fd](int status, int ev) {
      int flags = 0;
      if (status < 0) {
        flags = CURL_CSELECT_ERR;  // let curl find out what went wrong with the socket
      } else {
        if (ev & UV_READABLE) flags |= CURL_CSELECT_IN;
        if (ev & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
      }
      s->socket_action(fd, flags);
    });
    return 0;
  } catch (const std::exception& e) {
    spdlog::error("event-loop: socket callback for fd {}: {}", fd, e.what());
    return -1;
  }
}

void EventLoopStrategy::socket_action(curl_socket_t fd, int events) {
  int running = 0;
  CURLMcode rc = curl_multi_socket_action(multi_.get(), fd, events, &running);
  if (rc != CURLM_OK) spdlog::error("event-loop: curl_multi_socket_action: {}", curl::describe(rc));
  read_completions();
}

void EventLoopStrategy::read_completions() {
  int pending = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_.get(), &pending)) {
    if (msg->msg != CURLMSG_DONE) continue;
    // Copy what we need before remove_handle: the CURLMsg is invalid afterwards.
    CURL* easy = msg->easy_handle;
    CURLcode code = msg->data.result;
    transfer::Transfer* t = nullptr;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, reinterpret_cast<char**>(&t));
    CURLMcode rc = curl_multi_remove_handle(multi_.get(), easy);
    if (rc != CURLM_OK) spdlog::error("event-loop: curl_multi_remove_handle: {}", curl::describe(rc));
    core::JobId id = t->request().id;
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
    curl_multi_remove_handle(multi_.get(), entry.transfer->easy());
    core::TransferResult r;
    r.id = id;
    r.category = core::ErrorCategory::kCancelled;
    r.message = "cancelled";
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
  closing_ = true;
  multi_.reset();
  polls_.clear();
  timer_.close();
  file_workers_.stop();
  auto done = std::move(drain_done_);
  drain_done_ = nullptr;
  done();
}

StrategySnapshot EventLoopStrategy::snapshot() const {
  StrategySnapshot s;
  s.active = entries_.size();
  s.bytes = finished_bytes_;
  for (const auto& [id, entry] : entries_) s.bytes += entry.transfer->bytes_received();
  return s;
}

}  // namespace fetchd::strategy
