// SPDX-License-Identifier: Apache-2.0
#include "fetchd/control/control_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cassert>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "fetchd/control/line_splitter.hpp"
#include "fetchd/core/unique_fd.hpp"
#include "fetchd/uv/error.hpp"
#include "fetchd/uv/stream.hpp"

namespace fetchd::control {

namespace {

// One read buffer for the whole server: libuv calls alloc and then read for one stream before anything else
// runs, and the read callback consumes or copies the bytes, so idle connections cost no buffer.
constexpr std::size_t kReadBufferSize = 64 * 1024;
// The kernel caps it at net.core.somaxconn.
constexpr int kListenBacklog = 4096;
// After a line_too_long answer the rest of the client's input is read and dropped (so that closing does not
// turn into a reset that destroys the answer) up to this many bytes; beyond, the connection is cut.
constexpr std::size_t kMinDiscardBytes = 4 << 20;

std::string errno_text(int err) {
  return std::error_code(err, std::generic_category()).message();
}

bool is_loopback(const sockaddr* addr) {
  if (addr->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) return true;
    return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
  }
  return false;
}

std::string describe_inet(const sockaddr_storage& addr) {
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    return fmt::format("{}:{}", text, ntohs(in->sin_port));
  }
  if (addr.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    return fmt::format("[{}]:{}", text, ntohs(in6->sin6_port));
  }
  return "an unknown address";
}

// Who is on the other end, for the log: the peer's credentials on a Unix socket (the kernel's, not claimed by
// the client), its address on TCP.
std::string describe_peer(int fd, uv::Stream::Kind kind) {
  if (kind == uv::Stream::Kind::kPipe) {
    ucred cred{};
    socklen_t len = sizeof cred;
    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return "a local peer";
    return fmt::format("pid {} uid {} gid {}", cred.pid, cred.uid, cred.gid);
  }
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (fd < 0 || getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "an unknown address";
  return describe_inet(addr);
}

// Logs the 1st, 2nd, 4th, 8th... occurrence: refusals and accept errors come in bursts.
bool worth_logging(std::uint64_t count) {
  return std::has_single_bit(count);
}

}  // namespace

namespace detail {

class Connection;

struct Listener {
  uv::Stream stream;
  std::string name;                                  // for logs
  std::optional<std::filesystem::path> socket_file;  // ours to remove (not for adopted sockets)
  dev_t dev = 0;
  ino_t ino = 0;
};

struct ControlServerImpl {
  using Options = ControlServer::Options;
  ControlServerImpl(uv_loop_t* l, ControlServer::LineHandler line, ControlServer::CloseHandler closed,
                    Options o)
      : loop(l), on_line(std::move(line)), on_close(std::move(closed)), options(o) {}

  void start_listener(std::unique_ptr<Listener>& listener);
  void on_connection(Listener& listener, int status);
  void close_stream(uv::Stream stream);
  void connection_closed(ConnectionId id);
  void handle_closed();
  void stop_listening();
  void assert_loop_thread() const {
    assert(std::this_thread::get_id() == owner && "ControlServer belongs to the control loop's thread");
  }

  uv_loop_t* loop;
  ControlServer::LineHandler on_line;
  ControlServer::CloseHandler on_close;
  Options options;
  std::unique_ptr<char[]> read_buffer{new char[kReadBufferSize]};
  std::vector<std::unique_ptr<Listener>> listeners;
  std::unordered_map<ConnectionId, Connection*> connections;
  ConnectionId next_id = 1;
  std::size_t handles_closing = 0;  // close requested, close callback not run yet
  std::function<void()> close_done;
  std::uint64_t refused = 0;
  std::uint64_t accept_errors = 0;
  std::vector<ConnectionId> yielded;  // until resume_yielded()
  std::thread::id owner = std::this_thread::get_id();
};

// One accepted connection. It owns itself: created on accept, deleted in its stream's close callback, which
// libuv runs after the callbacks of cancelled writes, so no callback outlives it. Once closing it is out of
// the server's map, and the callbacks still to come only account and free memory.
class Connection {
 public:
  Connection(ControlServerImpl& server, ConnectionId id, uv::Stream stream, std::string peer)
      : server_(server),
        id_(id),
        stream_(std::move(stream)),
        peer_(std::move(peer)),
        splitter_(server.options.max_line) {}
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void start() { start_reading(); }
  void send(std::string line);
  void close();  // idempotent; the object is deleted in the close callback
  bool closing() const { return closing_; }
  std::size_t backlog() const { return backlog_; }
  bool paused() const { return paused_; }
  const std::string& peer() const { return peer_; }
  // Hands no more lines to the handler until unyield(): the rest of what was read is held.
  void yield();
  void unyield();

