// SPDX-License-Identifier: Apache-2.0
// The control server over real sockets: a ControlServer on its own loop thread, raw blocking clients in the
// test thread, Unix sockets in temp dirs and TCP on 127.0.0.1. Every test ends with uv_loop_close() == 0.

#include "fetchd/control/control_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <fstream>
#include <future>
#include <memory>
#include <thread>

#include "server_harness.hpp"

namespace fetchd::control::test {
namespace {

using json = nlohmann::json;

class Environment : public ::testing::Environment {
 public:
  void SetUp() override {
    std::signal(SIGPIPE, SIG_IGN);  // as the daemon does: a peer that went away is an EPIPE, not a signal
    spdlog::set_level(spdlog::level::warn);  // one info line per connection would drown the output
  }
};
[[maybe_unused]] const auto* const kEnvironment = ::testing::AddGlobalTestEnvironment(new Environment);

json read_json(Client& c) {
  auto line = c.read_line();
  if (!line) {
    ADD_FAILURE() << "no line: " << (c.error() ? std::strerror(c.error()) : "EOF");
    return json();
  }
  return json::parse(*line);
}

std::string ping(std::string_view req) {
  return json{{"op", "ping"}, {"req", req}}.dump() + "\n";
}

// Pings and returns the server's id of this connection (the echo handler reports it).
ConnectionId ping_id(Client& c, std::string_view req = "id") {
  c.send(ping(req));
  json j = read_json(c);
  EXPECT_EQ(j["ok"], true) << j;
  EXPECT_EQ(j["req"], req) << j;
  return j["result"].value("connection", ConnectionId{0});
}

std::unique_ptr<ServerThread> unix_server(const std::filesystem::path& path,
                                          ControlServer::Options options = {},
                                          ServerThread::Handler handler = echo) {
  return std::make_unique<ServerThread>([path](ControlServer& s) { s.listen_unix(path, 0660, std::nullopt); },
                                        options, std::move(handler));
}

// A socket bound to path; listening if asked. Without SOCK_CLOEXEC, like a descriptor from systemd.
core::UniqueFd bound_unix_socket(const std::filesystem::path& path, bool listening) {
  core::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0)
      << std::strerror(errno);
  if (listening) {
    EXPECT_EQ(::listen(fd.get(), 16), 0);
  }
  return fd;
}

std::string error_of(const std::function<void(ControlServer&)>& setup) {
  try {
    ServerThread server(setup);
    EXPECT_EQ(server.stop(), 0);
    ADD_FAILURE() << "setup did not throw";
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return {};
}

TEST(ControlServer, PingOverUnixSocketWithModeAndGroup) {
  TempDir dir;
  const auto path = dir.path() / "ctl.sock";
  ServerThread server([&](ControlServer& s) { s.listen_unix(path, 0600, getgid()); });
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_gid, getgid());

  Client c = Client::unix_socket(path);
  c.send(R"({"op":"ping","req":{"n":1}})"
         "\n");
  json j = read_json(c);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["op"], "ping");
  EXPECT_EQ(j["req"], json({{"n", 1}}));
  EXPECT_GT(j["result"]["connection"].get<ConnectionId>(), 0u);
  EXPECT_EQ(server.call([](ControlServer& s) { return s.connection_count(); }), 1u);

  EXPECT_EQ(server.stop(), 0);
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::symlink_status(path)))
      << "socket file removed on close";
  EXPECT_TRUE(c.at_eof());
}

TEST(ControlServer, ModeIsApplied0660) {
  TempDir dir;
  const auto path = dir.path() / "ctl.sock";
  ServerThread server([&](ControlServer& s) { s.listen_unix(path, 0660, std::nullopt); });
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_EQ(server.stop(), 0);
}

