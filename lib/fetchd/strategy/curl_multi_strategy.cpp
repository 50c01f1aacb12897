// SPDX-License-Identifier: Apache-2.0
#include "fetchd/strategy/curl_multi_strategy.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

#include "fetchd/core/quiet_thread.hpp"

namespace fetchd::strategy {

namespace {

// curl_multi_poll's upper bound; curl shortens it to its own next timeout, and curl_multi_wakeup ends it early,
// so this only decides how often an idle thread loops for nothing.
constexpr int kPollTimeoutMs = 1000;

core::TransferResult cancelled_result(core::JobId id, std::uint64_t bytes) {
  core::TransferResult r;
  r.id = id;
  r.category = core::ErrorCategory::kCancelled;
  r.message = "cancelled";
  r.bytes = bytes;
  return r;
}

}  // namespace

CurlMultiStrategy::CurlMultiStrategy(const config::StrategyConfig& config, int file_threads, uv_loop_t* loop,
                                     ResultCallback on_result, std::shared_ptr<transfer::RateLimiter> limiter)
    : capacity_(config.concurrency),
      on_result_(std::move(on_result)),
      file_workers_(loop, file_threads),
      async_(loop, [this] { on_completions(); }),
      wakeup_target_(multi_.get()),
      limiter_(std::move(limiter)) {
  // As event-loop: connections capped at the transfer cap, and a cache that keeps one per transfer for reuse.
  multi_.set(CURLMOPT_MAX_TOTAL_CONNECTIONS, static_cast<long>(capacity_), "CURLMOPT_MAX_TOTAL_CONNECTIONS");
  multi_.set(CURLMOPT_MAXCONNECTS, static_cast<long>(capacity_), "CURLMOPT_MAXCONNECTS");
  thread_ = core::start_quiet_thread([this] { run(); });
}

CurlMultiStrategy::~CurlMultiStrategy() {
  closing_ = true;
  stop_thread();  // the thread removes any easy handle it still drives before curl_multi_cleanup
  file_workers_.stop();
  // entries_ (and their Transfers) go after the thread and the file workers that referenced them.
}

// --- control loop -------------------------------------------------------------------------------------------

void CurlMultiStrategy::submit(core::TransferRequest request) {
  if (draining_) throw std::logic_error("CurlMultiStrategy::submit after drain");
  const core::JobId id = request.id;
  auto transfer = std::make_unique<transfer::Transfer>(std::move(request));
  // The listener is called (and the gate used) on the multi thread only, which drives the transfer.
  if (limiter_) transfer->set_rate_limiter(limiter_.get(), this);
  auto* raw = transfer.get();
  entries_.emplace(id, Entry{std::move(transfer), Stage::kPreparing, false});
  auto early = std::make_shared<std::optional<core::TransferResult>>();
  file_workers_.post_or_run([raw, early] { *early = raw->prepare(); },
                     [this, id, early] { prepared(id, std::move(*early)); });
}

void CurlMultiStrategy::prepared(core::JobId id, std::optional<core::TransferResult> early) {
  if (closing_) return;
  auto& entry = entries_.at(id);
  if (!early && entry.cancelled) early = cancelled_result(id, 0);
  if (early) {
    // Nothing ran on the network; publish() still removes a .part that prepare() may have created.
    early->id = id;
    start_publish(id, std::move(*early));
    return;
  }
  entry.stage = Stage::kRunning;
  post(Command{Command::Kind::kAdd, id, entry.transfer.get()});
}

void CurlMultiStrategy::post(Command command) {
  std::lock_guard lock(mutex_);
  commands_.push_back(command);
  // One wakeup per batch: while commands are queued, the wakeup that came with the first is still pending, and
  // the thread takes the whole queue at once.
  if (commands_.size() > 1) return;
  // Under the lock: once the thread has taken kStop it cleans the multi handle up, and it can only take it
  // after this wakeup returned.
  const CURLMcode rc = curl_multi_wakeup(wakeup_target_);
  if (rc != CURLM_OK) spdlog::error("curl-multi: curl_multi_wakeup: {}", curl::describe(rc));
}

void CurlMultiStrategy::on_completions() {
  if (closing_) return;
  std::vector<Completion> batch;
  {
    std::lock_guard lock(mutex_);
    batch.swap(completions_);
  }
  // uv_async_send coalesces: one callback may stand for many sends, so take everything queued.
  for (auto& c : batch) start_publish(c.id, std::move(c.result));
}

void CurlMultiStrategy::start_publish(core::JobId id, core::TransferResult result) {
  auto& entry = entries_.at(id);
  entry.stage = Stage::kPublishing;
  auto* raw = entry.transfer.get();
  auto out = std::make_shared<core::TransferResult>(std::move(result));
  file_workers_.post([raw, out] { *out = raw->publish(std::move(*out)); },
                     [this, id, out] { deliver(id, std::move(*out)); });
}

void CurlMultiStrategy::deliver(core::JobId id, core::TransferResult result) {
  if (closing_) return;
  auto it = entries_.find(id);
  finished_bytes_ += it->second.transfer->bytes_received();
  entries_.erase(it);
  result.id = id;
  on_result_(std::move(result));
  maybe_finish_drain();
}

void CurlMultiStrategy::cancel(core::JobId id) {
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.cancelled) return;
  auto& entry = it->second;
  entry.cancelled = true;
  // Preparing: prepared() turns it into kCancelled. Publishing: too late, the result stands.
  if (entry.stage == Stage::kRunning) post(Command{Command::Kind::kCancel, id, nullptr});
}

