// SPDX-License-Identifier: Apache-2.0
#include "fetchd/service/daemon.hpp"

#include <fcntl.h>
#include <grp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <memory>
#include <unordered_set>

#include "fetchd/config/config.hpp"
#include "fetchd/control/control_server.hpp"
#include "fetchd/control/protocol.hpp"
#include "fetchd/core/dest_path.hpp"
#include "fetchd/core/unique_fd.hpp"
#include "fetchd/core/units.hpp"
#include "fetchd/core/version.hpp"
#include "fetchd/curl/curl.hpp"
#include "fetchd/scheduler/run.hpp"
#include "fetchd/scheduler/scheduler.hpp"
#include "fetchd/service/store_writer.hpp"
#include "fetchd/service/systemd.hpp"
#include "fetchd/stats/stats.hpp"
#include "fetchd/store/job_store.hpp"
#include "fetchd/transfer/publish_fence.hpp"
#include "fetchd/transfer/sink.hpp"
#include "fetchd/uv/loop.hpp"

namespace fetchd::service {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

// Outcomes alone wait up to this long for company before they are committed: a commit (and its fsync) per
// loop iteration costs more than the transfers it records. Holding them is safe: a job whose outcome a crash
// lost runs again, and finds its published file by the publish record (Transfer::own_result).
constexpr std::uint64_t kOutcomeCommitMs = 25;
constexpr std::uint64_t kTickMs = 1000;
// Jobs submitted in one loop iteration after which a connection waits for the next one (ControlServer::yield).
constexpr std::size_t kSubmitJobsPerTurn = control::kSubmitJobsPerLine;  // stats for watchers, progress events, sd_notify STATUS
constexpr std::uint64_t kPruneEveryMs = 3'600'000;
constexpr std::size_t kMaxWindow = 50'000;
constexpr std::size_t kMaxPendingUpdates = 1'000'000;

std::string config_key(const std::string& dest, const std::string& url) { return "config:" + dest + "\n" + url; }

// How many jobs the scheduler holds in memory: enough to keep every transfer slot busy between refills, and
// bounded however long the queue in the store is.
// A fleet node claims only twice what it runs at once: what it holds, the other nodes cannot run.
std::size_t window_for(const config::Config& c) {
  const auto concurrency = static_cast<std::size_t>(c.strategy.concurrency);
  if (!c.state.url.empty()) return std::clamp<std::size_t>(concurrency * 2, 16, kMaxWindow);
  return std::clamp<std::size_t>(concurrency * 4, 1024, kMaxWindow);
}

// This daemon's name in the fleet: state.node, else the host name.
std::string node_name(const config::Config& c) {
  if (!c.state.node.empty()) return c.state.node;
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return "fetchd";
  return host;
}

store::SqliteOptions sqlite_options(const config::Config& c) {
  store::SqliteOptions o;
  o.synchronous =
      c.state.synchronous == config::Synchronous::kFull ? store::Synchronous::kFull : store::Synchronous::kNormal;
  return o;
}

// The configured job behind each config key: the source of the options of config jobs stored by a fetchd
// before store schema 2, which kept none (newer jobs carry their own options in the store).
std::unordered_map<std::string, const config::Job*> config_jobs_by_key(const config::Config& c) {
  std::unordered_map<std::string, const config::Job*> out;
  for (const auto& job : c.jobs) out.emplace(config_key(c.dest_path(job).string(), job.url), &job);
  return out;
}

// Creates the missing folders of `dir`, each mode 0755 less the umask: a first run with a socket or state
// folder that does not exist yet just works. Throws std::runtime_error naming the folder, the error and
// `setting` (the config key to change), e.g. for /run/fetchd when not run as root.
void create_folders(const fs::path& dir, std::string_view what, std::string_view setting) {
  fs::path path;
  for (const auto& part : dir) {
    path /= part;
    if (::mkdir(path.c_str(), 0755) == 0 || errno == EEXIST) continue;
    const int err = errno;
    throw std::runtime_error(
        fmt::format("cannot create the {} folder {}: {} (set {} in the config to a path in a "
                    "folder you may write; config/local.yaml is a setup for one user)",
                    what, path.string(), std::strerror(err), setting));
  }
  struct stat st {};
  const bool found = ::stat(dir.c_str(), &st) == 0;
  if (!found || !S_ISDIR(st.st_mode)) {
    throw std::runtime_error(fmt::format("cannot use the {} folder {}: {} (set {} in the config)", what,
                                         dir.string(), found ? "not a folder" : std::strerror(errno),
                                         setting));
  }
}

std::optional<gid_t> group_id(const std::string& name) {
  if (name.empty()) return std::nullopt;
  std::vector<char> buf(16384);
  group g{};
  group* out = nullptr;
  if (getgrnam_r(name.c_str(), &g, buf.data(), buf.size(), &out) != 0 || out == nullptr) {
    throw std::runtime_error("control.group: no group named '" + name + "'");
  }
  return out->gr_gid;
}

class Daemon {
 public:
  // `store` is read on the loop thread; `writer_store`, a second connection to the same store, takes every
  // write of the loop's batches on the store writer's thread.
  Daemon(fs::path config_path, config::Config config, std::unique_ptr<store::JobStore> store,
         std::unique_ptr<store::JobStore> writer_store)
      : config_path_(std::move(config_path)),
        store_name_(store->describe()),
        shared_(store->shared()),
        node_(node_name(config)),
        config_(std::make_unique<config::Config>(std::move(config))),
        store_(std::move(store)),
        writer_store_(std::move(writer_store)),
        check_(loop_.get()),
        commit_timer_(loop_.get()),
        tick_timer_(loop_.get()),
        log_timer_(loop_.get()),
        prune_timer_(loop_.get()),
        watchdog_timer_(loop_.get()),
        grace_timer_(loop_.get()),
        sigterm_(loop_.get()),
        sigint_(loop_.get()),
        sighup_(loop_.get()),
        throughput_(std::string(config::to_string(config_->strategy.kind))) {
    config_jobs_ = config_jobs_by_key(*config_);
  }

  int run();

 private:
  // --- start-up and shutdown
  void start_listening();
  void begin_shutdown(int signum);
  void finish_shutdown();
  void close_handles();

  // --- the store: batched writes, the in-memory window
  void on_check();
  bool commit_is_due();
  void flush();
  void sync_store();
  struct PendingSubmit;
  void committed(StoreWriter::Result result, std::vector<PendingSubmit> pending, std::vector<std::string> events);
  void refill();
  // Shared store: extends the leases of the jobs this node holds; a lost one is dropped here (lose()).
  void renew_leases();
  void renewed(const std::vector<store::Held>& held, const store::BatchResult& result);
  void lose(core::JobId id);
  void move_publish_fence(Clock::time_point from);
  void remove_others_parts(const store::Job& job);
  void on_notices();
  bool window_has_room() const {
    return scheduler_->runnable() + scheduler_->running() + retry_wait_.size() + claim_pending_ < window_;
  }
  void add_to_scheduler(const store::Job& job);
  // failed_attempt: `error` is a failed attempt's (appended to the job's errors); skipped: done without a
  // download, the destination existed (on_exists: skip).
  // A shared store's job is recorded only under this node's lease (a job it no longer holds is another node's
  // business), unless `unfenced` (a client's cancel of a job this node does not hold).
  void record(core::JobId id, store::State state, int attempts, std::string error, std::uint64_t bytes,
              bool failed_attempt = false, bool skipped = false, bool unfenced = false);
  // Records the starts not written yet, then commits: what the store says is then what is true now.
  void flush_all();
  void record_starts();
  // The store's counts, with the unrecorded starts counted as running.
  store::Counts counts_now();