TEST(ControlServer, PipelinedRequestsAnsweredInOrder) {
  TempDir dir;
  auto server = unix_server(dir.path() / "ctl.sock");
  Client c = Client::unix_socket(dir.path() / "ctl.sock");
  constexpr int kRequests = 10000;
  std::string all;
  for (int i = 0; i < kRequests; ++i) all += json{{"op", "ping"}, {"req", i}}.dump() + "\n";
  // Written from another thread while this one reads, so that neither side's buffers decide the outcome.
  std::thread writer([&] { c.send(all); });
  int next = 0;
  for (; next < kRequests; ++next) {
    auto line = c.read_line();
    if (!line) break;
    json j = json::parse(*line);
    ASSERT_EQ(j["req"], next) << *line;
    ASSERT_EQ(j["ok"], true);
  }
  writer.join();
  EXPECT_EQ(next, kRequests);
  EXPECT_EQ(server->lines(), static_cast<std::uint64_t>(kRequests));
  EXPECT_EQ(server->stop(), 0);
}

TEST(ControlServer, PartialLinesAcrossReadsCrLfAndEmptyLines) {
  TempDir dir;
  auto server = unix_server(dir.path() / "ctl.sock");
  Client c = Client::unix_socket(dir.path() / "ctl.sock");
  const std::string bytes = "\n\r\n" + ping("a") + "\n" + R"({"op":"ping","req":"b"})" + "\r\n" + ping("c");
  for (char b : bytes) c.send(std::string_view(&b, 1));  // one write per byte
  for (const char* expected : {"a", "b", "c"}) EXPECT_EQ(read_json(c)["req"], expected);
  // Several lines and a partial one in one write, the rest in the next.
  c.send(ping("d") + ping("e") + R"({"op":"pi)");
  c.send(R"(ng","req":"f"})"
         "\n");
  for (const char* expected : {"d", "e", "f"}) EXPECT_EQ(read_json(c)["req"], expected);
  EXPECT_EQ(server->lines(), 6u) << "empty lines are not requests";
  EXPECT_EQ(server->stop(), 0);
}

TEST(ControlServer, ErrorsAreAnsweredAndTheConnectionGoesOn) {
  TempDir dir;
  auto server = unix_server(dir.path() / "ctl.sock");
  Client c = Client::unix_socket(dir.path() / "ctl.sock");
  c.send("{nope\n" + std::string(R"({"op":"explode","req":1})") + "\n" +
         "{\"op\":\"ping\",\"req\":\"\xff\"}\n" + ping("ok"));
  json a = read_json(c);
  EXPECT_EQ(a["error"]["code"], "bad_json");
  json b = read_json(c);
  EXPECT_EQ(b["error"]["code"], "unknown_op");
  EXPECT_EQ(b["req"], 1);
  EXPECT_TRUE(b["op"].is_null());
  EXPECT_EQ(read_json(c)["error"]["code"], "bad_json");
  EXPECT_EQ(read_json(c)["req"], "ok");
  EXPECT_EQ(server->stop(), 0);
}

TEST(ControlServer, LineOfExactlyMaxBytesIsAccepted) {
  TempDir dir;
  auto server = unix_server(dir.path() / "ctl.sock");
  Client c = Client::unix_socket(dir.path() / "ctl.sock");
  const std::string head = R"({"op":"ping","req":")";
  const std::string tail = R"("})";
  const std::string pad(kMaxLineBytes - head.size() - tail.size(), 'x');
  c.send(head + pad + tail + "\r\n");  // the '\r' does not count
  json j = read_json(c);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["req"].get<std::string>().size(), pad.size());
  EXPECT_EQ(server->stop(), 0);
}

TEST(ControlServer, OversizeLineGetsLineTooLongThenEofWhileOthersWork) {
  TempDir dir;
  auto server = unix_server(dir.path() / "ctl.sock");
  Client other = Client::unix_socket(dir.path() / "ctl.sock");
  ping_id(other, "before");
  Client big = Client::unix_socket(dir.path() / "ctl.sock");
  const ConnectionId big_id = ping_id(big, "big");

  const std::uint64_t lines_before = server->lines();
  big.send(R"({"op":"ping","req":")" + std::string(kMaxLineBytes + 100, 'x') + "\"}\n" + ping("after"));
  json j = read_json(big);
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["error"]["code"], "line_too_long");
  EXPECT_TRUE(j["op"].is_null());
  EXPECT_TRUE(big.at_eof()) << "a clean EOF after the answer, not a reset: " << std::strerror(big.error());
  EXPECT_EQ(server->lines(), lines_before) << "the handler saw nothing of the long line or what followed";

  ping_id(other, "still served");
  big.close();
  EXPECT_TRUE(server->wait_closed(big_id));
  EXPECT_EQ(server->call([](ControlServer& s) { return s.connection_count(); }), 1u);
  EXPECT_EQ(server->stop(), 0);
}