 private:
  void start_reading();
  void stop_reading();
  void on_read(ssize_t nread, const uv_buf_t* buf);
  void feed(std::string_view data);
  void resume();
  void deliver(std::string_view line);
  void refuse_long_line();
  void queue(std::string data);
  void write_now(std::string data);
  void on_written(std::size_t size, int status);
  void maybe_finish();
  const ControlServer::Options& options() const { return server_.options; }

  ControlServerImpl& server_;
  const ConnectionId id_;
  uv::Stream stream_;
  const std::string peer_;
  LineSplitter splitter_;
  // Input read but not parsed yet because the connection was paused in the middle of a read (one read can
  // hold thousands of pipelined requests); parsed first when writing has caught up. At most one read buffer.
  std::string held_;
  // Lines queued while libuv still holds unwritten bytes: they go out as one write when it has drained, so a
  // slow reader costs one buffer, not a write request per line.
  std::string outbox_;
  std::size_t backlog_ = 0;     // outbox_ plus the bytes of writes not completed yet
  std::uint64_t requests_ = 0;  // lines handed to the handler
  std::uint64_t answers_ = 0;   // answer lines sent
  std::size_t discarded_ = 0;   // input dropped after a line_too_long
  bool reading_ = false;
  bool paused_ = false;    // reading stopped by backpressure
  bool yielded_ = false;   // reading stopped by yield() until unyield()
  bool peer_eof_ = false;  // the peer half-closed (or closed) its side
  bool too_long_ = false;  // answered line_too_long: discarding input until EOF
  bool shutdown_started_ = false;
  bool closing_ = false;
};

void Connection::start_reading() {
  if (reading_ || closing_ || peer_eof_) return;
  int rc = stream_.read_start(
      [this](std::size_t, uv_buf_t* buf) { *buf = uv_buf_init(server_.read_buffer.get(), kReadBufferSize); },
      [this](ssize_t nread, const uv_buf_t* buf) { on_read(nread, buf); });
  if (rc < 0) {
    spdlog::warn("control: connection {} ({}): cannot read: {}", id_, peer_, uv::describe(rc));
    close();
    return;
  }
  reading_ = true;
}

void Connection::stop_reading() {
  if (!reading_) return;
  stream_.read_stop();
  reading_ = false;
}

void Connection::on_read(ssize_t nread, const uv_buf_t* buf) {
  if (closing_ || nread == 0) return;
  if (nread < 0) {
    stop_reading();
    if (nread != UV_EOF) {
      spdlog::debug("control: connection {} ({}): read: {}", id_, peer_,
                    uv::describe(static_cast<int>(nread)));
      close();
      return;
    }
    peer_eof_ = true;
    splitter_.drop_partial();  // a line cut short by the peer is not a request
    if (too_long_) {
      if (backlog_ == 0) close();  // else after the answer is written
      return;
    }
    maybe_finish();
    return;
  }
  const std::string_view data(buf->base, static_cast<std::size_t>(nread));
  if (too_long_) {
    discarded_ += data.size();
    if (discarded_ > std::max(4 * options().max_line, kMinDiscardBytes)) close();
    return;
  }
  feed(data);
}

void Connection::feed(std::string_view data) {
  if (closing_ || too_long_) return;
  const LineSplitter::Fed fed = splitter_.feed(data, [this](std::string_view line) {
    deliver(line);
    return !closing_ && !paused_ && !yielded_;
  });
  if (fed.stop == LineSplitter::Stop::kTooLong) return refuse_long_line();
  // The replies have to drain first, or the owner asked for a turn of the loop.
  if ((paused_ || yielded_) && !fed.rest.empty() && !closing_) held_.assign(fed.rest);
}

// Neither backpressure nor a yield holds the connection any more: parse what was held back, then read again
// (unless that holds it once more).
void Connection::resume() {
  if (paused_ || yielded_ || closing_) return;
  if (!held_.empty()) {
    std::string held;
    held.swap(held_);
    feed(held);
    if (closing_ || paused_ || yielded_ || too_long_) return;
  }
  start_reading();
}

void Connection::yield() {
  if (closing_ || too_long_) return;
  yielded_ = true;
  stop_reading();
}

void Connection::unyield() {
  if (!yielded_) return;
  yielded_ = false;
  resume();
}

void Connection::deliver(std::string_view line) {
  ++requests_;
  try {
    server_.on_line(id_, parse_request(line));
  } catch (const std::exception& e) {
    spdlog::error("control: connection {} ({}): the request handler failed: {}", id_, peer_, e.what());
    close();
  }
}

void Connection::refuse_long_line() {
  spdlog::warn("control: connection {} ({}): request line longer than {} bytes; closing", id_, peer_,
               options().max_line);
  too_long_ = true;
  std::string().swap(held_);
  // Replies still queued answer earlier lines: they go out first, the error last (send() is closed from now
  // on). Reading goes on (discarding) whatever the backlog: the client may be blocked writing the rest of its
  // line.
  paused_ = false;
  yielded_ = false;
  start_reading();
  queue(encode_error(ProtocolError{
      ErrorCode::kLineTooLong,
      fmt::format("request line longer than {} bytes; closing the connection", options().max_line),
      std::nullopt, std::nullopt}));
}

void Connection::send(std::string line) {
  if (closing_ || too_long_) return;
  if (line.empty() || line.back() != '\n') line.push_back('\n');
  if (line.starts_with(R"({"ok":)")) ++answers_;
  if (backlog_ > 0 && backlog_ + line.size() > options().max_backlog) {
    spdlog::warn(
        "control: dropping connection {} ({}): it does not read its replies ({} bytes unwritten, limit "
        "{})",
        id_, peer_, backlog_ + line.size(), options().max_backlog);
    close();
    return;
  }
  queue(std::move(line));
  if (!paused_ && backlog_ > options().pause_reading_backlog) {
    stop_reading();  // a client that pipelines and never reads cannot grow our memory
    paused_ = true;
  }
}

void Connection::queue(std::string data) {
  backlog_ += data.size();
  if (!outbox_.empty() || stream_.write_queue_size() > 0) {
    outbox_.append(data);
    return;
  }
  write_now(std::move(data));
}

void Connection::write_now(std::string data) {
  const std::size_t size = data.size();
  int rc = stream_.write(std::move(data), [this, size](int status) { on_written(size, status); });
  if (rc < 0) {
    backlog_ -= size;
    spdlog::debug("control: connection {} ({}): write: {}", id_, peer_, uv::describe(rc));
    close();
  }
}

void Connection::on_written(std::size_t size, int status) {
  backlog_ -= size;
  if (closing_) return;  // UV_ECANCELED from close()
  if (status < 0) {
    // EPIPE or ECONNRESET: the client went away without reading everything.
    spdlog::debug("control: connection {} ({}): write: {}", id_, peer_, uv::describe(status));
    close();
    return;
  }
  if (!outbox_.empty() && stream_.write_queue_size() == 0) {
    std::string out;
    out.swap(outbox_);
    write_now(std::move(out));
    if (closing_) return;
  }
  if (too_long_) {
    if (backlog_ > 0) return;
    if (peer_eof_) return close();
    if (!shutdown_started_) {
      shutdown_started_ = true;
      // FIN after the answer, so the client reads it and then EOF; its own close then ends the connection.
      int rc = stream_.shutdown([this](int st) {
        if (!closing_ && st < 0) close();
      });
      if (rc < 0) close();
    }
    return;
  }
  if (paused_ && backlog_ < options().pause_reading_backlog / 2) {
    paused_ = false;
    resume();
  }
  maybe_finish();
}

// After the peer half-closed: done once every request was answered and written.
void Connection::maybe_finish() {
  if (peer_eof_ && !closing_ && !too_long_ && held_.empty() && backlog_ == 0 && answers_ >= requests_) {
    close();
  }
}

void Connection::close() {
  if (closing_) return;
  closing_ = true;
  reading_ = false;
  server_.connections.erase(id_);
  ++server_.handles_closing;
  stream_.close_then([this] {
    ControlServerImpl& server = server_;
    const ConnectionId id = id_;
    delete this;
    server.connection_closed(id);
  });
}

void ControlServerImpl::connection_closed(ConnectionId id) {
  spdlog::debug("control: connection {} closed", id);
  try {
    if (on_close) on_close(id);
  } catch (const std::exception& e) {
    spdlog::error("control: the close handler failed for connection {}: {}", id, e.what());
  }
  handle_closed();
}

void ControlServerImpl::handle_closed() {
  assert(handles_closing > 0);
  --handles_closing;
  if (handles_closing == 0 && close_done && connections.empty() && listeners.empty()) {
    auto done = std::move(close_done);
    close_done = nullptr;
    done();
  }
}

void ControlServerImpl::close_stream(uv::Stream stream) {
  if (!stream) return;
  ++handles_closing;
  stream.close_then([this] { handle_closed(); });
}

// On success the listener moves into the list; on failure (throws) it stays with the caller.
void ControlServerImpl::start_listener(std::unique_ptr<Listener>& listener) {
  Listener* l = listener.get();
  l->stream.listen(kListenBacklog, [this, l](int status) { on_connection(*l, status); });
  spdlog::info("control: listening on {}", l->name);
  listeners.push_back(std::move(listener));
}

void ControlServerImpl::on_connection(Listener& listener, int status) {
  if (status < 0) {
    // EMFILE and the like; libuv keeps the listener going.
    if (worth_logging(++accept_errors)) {
      spdlog::warn("control: accept on {} failed ({} so far): {}", listener.name, accept_errors,
                   uv::describe(status));
    }
    return;
  }
  uv::Stream client;
  try {
    client = uv::Stream(loop, listener.stream.kind());
  } catch (const std::exception& e) {
    spdlog::error("control: cannot set up a connection: {}", e.what());
    return;
  }
  if (int rc = listener.stream.accept(client); rc < 0) {
    spdlog::warn("control: accept on {}: {}", listener.name, uv::describe(rc));
    close_stream(std::move(client));
    return;
  }
  const auto kind = client.kind();
  if (connections.size() >= options.max_connections) {
    // Accepted and closed at once, so the backlog keeps moving and the clients see EOF instead of hanging.
    if (worth_logging(++refused)) {
      spdlog::warn(
          "control: refused a connection from {}: the limit of {} connections is reached ({} refused so far)",
          describe_peer(client.fileno(), kind), options.max_connections, refused);
    }
    close_stream(std::move(client));
    return;
  }
  if (kind == uv::Stream::Kind::kTcp)
    client.set_nodelay(true);  // replies are whole lines: never wait for an ACK
  std::string peer = describe_peer(client.fileno(), kind);
  const ConnectionId id = next_id++;
  spdlog::info("control: connection {} from {}", id, peer);
  auto* c = new Connection(*this, id, std::move(client), std::move(peer));
  connections.emplace(id, c);
  c->start();
}

void ControlServerImpl::stop_listening() {
  for (auto& l : listeners) {
    if (l->socket_file) {
      // Only if it is still the socket we created: a successor may already have replaced it.
      struct stat st {};
      if (lstat(l->socket_file->c_str(), &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino) {
        if (unlink(l->socket_file->c_str()) != 0) {
          spdlog::warn("control: cannot remove {}: {}", l->socket_file->string(), errno_text(errno));
        }
      }
    }
    spdlog::info("control: stopped listening on {}", l->name);
    close_stream(std::move(l->stream));
  }
  listeners.clear();
}

}  // namespace detail

ControlServer::ControlServer(uv_loop_t* loop, LineHandler on_line, CloseHandler on_close)
    : ControlServer(loop, std::move(on_line), std::move(on_close), Options{}) {}

ControlServer::ControlServer(uv_loop_t* loop, LineHandler on_line, CloseHandler on_close, Options options)
    : impl_(std::make_unique<detail::ControlServerImpl>(loop, std::move(on_line), std::move(on_close),
                                                        options)) {}

ControlServer::~ControlServer() {
  assert(impl_->listeners.empty() && impl_->connections.empty() && impl_->handles_closing == 0 &&
         "ControlServer destroyed before close() completed");
}

void ControlServer::listen_unix(const std::filesystem::path& path, unsigned mode,
                                std::optional<gid_t> group) {
  impl_->assert_loop_thread();
  const std::string p = path.string();
  auto fail = [&](const std::string& why) {
    return std::runtime_error(fmt::format("control socket {}: {}", p, why));
  };

  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (p.empty() || p.size() >= sizeof addr.sun_path) {
    throw fail(fmt::format("the path is {} bytes; a Unix socket path must be shorter than {}", p.size(),
                           sizeof addr.sun_path));
  }
  std::memcpy(addr.sun_path, p.data(), p.size());
  const auto* sa = reinterpret_cast<const sockaddr*>(&addr);

  std::filesystem::path parent = path.parent_path();
  if (parent.empty()) parent = ".";
  struct stat st {};
  if (stat(parent.c_str(), &st) != 0) {
    throw fail(fmt::format("cannot use the directory {}: {}", parent.string(), errno_text(errno)));
  }
  if (!S_ISDIR(st.st_mode)) throw fail(fmt::format("{} is not a directory", parent.string()));

  if (lstat(p.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) throw fail("the path exists and is not a socket; refusing to replace it");
    // A socket file outlives its process. Whether anyone still listens is what a connect() tells: refused
    // means stale. Non-blocking, so a listener with a full backlog (EAGAIN) counts as alive instead of
    // blocking us.
    core::UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!probe) throw fail(fmt::format("socket: {}", errno_text(errno)));
    if (connect(probe.get(), sa, sizeof addr) == 0 || errno == EAGAIN || errno == EINPROGRESS) {
      throw std::runtime_error(fmt::format("another fetchd is listening on {}", p));
    }
    const int err = errno;
    if (err == ECONNREFUSED) {
      spdlog::info("control: replacing the stale socket {}", p);
      if (unlink(p.c_str()) != 0 && errno != ENOENT) {
        throw fail(fmt::format("cannot remove the stale socket: {}", errno_text(errno)));
      }
    } else if (err != ENOENT) {
      throw fail(fmt::format("cannot check whether the existing socket is in use: {}", errno_text(err)));
    }
  } else if (errno != ENOENT) {
    throw fail(errno_text(errno));
  }