  // --- scheduler hooks
  void on_started(const scheduler::JobRecord& job);
  void on_retry(const scheduler::JobRecord& job);
  void on_finished(const scheduler::JobRecord& job);

  // --- control requests
  void on_line(control::ConnectionId conn, control::ParseResult parsed);
  void dispatch(control::ConnectionId conn, control::Request& request);
  void handle_submit(control::ConnectionId conn, const std::optional<json>& req, control::Submit& submit);
  void handle_status(control::ConnectionId conn, const std::optional<json>& req, core::JobId id);
  void handle_cancel(control::ConnectionId conn, const std::optional<json>& req, core::JobId id);
  void handle_list(control::ConnectionId conn, const std::optional<json>& req, const control::List& list);
  json stats_json();
  void reply_error(control::ConnectionId conn, control::ErrorCode code, std::string message, std::string_view op,
                   const std::optional<json>& req);
  std::optional<store::Job> job_now(core::JobId id);

  // --- config
  // Returns the config errors (then nothing changed); *added = jobs of the job list that were new.
  std::vector<std::string> reload(std::size_t* added = nullptr);
  std::size_t enqueue_config_jobs(const config::Config& c);
  void start_log_timer();

  // --- watch
  void emit(std::string_view event, const store::Job& job);
  void emit(std::string_view event, const scheduler::JobRecord& job, store::State state);
  void send_events();
  void tick();
  std::uint64_t queued_in_store(std::uint64_t fallback);

  fs::path config_path_;
  std::string store_name_;  // the job store of this run (a reload's state.* applies at the next start)
  // A shared store (a fleet on PostgreSQL): jobs come from claims with leases, and every outcome is fenced.
  bool shared_ = false;
  std::string node_;  // shared store: this node's name
  std::unique_ptr<config::Config> config_;
  std::unordered_map<std::string, const config::Job*> config_jobs_;  // config_key -> job of config_
  std::unique_ptr<store::JobStore> store_;
  std::unique_ptr<store::JobStore> writer_store_;  // until run() hands it to writer_
  uv::Loop loop_;
  std::unique_ptr<StoreWriter> writer_;  // after loop_: closed and joined before the loop goes
  std::unique_ptr<scheduler::Scheduler> scheduler_;
  std::unique_ptr<control::ControlServer> control_;
  Notifier notifier_;

  uv::Check check_;
  uv::Poll notice_poll_;  // shared store: other nodes' notices (jobs queued, cancels)
  uv::Timer commit_timer_, tick_timer_, log_timer_, prune_timer_, watchdog_timer_, grace_timer_;
  uv::Signal sigterm_, sigint_, sighup_;
  stats::Throughput throughput_;
  Clock::time_point started_ = Clock::now();

  // Writes gathered since the last commit was handed to the writer.
  store::Batch batch_;
  std::string last_commit_error_;
  std::size_t submitted_this_turn_ = 0;  // of the last commit; empty when it went in
  struct PendingSubmit {
    control::ConnectionId conn = 0;
    std::optional<json> req;
    std::size_t first = 0;  // index into batch_.submits
    std::size_t count = 0;
  };
  std::vector<PendingSubmit> pending_submits_;
  std::size_t last_flush_created_ = 0;  // new jobs of the last commit
  std::uint64_t last_commit_ms_ = 0;    // loop time of the last commit
  std::uint64_t retry_backoff_ms_ = 0;  // after failed commits: 100 ms, doubling to 5 s
  bool commit_timer_armed_ = false;
  std::vector<std::string> pending_events_;  // watch events of changes not committed yet

  // The window: the scheduler holds at most window_ jobs; the rest wait in the store.
  std::size_t window_ = 1024;
  std::optional<store::Cursor> cursor_;  // run-order position of the last job loaded from the store
  bool store_has_more_ = true;           // queued jobs may be in the store beyond cursor_
  bool rewind_ = false;                  // a job sorting before cursor_ was submitted: read from the start
  std::unordered_set<core::JobId> retry_wait_;          // in memory, waiting for their next attempt
  // Started jobs whose "running" is not written yet, with their attempt. A start is written on the next tick
  // (so a job running for a second is durably running) or before a request reads the store, and dropped when
  // the outcome comes first: a short transfer then costs the store one write, its outcome. The price: a crash
  // in an attempt's first second does not count that attempt (docs/store.md, "Recovery at start-up").
  std::unordered_map<core::JobId, int> unrecorded_starts_;
  // Finished jobs whose outcome is not committed yet: the store still has them queued (or running), so the
  // window must not load them again.
  std::unordered_set<core::JobId> unsettled_;
  std::size_t submits_in_flight_ = 0;  // jobs of the commit in progress that wait for their answer
  std::unordered_set<core::JobId> user_cancelled_;       // cancels asked by a client (vs. shutdown)
  // Shared store: the jobs this node claimed, with their lease tokens, until their outcome is committed (they
  // are renewed meanwhile); and the jobs cancelled here because their lease was lost (nothing of them is
  // recorded).
  std::unordered_map<core::JobId, std::uint64_t> leases_;
  std::unordered_set<core::JobId> lost_;
  std::uint64_t last_renew_ms_ = 0;
  std::size_t claim_pending_ = 0;  // jobs asked for by the claim of the current or next commit
  bool renew_pending_ = false;     // a renewal is in the current or next commit
  store::Counts fleet_counts_;     // shared store: the counts of the latest commit that asked for them
  Clock::time_point renew_started_{};  // when the renewal of the current or next commit was asked for

