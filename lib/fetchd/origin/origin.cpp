// SPDX-License-Identifier: Apache-2.0
#include "fetchd/origin/origin.hpp"

#include <linux/sockios.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <bit>
#include <cassert>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <exception>
#include <new>
#include <span>
#include <thread>
#include <utility>

#include "fetchd/origin/body.hpp"
#include "fetchd/origin/body_stream.hpp"
#include "fetchd/origin/request_parser.hpp"
#include "fetchd/origin/route.hpp"
#include "fetchd/uv/error.hpp"
#include "fetchd/uv/loop.hpp"
#include "fetchd/uv/tcp.hpp"

namespace fetchd::origin {

namespace {

// One read buffer for the whole loop: libuv calls on_alloc and then on_read for the same stream before
// anything else runs, and on_read consumes or copies the bytes, so idle connections cost no buffer at all.
constexpr std::size_t kReadBufferSize = 64 * 1024;
// Bodies go out in chunks of this size with at most kMaxQueuedChunks per connection not yet written, so
// memory per connection stays bounded while the kernel's send buffer is kept full.
constexpr std::size_t kChunkSize = 128 * 1024;
constexpr int kMaxQueuedChunks = 2;
// Pipelined input kept while a response is in progress; beyond it, reading pauses (backpressure on the
// client).
constexpr std::size_t kMaxPendingInput = 64 * 1024;
// After the last response of a connection, client bytes are drained for at most this long before closing, so
// that unread input does not turn the close into a reset that destroys the response (RFC 9112 §9.6).
constexpr std::uint64_t kLingerMs = 2000;
// Digests of generated bodies are computed on the loop, this much per turn, so that hashing a large body
// delays the other connections by about a millisecond at a time instead of a second at once.
constexpr std::size_t kDigestScratchSize = 256 * 1024;
constexpr int kDigestSlicesPerTurn = 4;
// A reset (reset_after) waits, checking every millisecond, until the kernel has the body bytes acknowledged
// by the client, so that the RST cannot overtake them; a client that does not read gets it after this long.
constexpr int kResetDrainChecks = 2000;
// A head made big on purpose (header_fill) is not kept in memory after its response.
constexpr std::size_t kMaxKeptHeadCapacity = 64 * 1024;

void update_max(std::atomic<std::uint64_t>& max, std::uint64_t value) {
  auto current = max.load(std::memory_order_relaxed);
  while (value > current && !max.compare_exchange_weak(current, value, std::memory_order_relaxed)) {
  }
}

// The bytes of one uv_write, allocated to fit and freed in its callback.
struct Chunk {
  std::size_t size = 0;
  char* data() { return reinterpret_cast<char*>(this + 1); }
  static Chunk* create(std::size_t capacity) {
    return new (::operator new(sizeof(Chunk) + capacity)) Chunk{};
  }
  static void destroy(Chunk* c) {
    c->~Chunk();
    ::operator delete(c);
  }
};

class Connection;

// The listening socket and the set of open connections.
class Server {
 public:
  Server(uv_loop_t* loop, OriginOptions options);
  ~Server() { close(); }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void close();
  std::uint16_t port() const { return port_; }
  std::string url(std::string_view path) const;

  uv_loop_t* loop() const { return loop_; }
  const OriginOptions& options() const { return options_; }
  OriginCounters& counters() { return *counters_; }
  const std::shared_ptr<OriginCounters>& shared_counters() const { return counters_; }
  char* read_buffer() { return read_buffer_.get(); }
  // Shared by all connections: each digest slice is generated and hashed within one callback.
  std::span<std::byte> digest_scratch() { return {digest_scratch_.get(), kDigestScratchSize}; }

  void link(Connection* c);
  void unlink(Connection* c);

 private:
  void on_connection(int status);

