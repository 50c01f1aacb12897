// SPDX-License-Identifier: Apache-2.0
#include "fault_support.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "fetchd/curl/curl.hpp"
#include "fetchd/origin/body.hpp"
#include "fetchd/scheduler/run.hpp"
#include "fetchd/strategy/strategy.hpp"

namespace fetchd::fault {

namespace {

// curl_global_init once before any thread (design.md §3), and SIGPIPE ignored: the origin and the proxy
// write to peers that may be gone, and process-pool workers get killed.
class FaultEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    std::signal(SIGPIPE, SIG_IGN);
    global_ = std::make_unique<curl::Global>();
    // libuv opens a process-wide pipe (its signal lock) at the first uv_loop_init and keeps it: open it now,
    // before any test takes its descriptor baseline.
    uv_loop_t loop;
    if (uv_loop_init(&loop) == 0) uv_loop_close(&loop);
  }
  void TearDown() override { global_.reset(); }

 private:
  std::unique_ptr<curl::Global> global_;
};
[[maybe_unused]] const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new FaultEnvironment);

}  // namespace

// ------------------------------------------------------------------------------------------ small helpers

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string file_sha256(const fs::path& p) {
  std::string data = read_file(p);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  std::string out;
  for (unsigned i = 0; i < len; ++i) out += fmt::format("{:02x}", md[i]);
  return out;
}

bool exists_nofollow(const fs::path& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

std::size_t count_regular_files(const fs::path& dir) {
  std::size_t n = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    n += it->is_regular_file() ? 1 : 0;
  }
  return n;
}

std::string list_tree(const fs::path& dir) {
  std::string s;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    s += fs::relative(it->path(), dir).string();
    if (it->is_regular_file()) s += fmt::format(" ({} B)", it->file_size());
    s += "\n";
  }
  return s.empty() ? "(empty)\n" : s;
}

std::uint16_t closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string fetchd_bin() {
  const char* bin = std::getenv("FETCHD_BIN");
  return bin != nullptr ? bin : "FETCHD_BIN-is-not-set";
}

double ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

std::size_t count_fds() {
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
    (void)e;
    ++n;
  }
  return n;
}

std::string describe_fds() {
  std::string s;
  for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    auto target = fs::read_symlink(e.path(), ec);
    s += fmt::format("{} -> {}\n", e.path().filename().string(), ec ? "?" : target.string());
  }
  return s;
}

bool fds_back(std::size_t baseline) {
  return count_fds() <= baseline;
}

SilentListener::SilentListener() {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd_, 16) != 0) {
    throw std::runtime_error(std::string("SilentListener: ") + std::strerror(errno));
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
}

SilentListener::~SilentListener() {
  if (fd_ >= 0) ::close(fd_);
}

