// SPDX-License-Identifier: Apache-2.0
#include "fetchd/strategy/worker.hpp"

#include <curl/curl.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <limits>
#include <memory>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "fetchd/strategy/event_loop_strategy.hpp"
#include "fetchd/strategy/file_workers.hpp"
#include "fetchd/strategy/worker_io.hpp"
#include "fetchd/strategy/worker_protocol.hpp"
#include "fetchd/transfer/transfer.hpp"
#include "fetchd/uv/loop.hpp"

namespace fetchd::strategy {

namespace {

constexpr int kExitSoftware = 70;  // EX_SOFTWARE, as in cmd/fetchd/commands.hpp
// How often a busy worker reports its byte total: often enough for the throughput line, rarely enough to cost
// nothing next to the transfers.
constexpr std::uint64_t kProgressIntervalMs = 200;

// The blocking worker's connection cache. A Transfer's easy handle takes its connections with it when it is
// cleaned up, so without a share every job would connect anew, and the origin would briefly see one
// connection too many while the last close is still on its way. Only the one transfer thread uses it, one
// transfer at a time, so it needs no lock callbacks.
// TODO(curl wrappers): belongs in lib/fetchd/curl/ as curl::Share (one RAII owner per C handle, design.md);
// thread-pool keeps the same kind of share.
struct ShareDeleter {
  void operator()(CURLSH* share) const noexcept {
    if (CURLSHcode rc = curl_share_cleanup(share); rc != CURLSHE_OK) {
      spdlog::error("curl_share_cleanup: {}", curl_share_strerror(rc));
    }
  }
};
using Share = std::unique_ptr<CURLSH, ShareDeleter>;

Share make_connection_share() {
  Share share(curl_share_init());
  if (!share) return share;
  if (CURLSHcode rc = curl_share_setopt(share.get(), CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
      rc != CURLSHE_OK) {
    spdlog::warn("curl_share_setopt(CONNECT): {}; every transfer opens its own connection",
                 curl_share_strerror(rc));
    share.reset();
  }
  return share;
}

// transfer::perform_blocking, with the share attached once prepare() made the easy handle, and a cache of one
// connection (a blocking worker never needs more).
core::TransferResult perform_with_share(transfer::Transfer& t, CURLSH* share) {
  if (auto early = t.prepare()) return t.publish(std::move(*early));
  if (share != nullptr && (curl_easy_setopt(t.easy(), CURLOPT_SHARE, share) != CURLE_OK ||
                           curl_easy_setopt(t.easy(), CURLOPT_MAXCONNECTS, 1L) != CURLE_OK)) {
    spdlog::warn("job {}: connection reuse is off for this transfer", t.request().id);
  }
  return t.publish(t.finish(curl_easy_perform(t.easy())));
}

// inner: blocking. One transfer at a time with curl_easy_perform on one thread (FileWorkers with one thread
// is exactly that: blocking work off the loop, completion back on it), so the worker's loop stays free to
// read cancels. Thread: the worker's loop thread, except the perform itself (and share_, which only it uses).
class SerialBlockingStrategy final : public Strategy {
 public:
  // limiter: the worker's share of limits.rate; the transfer sleeps in its write callback while it is in
  // debt.
  SerialBlockingStrategy(uv_loop_t* loop, ResultCallback on_result,
                         std::shared_ptr<transfer::RateLimiter> limiter)
      : on_result_(std::move(on_result)),
        limiter_(std::move(limiter)),
        share_(make_connection_share()),
        thread_(loop, 1) {}

  std::string_view name() const override { return "blocking"; }
  int capacity() const override { return 1; }

  void submit(core::TransferRequest request) override {
    if (draining_) throw std::logic_error("SerialBlockingStrategy::submit after drain");
    core::JobId id = request.id;
    auto transfer = std::make_unique<transfer::Transfer>(std::move(request));
    if (limiter_) transfer->set_rate_limiter(limiter_.get());
    auto* raw = transfer.get();
    entries_.emplace(id, std::move(transfer));
    auto out = std::make_shared<core::TransferResult>();
    thread_.post([this, raw, out] { *out = perform_with_share(*raw, share_.get()); },
                 [this, id, out] { finished(id, std::move(*out)); });
  }

  void cancel(core::JobId id) override {
    // The transfer's next progress or write callback (curl calls progress at least once a second) aborts it.
    if (auto it = entries_.find(id); it != entries_.end()) it->second->request_cancel();
  }

  void drain(std::function<void()> done) override {
    draining_ = true;
    drain_done_ = std::move(done);
    maybe_finish_drain();
  }

  StrategySnapshot snapshot() const override {
    StrategySnapshot s;
    s.active = entries_.size();
    s.bytes = finished_bytes_;
    for (const auto& [id, t] : entries_) s.bytes += t->bytes_received();
    return s;
  }

 private:
  void finished(core::JobId id, core::TransferResult result) {
    auto it = entries_.find(id);
    finished_bytes_ += it->second->bytes_received();
    entries_.erase(it);
    result.id = id;
    on_result_(std::move(result));
    maybe_finish_drain();
  }

  void maybe_finish_drain() {
    if (!draining_ || !entries_.empty() || !drain_done_) return;
    thread_.stop();
    auto done = std::move(drain_done_);
    drain_done_ = nullptr;
    done();
  }

  ResultCallback on_result_;
  std::shared_ptr<transfer::RateLimiter> limiter_;
  Share share_;  // outlives every Transfer below: curl_share_cleanup refuses while a handle still uses it
  FileWorkers thread_;
  std::unordered_map<core::JobId, std::unique_ptr<transfer::Transfer>> entries_;
  std::uint64_t finished_bytes_ = 0;
  bool draining_ = false;
  std::function<void()> drain_done_;
};

// The worker's side of the pipe. Thread: the worker's loop thread only.
class Worker {
 public:
  Worker(uv_loop_t* loop, const WorkerOptions& options) : in_(loop), out_(loop), progress_(loop) {
    auto on_result = [this](core::TransferResult r) { transfer_done(std::move(r)); };
    if (options.inner == config::InnerKind::kBlocking) {
      if (options.concurrency != 1) throw std::invalid_argument("inner blocking runs exactly one transfer");
      inner_ = std::make_unique<SerialBlockingStrategy>(loop, std::move(on_result), limiter_);
    } else {
      config::StrategyConfig sc;
      sc.kind = config::StrategyKind::kEventLoop;
      sc.concurrency = options.concurrency;
      // Same file-thread choice as make_strategy() makes for event-loop (see strategy.cpp for the reason).
      inner_ = std::make_unique<EventLoopStrategy>(sc, options.fsync ? 4 : 1, loop, std::move(on_result),
                                                   limiter_);
    }
    in_.open(options.in_fd);
    out_.open(options.out_fd);
    uv::check(in_.read_start([this](ssize_t n, const char* data) { input(n, data); }), "uv_read_start");
    progress_.start(kProgressIntervalMs, kProgressIntervalMs, [this] { report_progress(); });
    progress_.ref(false);  // never what keeps the worker alive
  }

  int exit_code() const { return exit_code_; }

 private:
  void input(ssize_t n, const char* data) {
    if (n < 0) {
      // EOF: the parent is done with us (drain) or gone. An error here means the same, less politely.
      if (n != UV_EOF) spdlog::warn("reading requests: {}", uv::describe(static_cast<int>(n)));
      finish(n == UV_EOF && lines_.empty() ? 0 : kExitSoftware);
      return;
    }
    bool ok = lines_.feed(data, static_cast<std::size_t>(n), [this](std::string_view line) {
      if (!finishing_) request(line);
    });
    if (!ok) {
      spdlog::error("a request line from the parent exceeds {} bytes", protocol::kMaxLineBytes);
      finish(kExitSoftware);
    }
  }

  void request(std::string_view line) {
    std::string error;
    auto message = protocol::decode_to_worker(line, &error);
    if (!message) {
      spdlog::error("unreadable request from the parent: {}", error);
      finish(kExitSoftware);
      return;
    }
    if (auto* submit = std::get_if<protocol::Submit>(&*message)) {
      core::JobId id = submit->request.id;
      if (!running_.insert(id).second) {
        // A second result for one id would be ambiguous to the parent: refuse the duplicate, keep the first.
        spdlog::error("job {} is already running here; duplicate ignored", id);
        return;
      }
      inner_->submit(std::move(submit->request));
    } else if (const auto* rate = std::get_if<protocol::Rate>(&*message)) {
      limiter_->set_rate(rate->bytes_per_s);
    } else {
      core::JobId id = std::get<protocol::Cancel>(*message).id;
      if (running_.count(id) != 0) inner_->cancel(id);
    }
  }

  void transfer_done(core::TransferResult result) {
    running_.erase(result.id);
    send(protocol::Result{std::move(result)});
  }

  void report_progress() {
    std::uint64_t bytes = inner_->snapshot().bytes;
    if (bytes == sent_bytes_) return;
    sent_bytes_ = bytes;
    send(protocol::Progress{bytes});
  }

  void send(const protocol::FromWorker& message, std::function<void()> then = {}) {
    if (out_broken_) {
      if (then) then();
      return;
    }
    int rc = out_.write(protocol::encode(message), [this, then = std::move(then)](int status) {
      // UV_ECANCELED: the pipe was closed under the write, which only happens once the worker is gone.
      if (status == UV_ECANCELED) return;
      if (status < 0) broken_output(status);
      if (then) then();
    });
    if (rc < 0) {
      broken_output(rc);
      if (then) then();
    }
  }

  void broken_output(int status) {
    if (out_broken_) return;
    out_broken_ = true;
    spdlog::error("writing results to the parent: {}; stopping", uv::describe(status));
    finish(kExitSoftware);
  }

  // Stops taking requests; on a failure also cancels what runs (nobody would hear of it). Once the inner
  // strategy drained: the final byte total, then the output closes and the loop runs out of handles.
  void finish(int code) {
    if (finishing_) return;
    finishing_ = true;
    exit_code_ = code;
    in_.read_stop();
    in_.close();
    if (code != 0) {
      std::vector<core::JobId> ids(running_.begin(), running_.end());
      for (auto id : ids) inner_->cancel(id);
    }
    inner_->drain([this] {
      progress_.close();
      std::uint64_t bytes = inner_->snapshot().bytes;
      // Writes complete in order: when the last one is done, every result before it reached the pipe.
      send(protocol::Progress{bytes}, [this] { out_.close(); });
    });
  }

  // The worker's share of limits.rate, which the parent sets and rebalances with "rate" messages. It starts
  // without a limit (rate 0: one atomic load per body chunk), which stays so when the parent has none.
  std::shared_ptr<transfer::RateLimiter> limiter_ = std::make_shared<transfer::RateLimiter>(0);
  Pipe in_;
  Pipe out_;
  uv::Timer progress_;
  protocol::LineBuffer lines_;
  std::unique_ptr<Strategy> inner_;
  std::unordered_set<core::JobId> running_;
  std::uint64_t sent_bytes_ = 0;
  bool finishing_ = false;
  bool out_broken_ = false;
  int exit_code_ = 0;
};

}  // namespace

int run_worker(const WorkerOptions& options) {
  int code = 0;
  uv::Loop loop;
  {
    Worker worker(loop.get(), options);
    loop.run();
    code = worker.exit_code();
  }
  if (int rc = loop.close(); rc != 0) {
    spdlog::error("the loop did not close cleanly ({})", uv::describe(rc));
    if (code == 0) code = kExitSoftware;
  }
  return code;
}

}  // namespace fetchd::strategy