  core::UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) throw fail(fmt::format("socket: {}", errno_text(errno)));
  if (bind(fd.get(), sa, sizeof addr) != 0) throw fail(fmt::format("bind: {}", errno_text(errno)));
  // From here on the file is ours: remove it if anything below fails. Permissions are set before listen():
  // until then a connect() is refused, so no client ever gets in under the umask's looser mode.
  auto cleanup_on_error = [&](const std::string& why) {
    unlink(p.c_str());
    return fail(why);
  };
  if (chmod(p.c_str(), static_cast<mode_t>(mode & 07777)) != 0) {
    throw cleanup_on_error(fmt::format("chmod {:04o}: {}", mode, errno_text(errno)));
  }
  if (group && chown(p.c_str(), static_cast<uid_t>(-1), *group) != 0) {
    throw cleanup_on_error(fmt::format("chown to group {}: {}", *group, errno_text(errno)));
  }
  if (lstat(p.c_str(), &st) != 0) throw cleanup_on_error(errno_text(errno));

  auto listener = std::make_unique<detail::Listener>();
  listener->name = fmt::format("unix socket {} (mode {:04o})", p, mode & 07777);
  listener->dev = st.st_dev;
  listener->ino = st.st_ino;
  try {
    listener->stream = uv::Stream(impl_->loop, uv::Stream::Kind::kPipe);
    listener->stream.open(fd.get());
    fd.release();  // the handle owns it now
    listener->socket_file = path;
    impl_->start_listener(listener);
  } catch (const std::exception& e) {
    if (listener) impl_->close_stream(std::move(listener->stream));
    throw cleanup_on_error(e.what());
  }
}