bool SilentListener::connection_pending() const {
  pollfd p{fd_, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

// ---------------------------------------------------------------------------------- origin-side helpers

std::function<void(std::string_view)> RequestLog::hook() {
  return [state = state_](std::string_view target) {
    std::lock_guard lock(state->mutex);
    state->entries.push_back(Entry{std::string(target), Clock::now(), std::chrono::system_clock::now()});
  };
}

std::vector<RequestLog::Entry> RequestLog::entries() const {
  std::lock_guard lock(state_->mutex);
  return state_->entries;
}

std::vector<RequestLog::Entry> RequestLog::with_prefix(std::string_view prefix) const {
  std::vector<Entry> out;
  for (auto& e : entries()) {
    if (std::string_view(e.target).starts_with(prefix)) out.push_back(e);
  }
  return out;
}

void RewritePlan::plan(std::string target, std::vector<std::string> answers) {
  std::lock_guard lock(state_->mutex);
  state_->plans[std::move(target)] = {std::move(answers), 0};
}

std::function<std::string(std::string_view)> RewritePlan::hook() {
  return [state = state_](std::string_view target) -> std::string {
    std::lock_guard lock(state->mutex);
    auto it = state->plans.find(target);
    if (it == state->plans.end() || it->second.first.empty()) return std::string(target);
    auto& [answers, seen] = it->second;
    const std::string& answer = answers[std::min(seen, answers.size() - 1)];
    ++seen;
    return answer;
  };
}

// ---------------------------------------------------------------------------------------- strategies

std::vector<StrategyParam> all_strategies() {
  auto param = [](std::string name, config::StrategyKind kind) {
    StrategyParam p{std::move(name), {}};
    p.strategy.kind = kind;
    p.strategy.concurrency = 8;
    return p;
  };
  // Workers are `<worker_exe> worker` processes: this test binary has none, so they run the fetchd binary.
  StrategyParam pool = param("processpool", config::StrategyKind::kProcessPool);
  pool.strategy.worker_exe = fetchd_bin();
  pool.strategy.workers = 2;
  pool.strategy.inner = config::InnerKind::kEventLoop;
  // event-loop on two loop threads of its own (strategy.threads: 2).
  StrategyParam threads = param("eventloopthreads", config::StrategyKind::kEventLoop);
  threads.strategy.threads = 2;
  return {param("eventloop", config::StrategyKind::kEventLoop), threads,
          param("curlmulti", config::StrategyKind::kCurlMulti),
          param("threadpool", config::StrategyKind::kThreadPool), pool};
}

std::string param_name(const ::testing::TestParamInfo<StrategyParam>& info) {
  return info.param.name;
}

// ------------------------------------------------------------------------------------------- runner

Runner::Runner(const config::Config& config) : config_(config) {
  scheduler::Scheduler::Options options;
  options.on_started = [this](const scheduler::JobRecord& job) {
    Outcome& o = outcomes_[job.request.id];
    o.id = job.request.id;
    Attempt a;
    a.number = job.request.attempt;
    a.started = Clock::now();
    a.started_wall = std::chrono::system_clock::now();
    o.log.push_back(a);
    if (on_started) on_started(*this, job);
  };
  options.on_retry = [this](const scheduler::JobRecord& job) {
    Outcome& o = outcomes_[job.request.id];
    if (!o.log.empty()) {
      o.log.back().ended = Clock::now();
      o.log.back().ended_set = true;
      o.log.back().result = job.last;
    }
    if (on_retry) on_retry(*this, job);
  };
  options.on_finished = [this](const scheduler::JobRecord& job) {
    Outcome& o = outcomes_[job.request.id];
    o.id = job.request.id;
    o.finished = true;
    o.state = job.state;
    o.last = job.last;
    o.attempts = job.request.attempt;
    o.finished_at = Clock::now();
    if (!o.log.empty() && !o.log.back().ended_set) {
      o.log.back().ended = o.finished_at;
      o.log.back().ended_set = true;
      o.log.back().result = job.last;
    }
    if (on_finished) on_finished(*this, job);
  };
  scheduler_ = std::make_unique<scheduler::Scheduler>(
      loop_.get(),
      [this](strategy::Strategy::ResultCallback cb) {
        return strategy::make_strategy(config_, loop_.get(), std::move(cb));
      },
      std::move(options));
  scheduler_->set_per_host(config_.limits.per_host);
  heartbeat_ = uv::Timer(loop_.get());
  failsafe_ = uv::Timer(loop_.get());
}

Runner::~Runner() {
  scheduler_.reset();
  loop_.close();
}

namespace {
std::function<core::TransferRequest()>& liveness_probe() {
  static std::function<core::TransferRequest()> probe;
  return probe;
}
}  // namespace

void Runner::set_liveness_probe(std::function<core::TransferRequest()> make) {
  liveness_probe() = std::move(make);
}

core::JobId Runner::add(core::TransferRequest request) {
  core::JobId id = scheduler_->add(std::move(request));
  Outcome& o = outcomes_[id];
  o.id = id;
  return id;
}

core::JobId Runner::add(const config::Job& job) {
  return add(scheduler::make_request(config_, job));
}

void Runner::add_later(core::TransferRequest request, std::chrono::milliseconds delay,
                       std::function<void(core::JobId)> added) {
  ++pending_adds_;
  auto timer = std::make_unique<uv::Timer>(loop_.get());
  auto* raw = timer.get();
  later_.push_back(std::move(timer));
  raw->start(static_cast<std::uint64_t>(delay.count()), 0,
             [this, raw, request = std::move(request), added = std::move(added)]() mutable {
               --pending_adds_;
               raw->close();
               if (finishing_) return;
               core::JobId id = add(std::move(request));
               if (added) added(id);
             });
}

const Outcome& Runner::outcome(core::JobId id) const {
  static const Outcome kNone;
  auto it = outcomes_.find(id);
  return it == outcomes_.end() ? kNone : it->second;
}

void Runner::finish() {
  if (finishing_) return;
  finishing_ = true;
  heartbeat_.close();
  failsafe_.close();
  for (auto& t : later_) t->close();
  scheduler_->drain([this] { drained_ = true; });
}

bool Runner::run(std::chrono::milliseconds failsafe) {
  last_beat_ = Clock::now();
  heartbeat_.start(kTickMs, kTickMs, [this] {
    auto now = Clock::now();
    max_gap_ = std::max(max_gap_, now - last_beat_);
    last_beat_ = now;
    if (on_tick) on_tick(*this);
    if (finishing_ || pending_adds_ != 0 || !scheduler_->idle()) return;
    if (probe_ == 0 && liveness_probe() && !failsafe_fired_) {
      probe_ = add(liveness_probe()());
      return;
    }
    finish();
  });
  failsafe_.start(static_cast<std::uint64_t>(failsafe.count()), 0, [this] {
    failsafe_fired_ = true;
    ADD_FAILURE() << "failsafe: the jobs did not finish within the limit; cancelling them";
    scheduler_->cancel_all();
  });
  loop_.run();
  scheduler_.reset();
  loop_close_result_ = loop_.close();
  if (probe_ != 0) {
    const Outcome& p = outcome(probe_);
    EXPECT_TRUE(p.finished && p.state == scheduler::JobState::kDone)
        << "the strategy no longer works after the fault: liveness probe " << core::to_string(p.last.category)
        << " " << p.last.message;
  }
  EXPECT_TRUE(drained_) << "the strategy never reported the end of its drain";
  EXPECT_EQ(loop_close_result_, 0) << "a handle was left open on the control loop";
  return !failsafe_fired_;
}

// ------------------------------------------------------------------------------------------- fixture

FaultTest::FaultTest() = default;

void FaultTest::SetUp() {
  static std::mt19937_64 rng{std::random_device{}()};
  dir_ = fs::temp_directory_path() / fmt::format("fetchd-fault-{:x}", rng());
  fs::create_directories(dir_ / "out");
  fs::create_directories(dir_ / "canary");
  std::ofstream(dir_ / "canary" / "keep") << "canary";
  config_.source = dir_ / "test.yaml";
  config_.strategy = GetParam().strategy;
  config_.output.dir = dir_ / "out";
  config_.output.fsync = false;
  config_.output.on_exists = core::OnExists::kOverwrite;
  config_.log.level = "warn";
  config_.defaults.retry.retries = 0;
  config_.defaults.retry.initial = 1ms;  // keep retries fast; jitter stays real
  config_.defaults.retry.max = 5ms;
  config_.defaults.timeout = 20s;
  config_.defaults.connect_timeout = 5s;
  config_.defaults.low_speed_limit = 0;  // cases that test it set it
  config_.defaults.user_agent = "fetchd-fault-test";
  // The baseline comes before the origin and the proxy: TearDown stops both, so whatever is still open
  // then (a socket, a .part, a pipe to a worker) was left behind by fetchd.
  fd_baseline_ = count_fds();
  fd_baseline_list_ = describe_fds();
  origin::OriginOptions options;
  options.on_request = requests_.hook();
  options.rewrite = rewrite_.hook();
  origin_ = std::make_unique<origin::OriginThread>(options);
  proxy_ = std::make_unique<RecordingProxy>(origin_->port());
  // After the case's own jobs, every Runner fetches this small file (straight from the origin, not through
  // the proxy) into a directory of its own, and expects it done and verified.
  fs::create_directories(alive_dir());
  Runner::set_liveness_probe([this] {
    core::TransferRequest r;
    r.url = origin_->url(fmt::format("/bytes/{}/alive.bin?seed={}", kProbeSize, kProbeSeed));
    r.dest = (alive_dir() / "alive.bin").string();
    r.sha256 = origin::body_sha256_hex(kProbeSize, kProbeSeed);
    r.on_exists = core::OnExists::kOverwrite;
    r.fsync = false;
    r.options = config_.defaults;
    r.options.max_size = 0;
    r.options.timeout = 20s;
    return r;
  });
}

void FaultTest::TearDown() {
  Runner::set_liveness_probe({});
  std::error_code ignored;
  fs::remove_all(alive_dir(), ignored);
  // Every run() drained its strategy (curl's connection caches closed, workers exited): with the proxy and
  // the origin gone too, the descriptor count is back where it started unless fetchd leaked one.
  if (proxy_) proxy_.reset();
  if (origin_) {
    EXPECT_EQ(origin_->stop(), 0) << "the origin's loop did not close cleanly";
    origin_.reset();
  }
  EXPECT_TRUE(fds_back(fd_baseline_))
      << "open descriptors: " << count_fds() << ", baseline " << fd_baseline_ << "\nnow:\n"
      << describe_fds() << "baseline:\n"
      << fd_baseline_list_;
  EXPECT_EQ(read_file(dir_ / "canary" / "keep"), "canary");
  EXPECT_EQ(count_regular_files(dir_ / "canary"), 1u) << list_tree(dir_ / "canary");
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

config::Job FaultTest::job(const std::string& path, const std::string& dest, bool via_proxy) const {
  config::Job j;
  j.url = via_proxy ? proxy_->url(path) : origin_->url(path);
  j.dest = dest;
  j.origin = "fault-test";
  return j;
}

core::TransferRequest FaultTest::request(const config::Job& job) const {
  return scheduler::make_request(config_, job);
}

void FaultTest::expect_no_file(const std::string& rel, bool part_allowed) const {
  EXPECT_FALSE(exists_nofollow(out(rel))) << rel << " exists:\n" << list_tree(out());
  if (!part_allowed) {
    EXPECT_FALSE(exists_nofollow(part(rel))) << rel << ".part exists:\n" << list_tree(out());
  }
}

::testing::AssertionResult failed_with(const Outcome& o, core::ErrorCategory category,
                                       const std::vector<std::string>& words, int attempts) {
  auto describe = [&] {
    std::string s =
        fmt::format("job {}: finished={} state={} attempts={} category={} http={} curl={} message=\"{}\"",
                    o.id, o.finished, scheduler::to_string(o.state), o.attempts,
                    core::to_string(o.last.category), o.last.http_status, o.last.curl_code, o.last.message);
    for (const auto& a : o.log) {
      s += fmt::format("\n  attempt {}: {} \"{}\"", a.number, core::to_string(a.result.category),
                       a.result.message);
    }
    return s;
  };
  if (!o.finished || o.state != scheduler::JobState::kFailed)
    return ::testing::AssertionFailure() << "not failed: " << describe();
  if (o.last.category != category)
    return ::testing::AssertionFailure() << "category " << core::to_string(o.last.category) << ", expected "
                                         << core::to_string(category) << ": " << describe();
  for (const auto& w : words) {
    if (o.last.message.find(w) == std::string::npos)
      return ::testing::AssertionFailure() << "message lacks \"" << w << "\": " << describe();
  }
  if (o.attempts != attempts)
    return ::testing::AssertionFailure()
           << o.attempts << " attempts, expected " << attempts << ": " << describe();
  return ::testing::AssertionSuccess() << describe();
}

::testing::AssertionResult done_after(const Outcome& o, int attempts) {
  std::string s = fmt::format("job {}: finished={} state={} attempts={} category={} message=\"{}\"", o.id,
                              o.finished, scheduler::to_string(o.state), o.attempts,
                              core::to_string(o.last.category), o.last.message);
  for (const auto& a : o.log) {
    s += fmt::format("\n  attempt {}: {} \"{}\"", a.number, core::to_string(a.result.category),
                     a.result.message);
  }
  if (!o.finished || o.state != scheduler::JobState::kDone)
    return ::testing::AssertionFailure() << "not done: " << s;
  if (o.attempts != attempts)
    return ::testing::AssertionFailure() << o.attempts << " attempts, expected " << attempts << ": " << s;
  return ::testing::AssertionSuccess() << s;
}

}  // namespace fetchd::fault