void CurlMultiStrategy::drain(std::function<void()> done) {
  draining_ = true;
  drain_done_ = std::move(done);
  maybe_finish_drain();
}

void CurlMultiStrategy::maybe_finish_drain() {
  if (!draining_ || !entries_.empty() || !drain_done_) return;
  // Everything reported: the thread holds no easy handle, so stopping it is quick (curl_multi_cleanup only
  // closes idle pooled connections). Then the file workers, then our async handle, so the loop can close.
  stop_thread();
  file_workers_.stop();
  async_.close();
  auto done = std::move(drain_done_);
  drain_done_ = nullptr;
  done();
}

void CurlMultiStrategy::stop_thread() {
  if (!thread_.joinable()) return;
  post(Command{Command::Kind::kStop, 0, nullptr});
  thread_.join();
}

StrategySnapshot CurlMultiStrategy::snapshot() const {
  StrategySnapshot s;
  s.active = entries_.size();
  s.bytes = finished_bytes_;
  // bytes_received() is atomic: safe while the multi thread writes the body.
  for (const auto& [id, entry] : entries_) s.bytes += entry.transfer->bytes_received();
  return s;
}

// --- multi thread -------------------------------------------------------------------------------------------

void CurlMultiStrategy::run() noexcept {
  try {
    Running running;
    std::vector<Command> commands;
    std::vector<Completion> done;
    bool stop = false;
    while (!stop) {
      {
        std::lock_guard lock(mutex_);
        commands.swap(commands_);
      }
      stop = multi_apply(commands, running, done);
      commands.clear();
      if (!stop) {
        multi_resume_paused(running, done);
        int still_running = 0;
        const CURLMcode rc = curl_multi_perform(multi_.get(), &still_running);
        if (rc != CURLM_OK) spdlog::error("curl-multi: curl_multi_perform: {}", curl::describe(rc));
        multi_read_done(running, done);
      }
      if (!done.empty()) {
        {
          std::lock_guard lock(mutex_);
          for (auto& c : done) completions_.push_back(std::move(c));
        }
        done.clear();
        async_.send();
      }
      if (stop) break;
      const CURLMcode rc = curl_multi_poll(multi_.get(), nullptr, 0, multi_poll_timeout_ms(), nullptr);
      if (rc != CURLM_OK) spdlog::error("curl-multi: curl_multi_poll: {}", curl::describe(rc));
    }
    // Only reached with easy handles left when the strategy is destroyed without a completed drain; they must
    // leave the multi before curl_multi_cleanup, and nobody waits for their results any more.
    for (auto& [id, t] : running) curl_multi_remove_handle(multi_.get(), t->easy());
    multi_.reset();  // curl_multi_cleanup on the thread that drove it
  } catch (const std::exception& e) {
    // Only allocation failures can get here. A transfer whose result can never arrive would hang drain():
    // stop loudly instead.
    spdlog::critical("curl-multi: thread failed: {}", e.what());
    std::abort();
  }
}