TEST(ControlServer, ClientDisconnectsMidLine) {
  TempDir dir;
  auto server = unix_server(dir.path() / "ctl.sock");
  Client c = Client::unix_socket(dir.path() / "ctl.sock");
  const ConnectionId id = ping_id(c);
  c.send(R"({"op":"pi)");
  c.close();
  EXPECT_TRUE(server->wait_closed(id));
  EXPECT_EQ(server->lines(), 1u) << "the cut line is not a request";
  Client other = Client::unix_socket(dir.path() / "ctl.sock");
  ping_id(other);
  EXPECT_EQ(server->stop(), 0);
  auto closed = server->closed();
  EXPECT_EQ(std::count(closed.begin(), closed.end(), id), 1) << "the close handler runs once per connection";
}

TEST(ControlServer, ClientDisconnectsWithRepliesUnread) {
  TempDir dir;
  auto server = unix_server(dir.path() / "ctl.sock");
  Client c = Client::unix_socket(dir.path() / "ctl.sock");
  const ConnectionId id = ping_id(c);
  std::string many;
  for (int i = 0; i < 2000; ++i) many += ping("unread");
  c.send(many);
  c.close();  // replies still being written: EPIPE/ECONNRESET on our side
  EXPECT_TRUE(server->wait_closed(id));
  Client other = Client::unix_socket(dir.path() / "ctl.sock");
  ping_id(other);
  EXPECT_EQ(server->stop(), 0);
  auto closed = server->closed();
  EXPECT_EQ(std::count(closed.begin(), closed.end(), id), 1);
}

TEST(ControlServer, HalfClosedClientGetsEveryAnswerThenEof) {
  TempDir dir;
  std::promise<ConnectionId> status_seen;
  auto handler = [&](ControlServer& s, ConnectionId id, ParseResult parsed) {
    if (auto* r = std::get_if<Request>(&parsed); r && std::holds_alternative<Status>(r->op)) {
      status_seen.set_value(id);  // answered later, as a submit is after its commit
      return;
    }
    echo(s, id, parsed);
  };
  auto server = unix_server(dir.path() / "ctl.sock", {}, handler);
  Client c = Client::unix_socket(dir.path() / "ctl.sock");
  c.send(ping("first") + R"({"op":"status","id":4})" + "\n");
  c.shutdown_write();
  EXPECT_EQ(read_json(c)["req"], "first");
  auto seen = status_seen.get_future();
  ASSERT_EQ(seen.wait_for(kFailsafe), std::future_status::ready);
  const ConnectionId id = seen.get();
  EXPECT_TRUE(server->closed().empty()) << "the connection waits for the outstanding answer";
  server->call([id](ControlServer& s) {
    s.send(id, encode_event("stats", "stats", json::object()));  // an event is not an answer
    s.send(id, encode_result("status", std::nullopt, json{{"late", true}}));
    return 0;
  });
  EXPECT_EQ(read_json(c)["event"], "stats");
  EXPECT_EQ(read_json(c)["result"]["late"], true);
  EXPECT_TRUE(c.at_eof());
  EXPECT_TRUE(server->wait_closed(id));
  EXPECT_EQ(server->stop(), 0);
}