  std::unordered_set<control::ConnectionId> watchers_;
  bool shutting_down_ = false;
  std::uint64_t last_tick_files_ = 0;
  std::uint64_t last_tick_bytes_ = 0;
  double files_per_s_ = 0;
  double mib_per_s_ = 0;
};

// ------------------------------------------------------------------------------------------------ start-up

int Daemon::run() {
  writer_ = std::make_unique<StoreWriter>(loop_.get(), std::move(writer_store_));
  window_ = window_for(*config_);
  auto requeued = store_->requeue_running();
  if (requeued > 0) spdlog::info("store: {} job(s) left running by the previous process re-queued", requeued);
  auto pruned = store_->prune({std::chrono::duration_cast<std::chrono::seconds>(config_->state.history_max_age),
                               config_->state.history_max_jobs});
  if (pruned > 0) spdlog::info("store: pruned {} finished job(s) from the history", pruned);

  control_ = std::make_unique<control::ControlServer>(
      loop_.get(), [this](control::ConnectionId c, control::ParseResult r) { on_line(c, std::move(r)); },
      [this](control::ConnectionId c) { watchers_.erase(c); },
      control::ControlServer::Options{.max_connections = static_cast<std::size_t>(config_->control.max_connections)});
  try {
    start_listening();
  } catch (const std::exception& e) {
    // Nothing runs yet; close what is open so the loop can close cleanly.
    spdlog::error("serve: {}", e.what());
    close_handles();
    loop_.run();
    control_.reset();
    return kExitStartup;
  }

  // The scheduler (and its strategy: threads, worker processes) only once the socket is ours.
  scheduler::Scheduler::Options opts;
  opts.per_host = config_->limits.per_host;
  opts.on_started = [this](const scheduler::JobRecord& j) { on_started(j); };
  opts.on_retry = [this](const scheduler::JobRecord& j) { on_retry(j); };
  opts.on_finished = [this](const scheduler::JobRecord& j) { on_finished(j); };
  if (shared_) {
    // A rate limit is the origin's, not this node's: the whole fleet backs off.
    opts.on_pause = [this](const std::string& origin, std::chrono::milliseconds pause) {
      batch_.pauses.push_back({origin, pause});
    };
  }
  scheduler_ = std::make_unique<scheduler::Scheduler>(
      loop_.get(),
      [this](strategy::Strategy::ResultCallback cb) {
        return strategy::make_strategy(*config_, loop_.get(), std::move(cb));
      },
      std::move(opts));

  auto added = enqueue_config_jobs(*config_);
  sync_store();
  // Before the first claim: its leases last at least until now + lease.
  if (shared_) move_publish_fence(Clock::now());
  refill();
  if (int fd = store_->notice_fd(); fd >= 0) {
    notice_poll_ = uv::Poll(loop_.get(), fd);
    notice_poll_.start(UV_READABLE, [this](int, int) { on_notices(); });
  }

  check_.start([this] { on_check(); });
  tick_timer_.start(kTickMs, kTickMs, [this] { tick(); });
  start_log_timer();
  prune_timer_.start(kPruneEveryMs, kPruneEveryMs, [this] {
    try {
      sync_store();  // the writer is idle while the loop's connection deletes
      store_->prune({std::chrono::duration_cast<std::chrono::seconds>(config_->state.history_max_age),
                     config_->state.history_max_jobs});
    } catch (const std::exception& e) {
      spdlog::error("store: pruning failed: {}", e.what());
    }
  });
  if (auto wd = watchdog_interval()) {
    auto every = static_cast<std::uint64_t>(std::max<std::int64_t>(1, wd->count() / 2000));
    watchdog_timer_.start(every, every, [this] { notifier_.watchdog(); });
  } else {
    watchdog_timer_.close();
  }
  sigterm_.start(SIGTERM, [this](int s) { begin_shutdown(s); });
  sigint_.start(SIGINT, [this](int s) { begin_shutdown(s); });
  sighup_.start(SIGHUP, [this](int) { reload(); });  // errors are logged; fetchctl reload reports them
  grace_timer_.stop();

  auto counts = store_->counts();
  fleet_counts_ = counts;
  spdlog::info(
      "serve: ready in {:.0f} ms; strategy={} concurrency={} output={} store={} queued={} "
      "(from the job list: {} new)",
      std::chrono::duration<double, std::milli>(Clock::now() - started_).count(),
      config::to_string(config_->strategy.kind), config_->strategy.concurrency, config_->output.dir.string(),
      store_name_, counts.queued, added);
  notifier_.ready();

  loop_.run();

  auto totals = scheduler_->counters();
  totals.queued = queued_in_store(totals.queued);  // as in the periodic line: the whole queue, not the window
  spdlog::info("{}", throughput_.total(totals));
  scheduler_.reset();
  control_.reset();
  spdlog::info("serve: stopped");
  return kExitOk;
}

void Daemon::start_listening() {
  auto fds = take_listen_fds();
  if (!fds.empty()) {
    for (int fd : fds) control_->adopt(fd);
    spdlog::info("control: {} socket(s) from systemd (socket activation)", fds.size());
  } else {
    const auto& c = config_->control;
    try {
      create_folders(c.socket.parent_path(), "control socket's", "control.socket");
    } catch (const std::exception& e) {
      throw std::runtime_error(fmt::format("control socket {}: {}", c.socket.string(), e.what()));
    }
    control_->listen_unix(c.socket, c.mode, group_id(c.group));
  }
  if (const auto& tcp = config_->control.tcp; !tcp.empty()) {
    auto colon = tcp.rfind(':');
    std::string host = tcp.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    if (host == "localhost") host = "127.0.0.1";
    control_->listen_tcp(host, std::stoi(tcp.substr(colon + 1)));
  }
}

// ------------------------------------------------------------------------------------------------ shutdown

void Daemon::begin_shutdown(int signum) {
  if (shutting_down_) {
    // Second signal: leave now. Every commit is atomic, so the store is consistent; jobs still running are
    // re-queued at the next start.
    spdlog::warn("{} again: exiting now", strsignal(signum));
    try {
      sync_store();
    } catch (...) {
    }
    std::_Exit(kExitOk);
  }
  shutting_down_ = true;
  spdlog::info("{}: shutting down; in-flight transfers get {} to finish (again to exit at once)",
               strsignal(signum), core::format_duration(config_->shutdown.grace));
  notifier_.stopping();
  auto grace_ms = static_cast<std::uint64_t>(config_->shutdown.grace.count());
  notifier_.extend_timeout(std::chrono::milliseconds(grace_ms) + std::chrono::seconds(15));
  control_->stop_listening();
  grace_timer_.start(grace_ms, 0, [this] {
    spdlog::warn("shutdown: grace period over; cancelling {} transfer(s) (they run again at the next start)",
                 scheduler_->running());
    // Only what runs: the jobs queued or waiting to retry behind it were never started by this drain, and
    // stay queued in the store exactly as they are.
    scheduler_->cancel_running();
  });
  scheduler_->drain([this] { finish_shutdown(); });
}

void Daemon::finish_shutdown() {
  // Deferred to the check callback: drain's callback runs inside the strategy.
  check_.start([this] {
    sync_store();
    if (!batch_.empty() || writer_->busy()) spdlog::error("store: the final commit failed; the jobs concerned run again");
    writer_->wait();  // a commit its completion handed on
    if (shared_) {
      // The jobs this node claimed but did not finish go back to the fleet now, not when their lease ends.
      try {
        auto released = store_->requeue_running();
        if (released > 0) spdlog::info("store: {} claimed job(s) handed back to the queue", released);
      } catch (const std::exception& e) {
        spdlog::error("store: handing back the claimed jobs failed (they return when their lease ends): {}",
                      e.what());
      }
    }
    close_handles();
  });
}

// After this, the loop ends once the close callbacks ran (the scheduler has drained or never started).
void Daemon::close_handles() {
  check_.close();
  notice_poll_.close();
  writer_->close();
  commit_timer_.close();
  tick_timer_.close();
  log_timer_.close();
  prune_timer_.close();
  watchdog_timer_.close();
  grace_timer_.close();
  sigterm_.close();
  sigint_.close();
  sighup_.close();
  control_->close([] {});
}

// ------------------------------------------------------------------------------------------------ the store

void Daemon::record(core::JobId id, store::State state, int attempts, std::string error, std::uint64_t bytes,
                    bool failed_attempt, bool skipped, bool unfenced) {
  std::uint64_t lease = 0;
  if (auto it = leases_.find(id); it != leases_.end()) lease = it->second;
  if (shared_ && lease == 0 && !unfenced) {
    spdlog::debug("job {}: not recorded as {}: this node holds no lease on it", id, store::to_string(state));
    return;
  }
  std::optional<std::string> attempt_error;
  if (failed_attempt) attempt_error = error;
  if (store::finished(state)) unsettled_.insert(id);
  batch_.updates.push_back(store::Update{id, state, attempts, std::move(error), bytes, std::move(attempt_error),
                                         skipped, lease, /*if_unfinished=*/unfenced});
}

store::Counts Daemon::counts_now() {
  // A fleet's counts come with the commits (a tick asks for them), so no request waits for the database.
  auto c = shared_ ? fleet_counts_ : store_->counts();
  // Every unrecorded start is a job the store still has queued.
  const auto started = static_cast<std::uint64_t>(unrecorded_starts_.size());
  c.queued -= std::min(c.queued, started);
  c.running += started;
  return c;
}

void Daemon::record_starts() {
  for (const auto& [id, attempt] : unrecorded_starts_) record(id, store::State::kRunning, attempt, "", 0);
  unrecorded_starts_.clear();
}

void Daemon::flush_all() {
  record_starts();
  sync_store();
}

// Commits everything recorded so far and waits for it, so that a read of the store sees it. Blocks the loop for
// the commit in progress and one more at most; after a failed commit it waits for nothing more (the failure is
// logged, the updates are kept for the next commit).
void Daemon::sync_store() {
  for (int round = 0; round < 3; ++round) {
    if (!writer_->busy()) {
      if (batch_.empty() || (round > 0 && !last_commit_error_.empty())) break;
      flush();
    }
    writer_->wait();
  }
  if (!writer_->busy() && batch_.empty()) send_events();  // else they wait for the commit of their changes
}

// Submits commit in the loop iteration that read them (their answer waits for it); outcomes alone wait for
// kOutcomeCommitMs since the last commit.
bool Daemon::commit_is_due() {
  if (!batch_.submits.empty() || batch_.empty() || shutting_down_) return true;
  // Claims and renewals go at once (a node waits for jobs, leases run out); outcomes alone wait for company.
  // After a failed commit (the store is unreachable) all but submits are tried again with backoff; submits
  // are not held back (they fail at once, and their clients are told "unavailable").
  const bool urgent = batch_.claim > 0 || batch_.renew || !batch_.pauses.empty();
  const std::uint64_t wait = !last_commit_error_.empty() ? retry_backoff_ms_ : urgent ? 0 : kOutcomeCommitMs;
  const std::uint64_t since = uv_now(loop_.get()) - last_commit_ms_;
  if (since >= wait) return true;
  if (!commit_timer_armed_) {
    commit_timer_armed_ = true;
    commit_timer_.start(wait - since, 0, [this] {
      commit_timer_armed_ = false;
      on_check();
    });
  }
  return false;
}

void Daemon::on_check() {
  if (commit_is_due()) flush();
  if (!shutting_down_) refill();
  submitted_this_turn_ = 0;
  control_->resume_yielded();
}

// Hands everything gathered since the last commit to the store writer, unless a commit is in progress: its
// completion hands on what gathered meanwhile. Submits are answered once their commit is done.
void Daemon::flush() {
  if (writer_->busy()) return;
  if (batch_.empty()) {
    send_events();
    return;
  }
  last_commit_ms_ = uv_now(loop_.get());
  // The events of exactly the changes in this commit; what the commit's aftermath adds (jobs starting at once)
  // waits for the next one.
  auto events = std::move(pending_events_);
  pending_events_.clear();
  auto pending = std::move(pending_submits_);
  pending_submits_.clear();
  store::Batch batch = std::move(batch_);
  batch_ = {};
  submits_in_flight_ = batch.submits.size();
  writer_->commit(std::move(batch), [this, events = std::move(events), pending = std::move(pending)](
                                        StoreWriter::Result result) mutable {
    committed(std::move(result), std::move(pending), std::move(events));
  });
}

void Daemon::committed(StoreWriter::Result result, std::vector<PendingSubmit> pending,
                       std::vector<std::string> events) {
  last_commit_error_ = result.committed ? "" : result.error;
  if (result.batch.claim > 0) claim_pending_ = 0;
  if (result.batch.renew) renew_pending_ = false;
  if (result.committed && result.committed->counts) fleet_counts_ = *result.committed->counts;
  retry_backoff_ms_ = result.committed ? 0 : std::clamp<std::uint64_t>(retry_backoff_ms_ * 2, 100, 5000);
  submits_in_flight_ = 0;
  for (const auto& u : result.batch.updates) {
    if (store::finished(u.state)) unsettled_.erase(u.id);
  }
  for (const auto& u : result.kept) {
    if (store::finished(u.state)) unsettled_.insert(u.id);  // not stored after all: goes again with the next
  }
  if (!result.committed) {
    spdlog::error("store: {}", result.error);
    events.insert(events.end(), pending_events_.begin(), pending_events_.end());
    pending_events_ = std::move(events);
    // Nothing of the batch is stored: refuse the submits (the client may retry). The updates that failed
    // alone too go first in the next commit.
    for (const auto& p : pending) {
      reply_error(p.conn, control::ErrorCode::kUnavailable, "job store: " + result.error, "submit", p.req);
    }
    auto kept = std::move(result.kept);
    kept.insert(kept.end(), std::make_move_iterator(batch_.updates.begin()),
                std::make_move_iterator(batch_.updates.end()));
    // Still failing one by one: the store itself is broken (disk full, I/O error); keep them for later, but
    // bounded, so a long outage cannot grow memory without limit (the jobs then run again after a restart).
    if (kept.size() > kMaxPendingUpdates) kept.erase(kept.begin(), kept.end() - kMaxPendingUpdates);
    batch_.updates = std::move(kept);
    return;
  }
  const auto& outcomes = result.committed->submits;
  auto& submits = result.batch.submits;
  if (shared_) {
    for (const auto& u : result.batch.updates) {
      if (store::finished(u.state)) leases_.erase(u.id);
    }
    for (auto id : result.committed->fenced) {
      // Another node holds the job now (this node's lease ran out), or a client cancelled it elsewhere.
      spdlog::warn("job {}: its lease was lost; this node's update of it was not stored", id);
      // Unless this node claimed it again since, under a newer token: that claim is still good.
      const auto update = std::find_if(result.batch.updates.begin(), result.batch.updates.end(),
                                       [id](const store::Update& u) { return u.id == id; });
      const auto held = leases_.find(id);
      if (held != leases_.end() && update != result.batch.updates.end() && held->second != update->lease) continue;
      lose(id);
    }
    if (result.batch.renew) renewed(*result.batch.renew, *result.committed);
    auto& claimed = result.committed->claimed;
    for (const auto& job : claimed) {
      if (shutting_down_) break;  // the final hand-back (requeue_running) returns them
      if (scheduler_->contains(job.id)) {
        // Still running here under a lease that expired (this node was stopped): that attempt must not record
        // under the new lease. The old lease fails its renewal and stops it; the new one then expires and the
        // job is claimed afresh.
        continue;
      }
      leases_[job.id] = job.lease;
      remove_others_parts(job);
      add_to_scheduler(job);
    }
    if (result.batch.claim > 0 && claimed.size() < result.batch.claim) store_has_more_ = false;
  }

  last_flush_created_ = 0;
  for (std::size_t i = 0; i < submits.size(); ++i) {
    const auto& outcome = outcomes.at(i);
    if (outcome.kind != store::SubmitOutcome::Kind::kCreated) continue;
    ++last_flush_created_;
    store::Job job;
    job.id = outcome.id;
    job.key = std::move(submits[i].key);
    job.url = std::move(submits[i].url);
    job.dest = submits[i].dest;  // kept: a conflict's message below names it
    job.sha256 = std::move(submits[i].sha256);
    job.size = submits[i].size;
    job.headers = std::move(submits[i].headers);
    job.priority = submits[i].priority;
    job.options = std::move(submits[i].options);
    emit("queued", job);
    if (shutting_down_) continue;
    bool before_cursor = cursor_ && job.priority > cursor_->priority;
    if (!shared_ && !store_has_more_ &&
        window_has_room()) {  // a shared store's jobs are claimed, never taken
      add_to_scheduler(job);
    } else {
      store_has_more_ = true;
      if (before_cursor) rewind_ = true;
    }
  }
  for (const auto& p : pending) {
    json jobs = json::array();
    std::optional<std::string> conflict;
    for (std::size_t i = p.first; i < p.first + p.count; ++i) {
      const auto& o = outcomes.at(i);
      if (o.kind == store::SubmitOutcome::Kind::kConflict) {
        if (!conflict) {
          conflict = fmt::format("jobs[{}].dest: {} is already the destination of unfinished job {}",
                                 i - p.first, submits[i].dest, o.id);
        }
        jobs.push_back({{"error", "conflict"}, {"conflicts_with", o.id}});
        continue;
      }
      jobs.push_back({{"id", o.id},
                      {"state", store::to_string(o.state)},
                      {"existing", o.kind == store::SubmitOutcome::Kind::kExisting}});
    }
    if (conflict) {
      // Not all or nothing: the other jobs were stored (and may run already), so the answer lists them.
      control::ProtocolError err{control::ErrorCode::kConflict, *conflict, "submit", p.req, std::move(jobs)};
      std::string line = control::encode_error(err);
      control_->send(p.conn, std::move(line));
    } else {
      control_->send(p.conn, control::encode_result("submit", p.req, json{{"jobs", std::move(jobs)}}));
    }
  }
  for (const auto& line : events) {
    for (auto conn : watchers_) control_->send(conn, line);
  }
  // What gathered during this commit: submits wait for no timer.
  if (!batch_.empty() && commit_is_due()) flush();
}

// Loads queued jobs from the store while the window has room. Jobs already in memory are skipped (a job that
// was added directly on submit is also still "queued" in the store until it starts).
void Daemon::refill() {
  if (!store_has_more_ && !rewind_) return;
  if (!window_has_room()) return;
  // Only when the queue in memory runs low, so a refill reads a large batch rather than one job at a time.
  if (scheduler_->runnable() > static_cast<std::size_t>(config_->strategy.concurrency) && !rewind_) return;
  if (shared_) {
    // Claimed in the next commit, on the writer's thread: the loop never waits for the database.
    if (claim_pending_ > 0) return;
    claim_pending_ = window_ - (scheduler_->runnable() + scheduler_->running() + retry_wait_.size());
    batch_.claim = claim_pending_;
    if (commit_is_due()) flush();
    return;
  }
  if (rewind_) {
    cursor_.reset();
    rewind_ = false;
  }
  std::size_t room = window_ - (scheduler_->runnable() + scheduler_->running() + retry_wait_.size());
  std::vector<store::Job> jobs;
  try {
    jobs = store_->next_queued(cursor_, room);
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return;
  }
  for (const auto& job : jobs) {
    cursor_ = store::Cursor{job.priority, job.id};
    // In memory already, or finished with its outcome not committed yet (it would run again).
    if (scheduler_->contains(job.id) || unsettled_.count(job.id)) continue;
    add_to_scheduler(job);
  }
  if (jobs.size() < room) store_has_more_ = false;
}

// The job's own stored options over the current defaults: a job keeps its options after a config edit (a
// config job with new options is a new job only once the old one is cancelled, see docs/configuration.md).
void Daemon::add_to_scheduler(const store::Job& job) {
  const core::JobOptions* options = &job.options;
  if (auto it = config_jobs_.find(job.key); options->empty() && it != config_jobs_.end()) {
    options = &it->second->options;  // stored before schema 2 (no options kept): the config's, as then
  }
  core::TransferRequest r;
  r.id = job.id;
  r.url = job.url;
  r.dest = job.dest;
  r.sha256 = job.sha256;
  r.sha512 = options->sha512;
  r.expected_size = job.size;
  r.on_exists = config_->output.on_exists;
  r.fsync = config_->output.fsync;
  r.publish_record = true;
  if (shared_) {
    r.part_tag = node_;
    r.fenced = true;
  }
  r.options = config_->effective_options(*options, job.headers);
  r.priority = job.priority;
  scheduler_->add(std::move(r), job.attempts);
}

// ------------------------------------------------------------------------------------------------ scheduler hooks

void Daemon::on_started(const scheduler::JobRecord& job) {
  retry_wait_.erase(job.request.id);
  unrecorded_starts_[job.request.id] = job.request.attempt;
  emit("started", job, store::State::kRunning);
}

void Daemon::on_retry(const scheduler::JobRecord& job) {
  unrecorded_starts_.erase(job.request.id);
  retry_wait_.insert(job.request.id);
  record(job.request.id, store::State::kQueued, job.request.attempt, job.last.message, job.last.bytes,
         /*failed_attempt=*/true);
  emit("queued", job, store::State::kQueued);
}

void Daemon::on_finished(const scheduler::JobRecord& job) {
  auto id = job.request.id;
  unrecorded_starts_.erase(id);
  retry_wait_.erase(id);  // when it was cancelled while waiting
  if (lost_.erase(id)) return;  // another node runs it now: nothing to record, and its .part is not ours to remove
  if (job.last.fenced_out) {
    // Downloaded but not published: the lease may have ended. Nothing is recorded; the job runs again when
    // its lease is over (here or on another node).
    spdlog::warn("job {}: {}", id, job.last.message);
    leases_.erase(id);
    return;
  }
  int attempts = job.request.attempt;  // with those of earlier daemon runs (Scheduler::add)
  store::State state = store::State::kFailed;
  if (job.state == scheduler::JobState::kDone) {
    state = store::State::kDone;
  } else if (job.state == scheduler::JobState::kCancelled) {
    state = store::State::kCancelled;
    if (!user_cancelled_.erase(id) && shutting_down_) {
      // Stopped by the shutdown, not by a client: it runs again at the next start. An interrupted attempt
      // does not count against its retries. A job that was queued or waiting to retry lost nothing: the store
      // already has it queued, with its attempts and its previous error, so nothing is written.
      if (job.interrupted) {
        record(id, store::State::kQueued, std::max(0, attempts - 1), "interrupted by shutdown",
               job.last.bytes);
      }
      return;
    }
    // A cancelled transfer keeps its .part (a shutdown resumes it); a job cancelled for good has no use for it.
    const std::string part = transfer::part_path_for(job.request.dest, job.request.part_tag);
    if (::unlink(part.c_str()) != 0 && errno != ENOENT) {
      spdlog::warn("job {}: remove {}: {}", id, part, std::strerror(errno));
    }
  }
  record(id, state, attempts, job.last.ok() ? "" : job.last.message, job.last.bytes,
         /*failed_attempt=*/state == store::State::kFailed,
         /*skipped=*/state == store::State::kDone && job.last.skipped);
  emit(state == store::State::kDone ? "done" : state == store::State::kFailed ? "failed" : "cancelled", job,
       state);
}

// ------------------------------------------------------------------------------------------------ control

void Daemon::reply_error(control::ConnectionId conn, control::ErrorCode code, std::string message,
                         std::string_view op, const std::optional<json>& req) {
  control_->send(conn, control::encode_error(control::ProtocolError{code, std::move(message), std::string(op), req}));
}

void Daemon::on_line(control::ConnectionId conn, control::ParseResult parsed) {
  // Responses go out in request order: a submit's answer waits for the commit, so every other request commits
  // what is pending first.
  auto* request = std::get_if<control::Request>(&parsed);
  if (!request || !std::holds_alternative<control::Submit>(request->op)) {
    // Requests that read jobs see their starts too; stats corrects its counts instead (counts_now).
    const bool reads_jobs = request && (std::holds_alternative<control::Status>(request->op) ||
                                        std::holds_alternative<control::List>(request->op) ||
                                        std::holds_alternative<control::Cancel>(request->op));
    try {
      // Others (stats, ping, watch) see the committed state, which is all a client has been told; they wait
      // only when a submit's answer is still to go out (answers keep the order of the requests).
      if (reads_jobs) {
        flush_all();
      } else if (!batch_.submits.empty() || submits_in_flight_ > 0) {
        sync_store();
      } else {
        flush();
      }
    } catch (const std::exception& e) {
      spdlog::error("{}", e.what());
    }
  }
  if (!request) {
    control_->send(conn, control::encode_error(std::get<control::ProtocolError>(parsed)));
    return;
  }
  const auto& req = request->req;
  try {
    dispatch(conn, *request);
  } catch (const store::StoreError& e) {
    // The database is unreachable (a fleet's, while it restarts): the request can be asked again later.
    reply_error(conn, control::ErrorCode::kUnavailable, std::string("job store: ") + e.what(),
                control::op_name(request->op), req);
  }
}

void Daemon::dispatch(control::ConnectionId conn, control::Request& request) {
  const auto& req = request.req;
  std::visit(
      [&](auto& op) {
        using T = std::decay_t<decltype(op)>;
        if constexpr (std::is_same_v<T, control::Submit>) {
          handle_submit(conn, req, op);
          // A long pipelined submit takes turns with the transfers: the jobs of its first lines are committed
          // and start while the next lines wait for the next loop iteration.
          submitted_this_turn_ += op.jobs.size();
          if (submitted_this_turn_ >= kSubmitJobsPerTurn) control_->yield(conn);
        } else if constexpr (std::is_same_v<T, control::Status>) {
          handle_status(conn, req, op.id);
        } else if constexpr (std::is_same_v<T, control::Cancel>) {
          handle_cancel(conn, req, op.id);
        } else if constexpr (std::is_same_v<T, control::List>) {
          handle_list(conn, req, op);
        } else if constexpr (std::is_same_v<T, control::Stats>) {
          control_->send(conn, control::encode_result("stats", req, stats_json()));
        } else if constexpr (std::is_same_v<T, control::Watch>) {
          watchers_.insert(conn);
          control_->send(conn, control::encode_result("watch", req, json{{"watching", true}}));
        } else if constexpr (std::is_same_v<T, control::Reload>) {
          std::size_t added = 0;
          auto errors = reload(&added);
          if (errors.empty()) {
            control_->send(conn,
                           control::encode_result("reload", req, json{{"reloaded", true}, {"jobs_added", added}}));
          } else {
            std::string msg;
            for (const auto& e : errors) msg += (msg.empty() ? "" : "\n") + e;
            reply_error(conn, control::ErrorCode::kReloadFailed, msg, "reload", req);
          }
        } else if constexpr (std::is_same_v<T, control::Ping>) {
          json pong{{"version", core::kVersion}, {"pid", static_cast<int>(getpid())}};
          control_->send(conn, control::encode_result("ping", req, pong));
        }
      },
      request.op);
}

void Daemon::handle_submit(control::ConnectionId conn, const std::optional<json>& req, control::Submit& submit) {
  if (shutting_down_) {
    reply_error(conn, control::ErrorCode::kUnavailable, "fetchd is shutting down; submit again after the restart",
                "submit", req);
    return;
  }
  // Confine every destination before anything is stored: the request is all or nothing. One Confiner for the
  // request resolves each folder once: a batch of 10,000 jobs into a few folders costs 10,000 lstat()s, not
  // 10,000 × depth.
  std::vector<store::NewJob> jobs;
  jobs.reserve(submit.jobs.size());
  core::Confiner confiner(config_->output.dir);
  for (std::size_t i = 0; i < submit.jobs.size(); ++i) {
    auto& spec = submit.jobs[i];
    const std::string rel = spec.dest ? *spec.dest : core::filename_from_url(spec.url);
    std::string why;
    const std::optional<fs::path> dest = confiner.confine(rel, &why);
    if (!dest) {
      reply_error(conn, control::ErrorCode::kInvalidJob, fmt::format("jobs[{}].dest: {}", i, why), "submit", req);
      return;
    }
    store::NewJob job;
    job.key = spec.key ? "client:" + *spec.key : "";
    job.url = std::move(spec.url);
    job.dest = dest->string();
    job.sha256 = std::move(spec.sha256);
    job.size = spec.size;
    job.headers = std::move(spec.headers);
    job.priority = spec.priority;
    job.options = std::move(spec.options);
    jobs.push_back(std::move(job));
  }
  pending_submits_.push_back(PendingSubmit{conn, req, batch_.submits.size(), jobs.size()});
  for (auto& j : jobs) batch_.submits.push_back(std::move(j));
  // Answered by flush(), at the end of this loop iteration (on_check) or before the next other request.
}

std::optional<store::Job> Daemon::job_now(core::JobId id) {
  auto job = store_->get(id);
  if (job && job->state == store::State::kRunning) {
    for (const auto& p : scheduler_->progress()) {
      if (p.id == id) job->bytes = p.bytes;
    }
  }
  return job;
}

void Daemon::handle_status(control::ConnectionId conn, const std::optional<json>& req, core::JobId id) {
  auto job = job_now(id);
  if (!job) return reply_error(conn, control::ErrorCode::kNotFound, fmt::format("no job {}", id), "status", req);
  control_->send(conn, control::encode_result("status", req, json{{"job", control::job_to_json(*job)}}));
}

void Daemon::handle_cancel(control::ConnectionId conn, const std::optional<json>& req, core::JobId id) {
  auto job = store_->get(id);
  if (!job) return reply_error(conn, control::ErrorCode::kNotFound, fmt::format("no job {}", id), "cancel", req);
  if (!store::finished(job->state)) {
    if (scheduler_->contains(id)) {
      user_cancelled_.insert(id);
      scheduler_->cancel(id);  // queued or waiting: finished now; running: its transfer stops and reports
    } else {
      // Only in the store (beyond the window): cancel it there.
      record(id, store::State::kCancelled, job->attempts, "cancelled", job->bytes, false, false, /*unfenced=*/true);
      store::Job cancelled = *job;
      cancelled.state = store::State::kCancelled;
      emit("cancelled", cancelled);
    }
    sync_store();
    if (!last_commit_error_.empty()) {
      return reply_error(conn, control::ErrorCode::kUnavailable, "job store: " + last_commit_error_, "cancel", req);
    }
    job = job_now(id);
    if (!job) return reply_error(conn, control::ErrorCode::kNotFound, fmt::format("no job {}", id), "cancel", req);
  }
  control_->send(conn, control::encode_result("cancel", req, json{{"job", control::job_to_json(*job)}}));
}

void Daemon::handle_list(control::ConnectionId conn, const std::optional<json>& req, const control::List& list) {
  store::ListQuery q;
  q.state = list.state;
  q.after_id = list.after;
  q.offset = list.offset;
  q.limit = list.limit;
  auto jobs = store_->list(q);
  auto counts = counts_now();
  std::uint64_t total = counts.queued + counts.running + counts.done + counts.failed + counts.cancelled;
  if (list.state) total = counts.of(*list.state);
  json out = json::array();
  for (const auto& j : jobs) out.push_back(control::job_to_json(j));
  json next = jobs.size() == q.limit && !jobs.empty() ? json(jobs.back().id) : json(nullptr);
  control_->send(conn, control::encode_result("list", req,
                                              json{{"jobs", std::move(out)}, {"total", total}, {"next_after", next}}));
}

json Daemon::stats_json() {
  auto c = scheduler_->counters();
  store::Counts s = counts_now();
  return json{{"strategy", config::to_string(config_->strategy.kind)},
              {"concurrency", config_->strategy.concurrency},
              {"active", c.active},
              {"queued", s.queued},
              {"done", s.done},
              {"failed", s.failed},
              {"cancelled", s.cancelled},
              {"bytes", c.bytes},
              {"files_per_s", files_per_s_},
              {"mib_per_s", mib_per_s_},
              {"uptime_s", std::chrono::duration<double>(Clock::now() - started_).count()},
              {"store", store_name_}};
}

// ------------------------------------------------------------------------------------------------ watch

// State events wait for the commit that records them (flush), so a watcher never sees "done" for a job that
// a crash right now would run again.
void Daemon::emit(std::string_view event, const store::Job& job) {
  if (watchers_.empty()) return;
  pending_events_.push_back(control::encode_event(event, "job", control::watch_job_to_json(job)));
}

void Daemon::send_events() {
  auto events = std::move(pending_events_);
  pending_events_.clear();
  for (const auto& line : events) {
    for (auto conn : watchers_) control_->send(conn, line);
  }
}

void Daemon::emit(std::string_view event, const scheduler::JobRecord& record, store::State state) {
  if (watchers_.empty()) return;
  store::Job job;
  job.id = record.request.id;
  job.url = record.request.url;
  job.dest = record.request.dest;
  job.sha256 = record.request.sha256;
  job.size = record.request.expected_size;
  job.state = state;
  job.attempts = record.request.attempt;
  job.bytes = record.last.bytes;
  job.skipped = state == store::State::kDone && record.last.skipped;
  if (state != store::State::kRunning && !record.last.ok()) job.error = record.last.message;
  emit(event, job);
}

// The whole queue, not just the window in memory; `fallback` when the store cannot tell.
std::uint64_t Daemon::queued_in_store(std::uint64_t fallback) {
  try {
    return counts_now().queued;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return fallback;
  }
}

void Daemon::tick() {
  auto c = scheduler_->counters();
  std::uint64_t files = c.done + c.failed;
  files_per_s_ = static_cast<double>(files - last_tick_files_) * 1000.0 / kTickMs;
  mib_per_s_ = static_cast<double>(c.bytes - last_tick_bytes_) / (1024.0 * 1024.0) * 1000.0 / kTickMs;
  last_tick_files_ = files;
  last_tick_bytes_ = c.bytes;
  c.queued = queued_in_store(c.queued);
  notifier_.status(fmt::format("active={} queued={} done={} failed={} MiB/s={:.2f}", c.active, c.queued, c.done,
                               c.failed, mib_per_s_));
  if (shutting_down_) {
    notifier_.extend_timeout(std::chrono::seconds(15));  // still draining: keep systemd from killing us
  }
  // Counted before the starts are recorded (counts_now corrects by the starts it holds). The events go out
  // after the commit that writes the starts: a watcher that saw this tick's stats may rely on them.
  if (!watchers_.empty()) {
    pending_events_.push_back(control::encode_event("stats", "stats", stats_json()));
    for (const auto& p : scheduler_->progress()) {
      json body{{"id", p.id}, {"state", "running"}, {"bytes", p.bytes}};
      pending_events_.push_back(control::encode_event("progress", "job", body));
    }
  }
  record_starts();  // a job that runs for a second is durably running, without the loop waiting for it
  flush();
  if (shared_) {
    renew_leases();  // also while shutting down: what still runs keeps its leases (and may publish)
    batch_.count = true;
    if (!shutting_down_) store_has_more_ = true;  // what expired elsewhere, or a lost notice: the next claims it
    if (commit_is_due()) flush();
  }
}

// Asks the next commit to renew every lease this node holds and to hand back the fleet's expired ones.
void Daemon::renew_leases() {
  const std::uint64_t now = uv_now(loop_.get());
  const auto every = static_cast<std::uint64_t>(config_->state.lease.count() / 3);
  if (now - last_renew_ms_ < every - std::min<std::uint64_t>(every, kTickMs / 2)) return;
  // One at a time: the fence moves from the start of the renewal that committed, not of a later one.
  if (renew_pending_) return;
  renew_pending_ = true;
  last_renew_ms_ = now;
  std::vector<store::Held> held;
  held.reserve(leases_.size());
  for (const auto& [id, lease] : leases_) held.push_back({id, lease});
  batch_.renew = std::move(held);
  renew_started_ = Clock::now();  // every lease renewed by that commit lasts at least until this + lease
  if (commit_is_due()) flush();
}

void Daemon::renewed(const std::vector<store::Held>& held, const store::BatchResult& result) {
  std::unordered_set<core::JobId> still(result.renewed.begin(), result.renewed.end());
  bool lost = false;
  for (const auto& h : held) {
    if (still.count(h.id)) continue;
    // Finished since (its outcome ended the lease, in this commit or an earlier one), or held under a newer claim.
    if (auto it = leases_.find(h.id); it == leases_.end() || it->second != h.lease) continue;
    lose(h.id);
    lost = true;
  }
  // Not after a loss: a threaded strategy stops the lost transfers a moment later, and one finishing meanwhile
  // must not pass the fence. The current fence lasts until well after the next renewal.
  if (!lost) move_publish_fence(renew_started_);
  if (result.released > 0) {
    spdlog::info("store: {} job(s) whose node stopped renewing its lease went back to the queue", result.released);
  }
}

// A job taken over from other nodes: the .part files they left are theirs by name, so no later attempt would
// ever resume or remove them. A node still writing one (stopped past its lease, then continued) writes on
// into an unlinked file, and its publish is refused (the .part name is no longer its file, and its fence
// passed).
void Daemon::remove_others_parts(const store::Job& job) {
  for (const auto& other : job.claimers) {
    if (other == node_) continue;
    const std::string part = transfer::part_path_for(job.dest, other);
    if (::unlink(part.c_str()) != 0 && errno != ENOENT) {
      spdlog::warn("job {}: remove {}: {}", job.id, part, std::strerror(errno));
    }
  }
}

// Publishes are allowed until a margin before the leases renewed (or claimed) at `from` end.
void Daemon::move_publish_fence(Clock::time_point from) {
  const auto lease = config_->state.lease;
  transfer::set_publish_deadline(from + lease -
                                 std::max<Clock::duration>(std::chrono::seconds(1), lease / 10));
}

// The job is no longer this node's (re-claimed after its lease expired, or cancelled on another node): stop
// it here without recording anything.
void Daemon::lose(core::JobId id) {
  leases_.erase(id);
  if (!scheduler_->contains(id)) return;
  spdlog::warn("job {}: this node's lease on it was lost; stopping it here", id);
  lost_.insert(id);
  scheduler_->cancel(id);
}

void Daemon::on_notices() {
  std::vector<store::Notice> notices;
  try {
    notices = store_->take_notices();
  } catch (const std::exception& e) {
    // Renewals still find cancelled jobs, and every tick claims: slower, not wrong.
    spdlog::error("store: {}; other nodes' notices are no longer heard", e.what());
    notice_poll_.stop();
    return;
  }
  for (const auto& n : notices) {
    if (n.kind == store::Notice::Kind::kJobsQueued) {
      store_has_more_ = true;
    } else if (n.kind == store::Notice::Kind::kPause) {
      spdlog::info("origin {}: another node was told to back off; pausing it here too", n.origin);
      scheduler_->pause(n.origin, n.pause);
    } else if (scheduler_->contains(n.id)) {
      // Cancelled by a client of another node; the store has it cancelled already (our update is fenced).
      user_cancelled_.insert(n.id);
      scheduler_->cancel(n.id);
    }
  }
  if (!shutting_down_) refill();
}

// ------------------------------------------------------------------------------------------------ config

std::size_t Daemon::enqueue_config_jobs(const config::Config& c) {
  for (const auto& job : c.jobs) {
    auto r = scheduler::make_request(c, job);
    store::NewJob nj;
    nj.key = config_key(r.dest, job.url);
    nj.url = job.url;
    nj.dest = r.dest;
    nj.sha256 = job.sha256;
    nj.size = job.size;
    nj.headers = job.headers;
    nj.options = job.options;  // kept by the job: a later edit of the config does not change it
    batch_.submits.push_back(std::move(nj));
  }
  return c.jobs.size();
}

void Daemon::start_log_timer() {
  auto interval = static_cast<std::uint64_t>(std::max<std::int64_t>(1, config_->log.interval.count()));
  log_timer_.start(interval, interval, [this] {
    auto c = scheduler_->counters();
    c.queued = queued_in_store(c.queued);
    spdlog::info("{}", throughput_.sample(c));
  });
}

// Validates the config file again and applies it to what starts from now on. Returns the errors (then the old
// config stays in force).
std::vector<std::string> Daemon::reload(std::size_t* added_out) {
  spdlog::info("reload: reading {}", config_path_.string());
  std::unique_ptr<config::Config> fresh;
  try {
    fresh = std::make_unique<config::Config>(config::load_config(config_path_));
  } catch (const config::ConfigErrors& e) {
    std::vector<std::string> out;
    for (const auto& err : e.errors()) {
      spdlog::error("reload: {}", err.to_string());
      out.push_back(err.to_string());
    }
    spdlog::error("reload: the configuration stays as it was");
    return out;
  } catch (const std::exception& e) {
    spdlog::error("reload: {}; the configuration stays as it was", e.what());
    return {e.what()};
  }
  notifier_.reloading();
  if (fresh->control != config_->control || fresh->state != config_->state ||
      fresh->security != config_->security) {
    spdlog::warn("reload: control.*, state.* and security.redact_query changes take effect at the next start");
  }
  std::error_code ec;
  fs::create_directories(fresh->output.dir, ec);
  bool strategy_changed = !(fresh->strategy == config_->strategy) || fresh->output.fsync != config_->output.fsync;
  std::string level = fresh->log.level;
  bool interval_changed = fresh->log.interval != config_->log.interval;
  try {
    sync_store();  // what clients submitted before the reload is committed first: its answers go out unchanged
  } catch (const std::exception& e) {
    spdlog::error("reload: {}", e.what());
  }
  enqueue_config_jobs(*fresh);
  config_ = std::move(fresh);
  config_jobs_ = config_jobs_by_key(*config_);
  scheduler_->set_per_host(config_->limits.per_host);
  window_ = window_for(*config_);
  if (strategy_changed && !shutting_down_) {
    spdlog::info("reload: strategy now {} concurrency={}, for transfers started from now on",
                 config::to_string(config_->strategy.kind), config_->strategy.concurrency);
    scheduler_->replace_strategy([this](strategy::Strategy::ResultCallback cb) {
      return strategy::make_strategy(*config_, loop_.get(), std::move(cb));
    });
  }
  spdlog::set_level(spdlog::level::from_str(level));
  if (interval_changed) start_log_timer();
  std::size_t added = 0;
  try {
    sync_store();
    added = last_flush_created_;
  } catch (const std::exception& e) {
    spdlog::error("reload: {}", e.what());
  }
  if (added_out) *added_out = added;
  spdlog::info("reload: done; {} new job(s) from the job list", added);
  notifier_.ready();
  return {};
}

}  // namespace