int ControlServer::listen_tcp(const std::string& host, int port) {
  impl_->assert_loop_thread();
  auto fail = [&](const std::string& why) {
    return std::runtime_error(fmt::format("control TCP listener {}:{}: {}", host, port, why));
  };
  if (port < 0 || port > 65535) throw fail("the port must be 0 to 65535");
  sockaddr_storage addr{};
  auto* in = reinterpret_cast<sockaddr_in*>(&addr);
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (inet_pton(AF_INET, host.c_str(), &in->sin_addr) == 1) {
    addr.ss_family = AF_INET;
  } else if (inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) == 1) {
    addr.ss_family = AF_INET6;
  } else {
    throw fail("the host must be a numeric loopback address (127.0.0.1 or ::1)");
  }
  if (!is_loopback(reinterpret_cast<const sockaddr*>(&addr))) {
    throw fail(
        "not a loopback address; the control protocol has no authentication, so TCP is only offered on "
        "127.0.0.0/8 and ::1 (use the Unix socket, or a tunnel)");
  }
  auto listener = std::make_unique<detail::Listener>();
  try {
    listener->stream = uv::Stream(impl_->loop, uv::Stream::Kind::kTcp);
    listener->stream.bind_tcp(host, static_cast<std::uint16_t>(port));
    const int bound = listener->stream.local_port();  // known after bind (the kernel picks it for port 0)
    listener->name = addr.ss_family == AF_INET6 ? fmt::format("tcp [{}]:{}", host, bound)
                                                : fmt::format("tcp {}:{}", host, bound);
    impl_->start_listener(listener);
    return bound;
  } catch (const std::exception& e) {
    if (listener) impl_->close_stream(std::move(listener->stream));
    throw fail(e.what());
  }
}