TEST(ControlServer, NonReadingClientIsPausedThenDroppedWhileOthersAreServed) {
  TempDir dir;
  ControlServer::Options options;
  options.pause_reading_backlog = 64 * 1024;
  options.max_backlog = 1 << 20;
  constexpr std::size_t kReply = 16 * 1024;
  auto handler = [](ControlServer& s, ConnectionId id, ParseResult parsed) {
    auto* r = std::get_if<Request>(&parsed);
    if (r && r->req == json("big")) {
      s.send(id, encode_result("ping", r->req, json{{"pad", std::string(kReply, 'p')}}));
      return;
    }
    echo(s, id, parsed);
  };
  auto server = unix_server(dir.path() / "ctl.sock", options, handler);
  Client reader = Client::unix_socket(dir.path() / "ctl.sock");
  ping_id(reader);
  Client lazy = Client::unix_socket(dir.path() / "ctl.sock");
  const ConnectionId lazy_id = ping_id(lazy);

  // 2000 requests are a few dozen KiB: the kernel buffers them all. Unthrottled, their 32 MiB of replies
  // would exceed max_backlog and get the client dropped; paused, the server leaves them unread.
  constexpr int kRequests = 2000;
  std::string requests;
  for (int i = 0; i < kRequests; ++i) requests += ping("big");
  const std::uint64_t lines_before = server->lines();
  lazy.send(requests);

  // Watch the server until the pause shows (observed between callbacks, so never mid-read). Bounded.
  bool paused = false;
  for (int i = 0; i < 100000 && !paused; ++i) {
    auto [pending, p] = server->call([lazy_id](ControlServer& s) {
      return std::pair(s.pending_bytes(lazy_id), s.reading_paused(lazy_id));
    });
    ASSERT_LE(pending, options.pause_reading_backlog + kReply + 512) << "the backlog must stay bounded";
    paused = p;
  }
  ASSERT_TRUE(paused) << "the server never paused";
  EXPECT_LT(server->lines() - lines_before, static_cast<std::uint64_t>(kRequests / 4))
      << "reading stopped long before all requests were parsed";
  EXPECT_TRUE(server->closed().empty()) << "paused, not dropped";
  ping_id(reader, "served while the other one is paused");

  // Now a watcher's events pile up on the lazy connection until the backlog passes max_backlog.
  server->call([lazy_id](ControlServer& s) {
    for (int i = 0; i < 64; ++i)
      s.send(lazy_id, encode_event("progress", "job", json{{"pad", std::string(64 * 1024, 'e')}}));
    return 0;
  });
  EXPECT_TRUE(server->wait_closed(lazy_id));
  EXPECT_EQ(server->call([](ControlServer& s) { return s.connection_count(); }), 1u);
  ping_id(reader, "served after the drop");
  EXPECT_EQ(server->stop(), 0);
}

// A yielding connection gets no line between its yield and the owner's resume_yielded(), however the lines
// arrive (one write of many pipelined requests here: usually one read), and none is lost or reordered.
TEST(ControlServer, AYieldedConnectionWaitsForResumeAndKeepsItsOrder) {
  TempDir dir;
  // Loop thread only: set by the test's resume, cleared by each line.
  auto resumed = std::make_shared<bool>(true);
  auto early = std::make_shared<int>(0);  // lines handed over before the resume that should precede them
  auto handler = [resumed, early](ControlServer& s, ConnectionId id, ParseResult parsed) {
    if (!*resumed) ++*early;
    *resumed = false;
    echo(s, id, parsed);
    s.yield(id);
  };
  auto server = unix_server(dir.path() / "ctl.sock", {}, handler);
  Client c = Client::unix_socket(dir.path() / "ctl.sock");
  constexpr int kRequests = 50;
  std::string all;
  for (int i = 0; i < kRequests; ++i) all += ping(std::to_string(i));
  c.send(all);
  for (int i = 0; i < kRequests; ++i) {
    json j = read_json(c);
    ASSERT_EQ(j["req"], std::to_string(i)) << j;
    server->call([resumed](ControlServer& s) {
      *resumed = true;
      s.resume_yielded();
      return 0;
    });
  }
  EXPECT_EQ(server->call([early](ControlServer&) { return *early; }), 0) << "lines went past a yield";
  EXPECT_EQ(server->lines(), static_cast<std::uint64_t>(kRequests));
  EXPECT_EQ(server->stop(), 0);
}