  uv_loop_t* loop_;
  OriginOptions options_;
  std::shared_ptr<OriginCounters> counters_ = std::make_shared<OriginCounters>();
  std::unique_ptr<char[]> read_buffer_{new char[kReadBufferSize]};
  std::unique_ptr<std::byte[]> digest_scratch_{new std::byte[kDigestScratchSize]};
  uv::Tcp listener_;
  std::uint16_t port_ = 0;
  Connection* connections_ = nullptr;  // intrusive list: no allocation per connection beyond the Connection
  std::uint64_t accept_errors_ = 0;
  bool closed_ = false;
  std::thread::id owner_ = std::this_thread::get_id();  // the loop's thread
};

// One accepted connection. It owns itself: created on accept, deleted in its Tcp's close callback, which
// libuv runs after the callbacks of cancelled writes, so no callback outlives it. Once closing, server_ is
// null and the callbacks still to come only free memory.
class Connection {
 public:
  explicit Connection(Server& server) : server_(&server), tcp_(server.loop()) {}
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  uv::Tcp& tcp() { return tcp_; }
  void start();
  void close();  // idempotent; the object is deleted later, in the close callback

  Connection* prev = nullptr;  // Server's list
  Connection* next = nullptr;

 private:
  enum class Phase {
    kIdle,
    kDigesting,  // hashing the body for Content-Digest/Repr-Digest
    kDelaying,   // latency
    kSending,
    kStalled,    // fault: nothing more is sent until the client closes
    kResetting,  // fault: waiting for the sent bytes to be acknowledged, then RST
    kLingering,  // after the last response: FIN sent, draining the client's bytes
  };

  template <typename F>
  void guarded(const char* where, F&& f) noexcept;
  void resume_reading();
  void pause_reading();
  void on_read(ssize_t nread, const uv_buf_t* buf);
  std::size_t consume(std::string_view data);
  void begin_response();
  void begin_error();
  void digest_turn();
  void start_or_delay();
  void start_sending();
  void pump();
  void on_written(Chunk* chunk, int status);
  void end_body();
  void finish_response();
  void reset_when_delivered();
  void linger_close();
  uv::Timer& timer();
  int fd() const;
  std::size_t pending_size() const { return pending_.size() - pending_pos_; }