void ControlServer::adopt(int raw_fd) {
  impl_->assert_loop_thread();
  core::UniqueFd fd(raw_fd);
  auto fail = [&](const std::string& why) {
    return std::runtime_error(fmt::format("control: inherited socket (fd {}): {}", raw_fd, why));
  };
  int value = 0;
  socklen_t len = sizeof value;
  if (getsockopt(fd.get(), SOL_SOCKET, SO_TYPE, &value, &len) != 0) {
    throw fail(fmt::format("not a socket: {}", errno_text(errno)));
  }
  if (value != SOCK_STREAM) throw fail("not a stream socket (use ListenStream= in the .socket unit)");
  len = sizeof value;
  if (getsockopt(fd.get(), SOL_SOCKET, SO_ACCEPTCONN, &value, &len) != 0 || value == 0) {
    throw fail("not a listening socket");
  }
  sockaddr_storage addr{};
  len = sizeof addr;
  if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    throw fail(fmt::format("getsockname: {}", errno_text(errno)));
  }
  auto listener = std::make_unique<detail::Listener>();
  uv::Stream::Kind kind = uv::Stream::Kind::kPipe;
  if (addr.ss_family == AF_UNIX) {
    const auto* un = reinterpret_cast<const sockaddr_un*>(&addr);
    const std::size_t n = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
    std::string name(un->sun_path, strnlen(un->sun_path, std::min(n, sizeof un->sun_path)));
    listener->name = fmt::format("unix socket {} (socket activation)", name.empty() ? "(unnamed)" : name);
  } else if (addr.ss_family == AF_INET || addr.ss_family == AF_INET6) {
    if (!is_loopback(reinterpret_cast<const sockaddr*>(&addr))) {
      throw fail(fmt::format("{} is not a loopback address; the control protocol has no authentication",
                             describe_inet(addr)));
    }
    kind = uv::Stream::Kind::kTcp;
    listener->name = fmt::format("tcp {} (socket activation)", describe_inet(addr));
  } else {
    throw fail(fmt::format("unsupported address family {}", addr.ss_family));
  }
  // systemd passes the descriptor without FD_CLOEXEC (it had to survive exec); our children must not inherit
  // it.
  const int flags = fcntl(fd.get(), F_GETFD);
  if (flags < 0 || fcntl(fd.get(), F_SETFD, flags | FD_CLOEXEC) != 0) {
    throw fail(fmt::format("fcntl FD_CLOEXEC: {}", errno_text(errno)));
  }
  try {
    listener->stream = uv::Stream(impl_->loop, kind);
    listener->stream.open(fd.get());
    fd.release();
    impl_->start_listener(listener);
  } catch (const std::exception& e) {
    if (listener) impl_->close_stream(std::move(listener->stream));
    throw fail(e.what());
  }
}