TEST(ControlServer, ThousandIdleConnectionsAndAWorkingClient) {
  TempDir dir;
  auto server = unix_server(dir.path() / "ctl.sock");
  std::vector<Client> idle;
  idle.reserve(1000);
  for (int i = 0; i < 1000; ++i) {
    idle.push_back(Client::unix_socket(dir.path() / "ctl.sock"));
    ping_id(idle.back());  // accepted and served once, then idle
  }
  Client worker = Client::unix_socket(dir.path() / "ctl.sock");
  std::string batch;
  for (int i = 0; i < 100; ++i) batch += json{{"op", "ping"}, {"req", i}}.dump() + "\n";
  worker.send(batch);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(read_json(worker)["req"], i);
  EXPECT_EQ(server->call([](ControlServer& s) { return s.connection_count(); }), 1001u);
  idle.clear();
  EXPECT_TRUE(server->wait_closed_count(1000));
  EXPECT_EQ(server->call([](ControlServer& s) { return s.connection_count(); }), 1u);
  EXPECT_EQ(server->stop(), 0);
}

TEST(ControlServer, ConnectionsOverTheLimitAreAcceptedAndClosed) {
  TempDir dir;
  ControlServer::Options options;
  options.max_connections = 2;
  auto server = unix_server(dir.path() / "ctl.sock", options);
  Client a = Client::unix_socket(dir.path() / "ctl.sock");
  const ConnectionId a_id = ping_id(a);
  Client b = Client::unix_socket(dir.path() / "ctl.sock");
  ping_id(b);
  Client refused = Client::unix_socket(dir.path() / "ctl.sock");
  EXPECT_TRUE(refused.at_eof());
  ping_id(a, "still served");
  a.close();
  EXPECT_TRUE(server->wait_closed(a_id));
  Client c = Client::unix_socket(dir.path() / "ctl.sock");
  ping_id(c, "room again");
  EXPECT_EQ(server->stop(), 0);
  EXPECT_EQ(server->closed().size(), 3u) << "a refused connection never was one";
}

TEST(ControlServer, StaleSocketIsReplaced) {
  TempDir dir;
  const auto path = dir.path() / "ctl.sock";
  bound_unix_socket(path, false);  // closed at once: the file stays, nobody listens
  ASSERT_TRUE(std::filesystem::is_socket(path));
  auto server = unix_server(path);
  Client c = Client::unix_socket(path);
  ping_id(c);
  EXPECT_EQ(server->stop(), 0);
}

TEST(ControlServer, LiveSocketIsRefused) {
  TempDir dir;
  const auto path = dir.path() / "ctl.sock";
  auto live = bound_unix_socket(path, true);
  const std::string error = error_of([&](ControlServer& s) { s.listen_unix(path, 0660, std::nullopt); });
  EXPECT_NE(error.find("another fetchd is listening on " + path.string()), std::string::npos) << error;
  EXPECT_TRUE(std::filesystem::is_socket(path)) << "left alone";
}

TEST(ControlServer, NonSocketPathIsRefused) {
  TempDir dir;
  const auto path = dir.path() / "ctl.sock";
  std::ofstream(path) << "precious";
  const std::string error = error_of([&](ControlServer& s) { s.listen_unix(path, 0660, std::nullopt); });
  EXPECT_NE(error.find(path.string()), std::string::npos) << error;
  EXPECT_NE(error.find("not a socket"), std::string::npos) << error;
  std::ifstream in(path);
  std::string content;
  in >> content;
  EXPECT_EQ(content, "precious");
}

TEST(ControlServer, MissingDirectoryIsRefused) {
  TempDir dir;
  const auto path = dir.path() / "missing" / "ctl.sock";
  const std::string error = error_of([&](ControlServer& s) { s.listen_unix(path, 0660, std::nullopt); });
  EXPECT_NE(error.find(path.string()), std::string::npos) << error;
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "missing"));
}