  Server* server_;
  uv::Tcp tcp_;
  // Created on first need. The phases run one after another, so one timer serves them all: digest turns,
  // latency, trickle pacing, the reset's delivery checks, linger.
  uv::Timer timer_;
  RequestParser parser_;
  Response response_;
  std::unique_ptr<BodyDigest> digest_;  // while kDigesting
  std::string head_;
  std::size_t head_pos_ = 0;  // head bytes queued so far
  BodyStream body_;
  std::uint64_t cut_left_ = 0;      // body bytes until response_.cut applies (when it is not kNone)
  std::uint64_t trickle_left_ = 0;  // body bytes still allowed in this trickle interval (when trickling)
  std::string pending_;             // input received while a response was in progress, from pending_pos_ on
  std::size_t pending_pos_ = 0;
  int queued_chunks_ = 0;
  int reset_checks_ = 0;
  int minor_version_ = 1;
  Phase phase_ = Phase::kIdle;
  bool head_only_ = false;
  bool keep_alive_ = true;
  bool in_flight_ = false;
  bool reading_ = false;
  bool peer_eof_ = false;
  bool closing_ = false;
};

template <typename F>
void Connection::guarded(const char* where, F&& f) noexcept {
  try {
    f();
  } catch (const std::exception& e) {
    spdlog::error("origin: {}: {}", where, e.what());
    close();
  } catch (...) {
    spdlog::error("origin: {}: unknown exception", where);
    close();
  }
}

void Connection::start() {
  tcp_.set_nodelay(true);  // responses are written whole; never wait for the client's delayed ACK
  resume_reading();
}

void Connection::resume_reading() {
  if (reading_ || closing_) return;
  int rc = tcp_.read_start(
      [this](std::size_t, uv_buf_t* buf) {
        *buf = server_ ? uv_buf_init(server_->read_buffer(), kReadBufferSize) : uv_buf_init(nullptr, 0);
      },
      [this](ssize_t nread, const uv_buf_t* buf) { guarded("read", [&] { on_read(nread, buf); }); });
  if (rc < 0) {
    spdlog::debug("origin: uv_read_start: {}", uv::describe(rc));
    close();
    return;
  }
  reading_ = true;
}

void Connection::pause_reading() {
  if (!reading_) return;
  tcp_.read_stop();
  reading_ = false;
}

void Connection::on_read(ssize_t nread, const uv_buf_t* buf) {
  if (closing_ || nread == 0) return;
  if (nread < 0) {
    pause_reading();
    if (nread == UV_EOF &&
        (phase_ == Phase::kDigesting || phase_ == Phase::kDelaying || phase_ == Phase::kSending)) {
      peer_eof_ = true;  // a half-close: finish what was asked, then close
      return;
    }
    if (nread != UV_EOF) spdlog::debug("origin: read: {}", uv::describe(static_cast<int>(nread)));
    close();
    return;
  }
  // Drained and dropped: nothing more will be answered on this connection, and a stalled one must keep
  // reading to notice the client's close.
  if (phase_ == Phase::kLingering || phase_ == Phase::kStalled || phase_ == Phase::kResetting) return;
  std::string_view data(buf->base, static_cast<std::size_t>(nread));
  if (phase_ != Phase::kIdle || pending_size() > 0) {
    pending_.append(data);
    if (pending_size() > kMaxPendingInput) pause_reading();
    return;
  }
  std::size_t used = consume(data);
  if (used < data.size() && !closing_) {
    pending_.assign(data.substr(used));
    pending_pos_ = 0;
  }
}

// Parses requests from data until one starts a response; returns the bytes used.
std::size_t Connection::consume(std::string_view data) {
  std::size_t used = 0;
  while (used < data.size() && phase_ == Phase::kIdle && !closing_) {
    used += parser_.feed(data.substr(used));
    switch (parser_.state()) {
      case RequestParser::State::kIncomplete:
        break;
      case RequestParser::State::kComplete:
        begin_response();
        if (!closing_) parser_.reset();
        break;
      case RequestParser::State::kError:
        begin_error();  // closes after the answer; the parser stays in error
        break;
    }
  }
  return used;
}

void Connection::begin_response() {
  const Request& request = parser_.request();
  server_->counters().request_started();
  in_flight_ = true;
  const OriginOptions& options = server_->options();
  if (options.on_request) options.on_request(request.target);
  if (options.rewrite) {
    Request rewritten = request;  // tests only: a copy per request is fine
    rewritten.target = options.rewrite(request.target);
    route(rewritten, options, response_);
  } else {
    route(request, options, response_);
  }
  head_only_ = request.method == "HEAD";
  keep_alive_ = request.keep_alive && !response_.close;
  minor_version_ = request.minor_version;
  if (response_.wants_digest() && response_.body == Response::Body::kGenerated) {
    phase_ = Phase::kDigesting;
    digest_ = std::make_unique<BodyDigest>(response_.seed, response_.repr_size, response_.repr_digest,
                                           response_.offset, response_.length, response_.content_digest);
    return digest_turn();
  }
  start_or_delay();
}

// Hashes a bounded amount, then yields to the loop until the next turn (a repeating 1 ms timer: libuv 1.44
// runs a 0 ms timer started from a timer callback again in the same pass, which would starve the loop).
void Connection::digest_turn() {
  for (int i = 0; i < kDigestSlicesPerTurn && !digest_->done(); ++i) digest_->step(server_->digest_scratch());
  if (!digest_->done()) {
    if (!uv_is_active(reinterpret_cast<uv_handle_t*>(timer().get())))
      timer_.start(1, 1, [this] { guarded("digest", [this] { digest_turn(); }); });
    return;
  }
  timer().stop();
  add_digest_headers(response_, digest_->part(), digest_->whole());
  digest_.reset();
  start_or_delay();
}

uv::Timer& Connection::timer() {
  if (!timer_) timer_ = uv::Timer(server_->loop());
  return timer_;
}

int Connection::fd() const {
  uv_os_fd_t fd = -1;
  if (uv_fileno(reinterpret_cast<const uv_handle_t*>(tcp_.get()), &fd) != 0) return -1;
  return fd;
}

void Connection::begin_error() {
  server_->counters().request_started();
  in_flight_ = true;
  error_response(parser_.error_status(), parser_.error_reason(), response_);
  spdlog::debug("origin: refused request: {} {}", parser_.error_status(), parser_.error_reason());
  head_only_ = false;
  keep_alive_ = false;
  minor_version_ = 1;
  start_sending();
}

void Connection::start_or_delay() {
  if (response_.latency.count() <= 0) return start_sending();
  phase_ = Phase::kDelaying;
  timer();
  // The latency is a lower bound: libuv times timers from the loop's cached clock, which is truncated to
  // whole milliseconds and may be stale by the callbacks run since the poll. Refresh it, and add the lost
  // millisecond.
  uv_update_time(server_->loop());
  timer_.start(static_cast<std::uint64_t>(response_.latency.count()) + 1, 0,
               [this] { guarded("latency", [this] { start_sending(); }); });
}

void Connection::start_sending() {
  phase_ = Phase::kSending;
  head_.clear();
  append_head(response_, minor_version_, keep_alive_, head_);
  head_pos_ = 0;
  body_.start(response_, head_only_ || response_.body == Response::Body::kNone);
  cut_left_ = response_.cut_after;
  trickle_left_ = response_.trickle_bytes;
  if (response_.trickle_bytes > 0 && !body_.done()) {
    // A fresh allowance per interval, not an accumulating one: a client that stops reading does not earn a
    // burst later.
    const auto interval = static_cast<std::uint64_t>(response_.trickle_interval.count());
    uv_update_time(server_->loop());  // time the intervals from now, not from the start of this loop turn
    timer().start(interval, interval, [this] {
      guarded("trickle", [this] {
        trickle_left_ = response_.trickle_bytes;
        pump();
      });
    });
  }
  pump();
}

// Queues chunks (head first, then body) while fewer than kMaxQueuedChunks are unwritten and the kernel takes
// them, within the cut and trickle allowances; continues from on_written and the trickle timer. Ends the body
// once everything due is written.
void Connection::pump() {
  const bool cutting = response_.cut != Response::Cut::kNone;
  const bool trickling = response_.trickle_bytes > 0;
  while (!closing_ && phase_ == Phase::kSending && queued_chunks_ < kMaxQueuedChunks) {
    const std::size_t head_size = std::min(head_.size() - head_pos_, kChunkSize);
    std::uint64_t body_room = std::min<std::uint64_t>(body_.size_bound(), kChunkSize - head_size);
    if (cutting) body_room = std::min(body_room, cut_left_);
    if (trickling) body_room = std::min(body_room, trickle_left_);
    if (head_size == 0 && body_room == 0) break;
    Chunk* chunk = Chunk::create(head_size + static_cast<std::size_t>(body_room));
    std::memcpy(chunk->data(), head_.data() + head_pos_, head_size);
    head_pos_ += head_size;
    const std::size_t body_size =
        body_.read(std::span(chunk->data() + head_size, static_cast<std::size_t>(body_room)));
    if (cutting) cut_left_ -= body_size;
    if (trickling) trickle_left_ -= body_size;
    chunk->size = head_size + body_size;

    uv_buf_t buf = uv_buf_init(chunk->data(), static_cast<unsigned>(chunk->size));
    int rc = tcp_.write(std::span(&buf, 1),
                        [this, chunk](int status) { guarded("write", [&] { on_written(chunk, status); }); });
    if (rc < 0) {
      Chunk::destroy(chunk);
      spdlog::debug("origin: uv_write: {}", uv::describe(rc));
      close();
      return;
    }
    ++queued_chunks_;
    if (tcp_.write_queue_size() > 0) break;  // the kernel's buffer is full: continue when a write completes
  }
  if (closing_ || phase_ != Phase::kSending || queued_chunks_ > 0 || head_pos_ < head_.size()) return;
  if (body_.done() || (cutting && cut_left_ == 0)) end_body();
}

// Everything due is written: the response ends, or breaks off as its plan says.
void Connection::end_body() {
  if (timer_) timer_.stop();  // trickle
  if (head_.capacity() > kMaxKeptHeadCapacity) std::string().swap(head_);
  switch (response_.cut) {
    case Response::Cut::kNone:
      return finish_response();
    case Response::Cut::kClose:
      keep_alive_ = false;
      return finish_response();
    case Response::Cut::kStall:
      if (peer_eof_) return close();
      phase_ = Phase::kStalled;
      pending_.clear();
      pending_pos_ = 0;
      return resume_reading();
    case Response::Cut::kReset:
      phase_ = Phase::kResetting;
      reset_checks_ = 0;
      pending_.clear();
      pending_pos_ = 0;
      return reset_when_delivered();
  }
}

// SIOCOUTQ counts the bytes sent but not yet acknowledged (tcp(7)); once it is 0 the client has them all, and
// an abortive close (SO_LINGER with a zero timeout, socket(7)) sends RST instead of FIN.
void Connection::reset_when_delivered() {
  const int sock = fd();
  int unacked = 0;
  if (sock >= 0 && ::ioctl(sock, SIOCOUTQ, &unacked) == 0 && unacked > 0 &&
      ++reset_checks_ < kResetDrainChecks) {
    if (!uv_is_active(reinterpret_cast<uv_handle_t*>(timer().get())))
      timer_.start(1, 1, [this] { guarded("reset", [this] { reset_when_delivered(); }); });
    return;
  }
  if (timer_) timer_.stop();
  const linger abortive{.l_onoff = 1, .l_linger = 0};
  if (sock < 0 || ::setsockopt(sock, SOL_SOCKET, SO_LINGER, &abortive, sizeof abortive) != 0)
    spdlog::warn("origin: cannot arm the reset (SO_LINGER): {}", std::strerror(errno));
  close();
}

void Connection::on_written(Chunk* chunk, int status) {
  const std::size_t size = chunk->size;
  Chunk::destroy(chunk);
  --queued_chunks_;
  if (closing_) return;  // UV_ECANCELED from close()
  if (status < 0) {
    spdlog::debug("origin: write: {}", uv::describe(status));
    close();
    return;
  }
  server_->counters().add_bytes_sent(size);
  pump();
}

void Connection::finish_response() {
  phase_ = Phase::kIdle;
  in_flight_ = false;
  server_->counters().request_finished();
  if (!keep_alive_) return linger_close();
  if (pending_size() > 0) {
    pending_pos_ += consume(std::string_view(pending_).substr(pending_pos_));
    if (pending_pos_ == pending_.size()) {
      pending_.clear();
      pending_pos_ = 0;
    }
  }
  if (closing_ || phase_ != Phase::kIdle) return;
  if (peer_eof_) return close();
  resume_reading();
}

void Connection::linger_close() {
  if (peer_eof_) return close();
  phase_ = Phase::kLingering;
  pending_.clear();
  pending_pos_ = 0;
  int rc = tcp_.shutdown([this](int status) {
    if (!closing_ && status < 0) close();
  });
  if (rc < 0) return close();
  resume_reading();
  if (!timer_) timer_ = uv::Timer(server_->loop());
  timer_.start(kLingerMs, 0, [this] { close(); });
}

void Connection::close() {
  if (closing_) return;
  closing_ = true;
  auto& counters = server_->counters();
  if (in_flight_) {
    in_flight_ = false;
    counters.request_finished();
  }
  server_->unlink(this);
  server_ = nullptr;
  timer_.close();
  tcp_.close_then([this] { delete this; });
  // Counted once the descriptor is closed (uv_close closes a stream's at once): a test that waits for no open
  // connection may then check that every descriptor is back.
  counters.connection_closed();
}

Server::Server(uv_loop_t* loop, OriginOptions options)
    : loop_(loop), options_(std::move(options)), listener_(loop) {
  listener_.bind(options_.host, options_.port);
  listener_.listen(Origin::kListenBacklog, [this](int status) { on_connection(status); });
  port_ = listener_.local_port();
  spdlog::info("origin: listening on {} (latency {} ms)", url(""), options_.latency.count());
}

std::string Server::url(std::string_view path) const {
  const bool v6 = options_.host.find(':') != std::string::npos;
  std::string out = v6 ? "http://[" + options_.host + "]:" : "http://" + options_.host + ":";
  out += std::to_string(port_);
  out += path;
  return out;
}

void Server::close() {
  assert(std::this_thread::get_id() == owner_ && "Origin::close() belongs to the loop's thread");
  if (closed_) return;
  closed_ = true;
  listener_.close();
  while (connections_) connections_->close();  // close() unlinks
}

void Server::link(Connection* c) {
  c->next = connections_;
  if (connections_) connections_->prev = c;
  connections_ = c;
}

void Server::unlink(Connection* c) {
  if (c->prev) c->prev->next = c->next;
  if (c->next) c->next->prev = c->prev;
  if (connections_ == c) connections_ = c->next;
  c->prev = c->next = nullptr;
}

void Server::on_connection(int status) {
  if (status < 0) {
    // EMFILE and the like come in bursts: log the 1st, 2nd, 4th, 8th... failure.
    if (std::has_single_bit(++accept_errors_)) {
      spdlog::warn("origin: accept failed ({} so far): {}", accept_errors_, uv::describe(status));
    }
    return;
  }
  try {
    auto* c = new Connection(*this);
    link(c);
    counters_->connection_opened();
    if (int rc = listener_.accept(c->tcp()); rc < 0) {
      spdlog::warn("origin: uv_accept: {}", uv::describe(rc));
      c->close();
      return;
    }
    c->start();
  } catch (const std::exception& e) {
    spdlog::error("origin: cannot set up a connection: {}", e.what());
  }
}

}  // namespace

OriginStats OriginCounters::snapshot() const {
  constexpr auto r = std::memory_order_relaxed;
  return OriginStats{
      .connections = connections_.load(r),
      .max_connections = max_connections_.load(r),
      .connections_total = connections_total_.load(r),
      .requests_total = requests_total_.load(r),
      .requests_in_flight = requests_in_flight_.load(r),
      .max_requests_in_flight = max_requests_in_flight_.load(r),
      .bytes_sent = bytes_sent_.load(r),
  };
}

void OriginCounters::reset_max() {
  max_connections_.store(connections_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  max_requests_in_flight_.store(requests_in_flight_.load(std::memory_order_relaxed),
                                std::memory_order_relaxed);
}

void OriginCounters::connection_opened() {
  connections_total_.fetch_add(1, std::memory_order_relaxed);
  update_max(max_connections_, connections_.fetch_add(1, std::memory_order_relaxed) + 1);
  changed();
}

void OriginCounters::connection_closed() {
  connections_.fetch_sub(1, std::memory_order_relaxed);
  changed();
}

void OriginCounters::request_started() {
  requests_total_.fetch_add(1, std::memory_order_relaxed);
  update_max(max_requests_in_flight_, requests_in_flight_.fetch_add(1, std::memory_order_relaxed) + 1);
  changed();
}

void OriginCounters::request_finished() {
  requests_in_flight_.fetch_sub(1, std::memory_order_relaxed);
  changed();
}

// Both sides read-modify-write waiters_, so one of the two comes second in its order and sees the other: either
// the waiter's predicate sees this change (its RMW read from this one, which released the change), or this side
// sees the waiter registered and notifies it (under the mutex, so the notify cannot fall between its check and
// its sleep). RMWs rather than fences: ThreadSanitizer does not model fences.
void OriginCounters::changed() {
  if (waiters_.fetch_add(0, std::memory_order_acq_rel) == 0) return;
  std::lock_guard lock(mutex_);
  cv_.notify_all();
}

bool OriginCounters::wait_for(const std::function<bool(const OriginStats&)>& condition,
                              std::chrono::milliseconds limit) const {
  waiters_.fetch_add(1, std::memory_order_acq_rel);
  bool ok = false;
  {
    std::unique_lock lock(mutex_);
    ok = cv_.wait_for(lock, limit, [&] { return condition(snapshot()); });
  }
  waiters_.fetch_sub(1, std::memory_order_relaxed);
  return ok;
}

struct Origin::Impl {
  Impl(uv_loop_t* loop, OriginOptions options) : server(loop, std::move(options)) {}
  Server server;
};

Origin::Origin(uv_loop_t* loop, OriginOptions options)
    : impl_(std::make_unique<Impl>(loop, std::move(options))) {}

Origin::~Origin() = default;

std::uint16_t Origin::port() const {
  return impl_->server.port();
}

std::string Origin::url(std::string_view path) const {
  return impl_->server.url(path);
}

const std::shared_ptr<OriginCounters>& Origin::counters() const {
  return impl_->server.shared_counters();
}

void Origin::close() {
  impl_->server.close();
}

OriginThread::OriginThread(OriginOptions options) {
  // The thread owns the promise: set_value may still be running there when this constructor returns.
  std::promise<void> started;
  auto ready = started.get_future();
  thread_ = std::thread([this, started = std::move(started), options = std::move(options)]() mutable {
    run(std::move(options), started);
  });
  try {
    ready.get();
  } catch (...) {
    thread_.join();
    stopped_ = true;
    throw;
  }
}

OriginThread::~OriginThread() {
  const int rc = stop();
  if (rc != 0) spdlog::error("origin: loop did not close cleanly: {}", uv::describe(rc));
  assert(rc == 0);
}

std::string OriginThread::url(std::string_view path) const {
  return base_url_ + std::string(path);
}

int OriginThread::stop() {
  if (stopped_) return loop_close_result_;
  stopped_ = true;
  stop_async_->send();
  thread_.join();
  return loop_close_result_;
}

void OriginThread::run(OriginOptions options, std::promise<void>& started) {
  // Writing to a connection the client closed raises SIGPIPE in the writing thread (libuv writes without
  // MSG_NOSIGNAL). fetchd's main() ignores it process-wide, a test binary may not: blocked on this thread, it
  // stays pending here and the write fails with EPIPE instead of killing the process.
  sigset_t sigpipe;
  sigemptyset(&sigpipe);
  sigaddset(&sigpipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &sigpipe, nullptr);
  uv::Loop loop;
  std::unique_ptr<Origin> origin;
  uv::Async stop;
  try {
    origin = std::make_unique<Origin>(loop.get(), std::move(options));
    stop = uv::Async(loop.get(), [&origin, &stop] {
      origin->close();
      stop.close();
    });
  } catch (...) {
    started.set_exception(std::current_exception());
    return;  // Loop's destructor closes what the failed start left open
  }
  port_ = origin->port();
  base_url_ = origin->url("");
  counters_ = origin->counters();
  stop_async_ = &stop;
  started.set_value();  // the constructor returns

  loop.run();
  // The loop ends only when every handle is closed and its close callback ran; a handle still registered now
  // was leaked by its owner.
  int left = 0;
  uv_walk(
      loop.get(), [](uv_handle_t*, void* n) { ++*static_cast<int*>(n); }, &left);
  const int rc = loop.close();
  loop_close_result_ = left == 0 ? rc : UV_EBUSY;
}

}  // namespace fetchd::origin