void ControlServer::send(ConnectionId id, std::string line) {
  impl_->assert_loop_thread();
  auto it = impl_->connections.find(id);
  if (it == impl_->connections.end()) return;
  it->second->send(std::move(line));
}

void ControlServer::stop_listening() {
  impl_->assert_loop_thread();
  impl_->stop_listening();
}

void ControlServer::close(std::function<void()> done) {
  impl_->assert_loop_thread();
  impl_->close_done = std::move(done);
  impl_->stop_listening();
  std::vector<detail::Connection*> open;
  open.reserve(impl_->connections.size());
  for (auto& [id, c] : impl_->connections) open.push_back(c);
  for (detail::Connection* c : open) c->close();  // erases itself from the map
  if (impl_->handles_closing == 0 && impl_->close_done) {
    auto cb = std::move(impl_->close_done);
    impl_->close_done = nullptr;
    cb();
  }
}

void ControlServer::yield(ConnectionId id) {
  impl_->assert_loop_thread();
  auto it = impl_->connections.find(id);
  if (it == impl_->connections.end()) return;
  it->second->yield();
  impl_->yielded.push_back(id);
}

void ControlServer::resume_yielded() {
  impl_->assert_loop_thread();
  auto ids = std::move(impl_->yielded);
  impl_->yielded.clear();
  for (ConnectionId id : ids) {
    // Looked up each time: a handler run by an earlier resume may have closed any connection.
    if (auto it = impl_->connections.find(id); it != impl_->connections.end()) it->second->unyield();
  }
}

std::size_t ControlServer::connection_count() const {
  impl_->assert_loop_thread();
  return impl_->connections.size();
}

std::size_t ControlServer::pending_bytes(ConnectionId id) const {
  impl_->assert_loop_thread();
  auto it = impl_->connections.find(id);
  return it == impl_->connections.end() ? 0 : it->second->backlog();
}

bool ControlServer::reading_paused(ConnectionId id) const {
  impl_->assert_loop_thread();
  auto it = impl_->connections.find(id);
  return it != impl_->connections.end() && it->second->paused();
}

}  // namespace fetchd::control