TEST(ControlServer, TcpListensOnLoopbackOnly) {
  for (const char* host : {"0.0.0.0", "192.0.2.1", "::", "localhost", "10.0.0.1"}) {
    const std::string error = error_of([&](ControlServer& s) { s.listen_tcp(host, 0); });
    EXPECT_NE(error.find("loopback"), std::string::npos) << host << ": " << error;
  }
  int port = 0;
  ServerThread server([&](ControlServer& s) { port = s.listen_tcp("127.0.0.1", 0); });
  ASSERT_GT(port, 0);
  Client c = Client::tcp("127.0.0.1", port);
  ping_id(c, "tcp");
  EXPECT_EQ(server.stop(), 0);
}

TEST(ControlServer, AdoptsListeningSockets) {
  TempDir dir;
  const auto path = dir.path() / "activated.sock";
  auto unix_fd = bound_unix_socket(path, true);
  core::UniqueFd tcp_fd(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(tcp_fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(tcp_fd.get(), 16), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(tcp_fd.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int port = ntohs(addr.sin_port);

  const int ufd = unix_fd.release();
  const int tfd = tcp_fd.release();
  ServerThread server([&](ControlServer& s) {
    s.adopt(ufd);
    s.adopt(tfd);
  });
  EXPECT_EQ(::fcntl(ufd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  EXPECT_EQ(::fcntl(tfd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  Client u = Client::unix_socket(path);
  ping_id(u, "unix");
  Client t = Client::tcp("127.0.0.1", port);
  ping_id(t, "tcp");
  EXPECT_EQ(server.stop(), 0);
  EXPECT_TRUE(std::filesystem::is_socket(path)) << "an adopted socket's file belongs to systemd";
}

TEST(ControlServer, AdoptRefusesWhatIsNotAListeningLoopbackSocket) {
  core::UniqueFd unbound(::socket(AF_UNIX, SOCK_STREAM, 0));
  const int fd = unbound.release();
  std::string error = error_of([&](ControlServer& s) { s.adopt(fd); });
  EXPECT_NE(error.find("not a listening socket"), std::string::npos) << error;
  EXPECT_EQ(::fcntl(fd, F_GETFD), -1) << "the descriptor was taken over and closed";

  core::UniqueFd any(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  ASSERT_EQ(::bind(any.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(any.get(), 4), 0);
  const int any_fd = any.release();
  error = error_of([&](ControlServer& s) { s.adopt(any_fd); });
  EXPECT_NE(error.find("not a loopback address"), std::string::npos) << error;
}

TEST(ControlServer, StopListeningKeepsConnections) {
  TempDir dir;
  const auto path = dir.path() / "ctl.sock";
  auto server = unix_server(path);
  Client c = Client::unix_socket(path);
  ping_id(c, "before");
  server->call([](ControlServer& s) {
    s.stop_listening();
    return 0;
  });
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::symlink_status(path)));
  EXPECT_THROW(Client::unix_socket(path), std::system_error);
  ping_id(c, "after");
  EXPECT_EQ(server->stop(), 0);
}

TEST(ControlServer, CloseEndsEveryConnection) {
  TempDir dir;
  auto server = unix_server(dir.path() / "ctl.sock");
  std::vector<Client> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(Client::unix_socket(dir.path() / "ctl.sock"));
    ping_id(clients.back());
  }
  clients[0].send(R"({"op":"ping","req":"half a li)");  // mid-line at close
  EXPECT_EQ(server->stop(), 0) << "uv_loop_close() == 0 after close()";
  EXPECT_EQ(server->closed().size(), 3u);
  for (auto& c : clients) EXPECT_TRUE(c.at_eof());
}

TEST(ControlServer, SendToAGoneConnectionIsIgnored) {
  TempDir dir;
  auto server = unix_server(dir.path() / "ctl.sock");
  Client c = Client::unix_socket(dir.path() / "ctl.sock");
  const ConnectionId id = ping_id(c);
  c.close();
  ASSERT_TRUE(server->wait_closed(id));
  server->call([id](ControlServer& s) {
    s.send(id, encode_result("ping", std::nullopt, json::object()));
    s.send(id + 1000, "nobody\n");
    return s.pending_bytes(id);
  });
  EXPECT_EQ(server->stop(), 0);
}

}  // namespace
}  // namespace fetchd::control::test