int run_daemon(const fs::path& config_path) {
  config::Config config;
  try {
    config = config::load_config(config_path);
  } catch (const config::ConfigErrors& e) {
    for (const auto& err : e.errors()) spdlog::error("{}", err.to_string());
    spdlog::error("serve: invalid configuration; not started");
    return kExitConfig;
  }
  spdlog::set_level(spdlog::level::from_str(config.log.level));
  // Once, before any thread: transfers read it concurrently (a reload keeps the start-up list).
  curl::set_redacted_query(config.security.redact_query);
  std::unique_ptr<store::JobStore> store, writer_store;
  core::UniqueFd lock;
  try {
    create_folders(config.state.dir, "state", "state.dir");
    create_folders(config.output.dir, "output", "output.dir");
    // One daemon per state folder: two would run every job twice. The lock goes with the process (kill -9
    // included), so a stale one never blocks a restart.
    lock.reset(::open((config.state.dir / "lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!lock) throw std::runtime_error((config.state.dir / "lock").string() + ": " + std::strerror(errno));
    if (flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
      throw std::runtime_error(fmt::format("another fetchd is already using {} ({})", config.state.dir.string(),
                                           std::strerror(errno)));
    }
    if (!config.state.url.empty()) {
      // The loop's connection also listens for the other nodes' notices and holds the node name's lock.
      store::PostgresOptions o{config.state.url, node_name(config), config.state.lease, /*listen=*/true};
      store = store::open_postgres_store(o);
      o.listen = false;
      writer_store = store::open_postgres_store(o);
      spdlog::info("store: {} as node \"{}\" (lease {})", store->describe(), o.node,
                   core::format_duration(config.state.lease));
    } else {
      store = store::open_sqlite_store(config.state.dir / "jobs.db", sqlite_options(config));
      writer_store = store::open_sqlite_store(config.state.dir / "jobs.db", sqlite_options(config));
    }
  } catch (const std::exception& e) {
    spdlog::error("serve: {}", e.what());
    return kExitStartup;
  }
  try {
    Daemon daemon(config_path, std::move(config), std::move(store), std::move(writer_store));
    return daemon.run();
  } catch (const std::exception& e) {
    spdlog::error("serve: {}", e.what());
    return kExitStartup;
  }
}

}  // namespace fetchd::service