bool CurlMultiStrategy::multi_apply(const std::vector<Command>& commands, Running& running,
                                    std::vector<Completion>& out) {
  bool stop = false;
  for (const Command& c : commands) {
    switch (c.kind) {
      case Command::Kind::kAdd: {
        const CURLMcode rc = curl_multi_add_handle(multi_.get(), c.transfer->easy());
        if (rc != CURLM_OK) {
          core::TransferResult r;
          r.id = c.id;
          r.category = core::ErrorCategory::kInternal;
          r.message = "curl_multi_add_handle: " + curl::describe(rc);
          out.push_back(Completion{c.id, std::move(r)});
        } else {
          running.emplace(c.id, c.transfer);
        }
        break;
      }
      case Command::Kind::kCancel: {
        // Absent: it finished first and its Completion is on its way; that result stands.
        auto it = running.find(c.id);
        if (it == running.end()) break;
        // Removing the handle stops the transfer now, even when it is stalled and no curl callback would come
        // to notice request_cancel(). Legal here: we are not inside a curl callback.
        const CURLMcode rc = curl_multi_remove_handle(multi_.get(), it->second->easy());
        if (rc != CURLM_OK) spdlog::error("curl-multi: curl_multi_remove_handle: {}", curl::describe(rc));
        out.push_back(Completion{c.id, cancelled_result(c.id, it->second->bytes_received())});
        running.erase(it);
        break;
      }
      case Command::Kind::kStop:
        stop = true;
        break;
    }
  }
  return stop;
}

void CurlMultiStrategy::multi_read_done(Running& running, std::vector<Completion>& out) {
  int pending = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_.get(), &pending)) {
    if (msg->msg != CURLMSG_DONE) continue;
    // Copy before remove_handle: the CURLMsg is invalid afterwards.
    CURL* easy = msg->easy_handle;
    const CURLcode code = msg->data.result;
    transfer::Transfer* t = transfer::Transfer::from_easy(easy);
    const CURLMcode rc = curl_multi_remove_handle(multi_.get(), easy);
    if (rc != CURLM_OK) spdlog::error("curl-multi: curl_multi_remove_handle: {}", curl::describe(rc));
    if (t == nullptr) continue;  // not ours: cannot happen, every handle added is a Transfer's
    const core::JobId id = t->request().id;
    running.erase(id);
    // finish() reads the easy handle's info: it belongs on the thread that drove the transfer.
    out.push_back(Completion{id, t->finish(code)});
  }
}

void CurlMultiStrategy::rate_paused(transfer::Transfer& transfer, std::chrono::steady_clock::time_point) {
  // Inside curl's write callback, on the multi thread: remember it; the loop resumes it (outside callbacks)
  // and shortens its poll to the limiter's wait.
  paused_.push_back(Paused{transfer.request().id, &transfer});
}

int CurlMultiStrategy::multi_poll_timeout_ms() {
  if (paused_.empty()) return kPollTimeoutMs;
  // Rounded up: waking early only finds the limiter in debt and polls again.
  const auto wait = std::chrono::ceil<std::chrono::milliseconds>(limiter_->wait()).count();
  return static_cast<int>(std::min<std::int64_t>(wait, kPollTimeoutMs));
}

void CurlMultiStrategy::multi_resume_paused(Running& running, std::vector<Completion>& out) {
  // Oldest first, while the limiter is out of debt: each resumed transfer takes the tokens for its held bytes
  // inside curl_easy_pause, so this stops once they are spent (see EventLoopStrategy::resume_paused).
  while (!paused_.empty() && limiter_->wait().count() == 0) {
    const Paused p = paused_.front();
    paused_.pop_front();
    auto it = running.find(p.id);
    if (it == running.end() || it->second != p.transfer || !p.transfer->rate_paused()) continue;
    // Not inside a curl callback: legal for curl_easy_pause, which calls our write callback itself.
    const CURLcode rc = curl_easy_pause(p.transfer->easy(), CURLPAUSE_CONT);
    if (rc != CURLE_OK) {
      // The held bytes could not be written (cancel, disk error): end the transfer as a completion would.
      const CURLMcode mrc = curl_multi_remove_handle(multi_.get(), p.transfer->easy());
      if (mrc != CURLM_OK) spdlog::error("curl-multi: curl_multi_remove_handle: {}", curl::describe(mrc));
      running.erase(it);
      out.push_back(Completion{p.id, p.transfer->finish(rc)});
    }
  }
}

void CurlMultiStrategy::progress(std::vector<JobProgress>& out) const {
  for (const auto& [id, entry] : entries_) out.push_back({id, entry.transfer->bytes_received()});
}

}  // namespace fetchd::strategy
