// SPDX-License-Identifier: Apache-2.0
// Fault cases 16-18 (resolution, connection, TLS), for every strategy. TLS runs against nginx (the embedded
// origin has no TLS) with certificates made at test time by the openssl CLI: a test CA, a leaf it signed for
// 127.0.0.1, one for another name, an expired one, and a self-signed one. Skipped with a reason when nginx or
// openssl is missing (scripts/setup installs both).

#include <fmt/format.h>
#include <signal.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <regex>

#include "fault_support.hpp"
#include "fetchd/origin/body.hpp"
#include "process.hpp"

namespace fetchd::fault {
namespace {

using core::ErrorCategory;

class NetworkFault : public FaultTest {};

TEST_P(NetworkFault, Case16_UnresolvableNameIsAResolveErrorRetriedWithoutBlockingTheLoop) {
  config_.defaults.retry.retries = 1;
  Runner r(config_);
  auto req = request("/x", "x.bin");
  req.url = fmt::format("http://fetchd-fault-{}.invalid/x.bin", std::random_device{}());
  auto bad = r.add(req);
  auto good = r.add(request("/bytes/100000/ok.bin?seed=1&latency=50ms", "ok.bin"));
  ASSERT_TRUE(r.run());
  EXPECT_TRUE(failed_with(r.outcome(bad), ErrorCategory::kResolve, {"cannot resolve", ".invalid"}, 2));
  ASSERT_TRUE(done_after(r.outcome(good), 1));
  EXPECT_EQ(file_sha256(out("ok.bin")), origin::body_sha256_hex(100000, 1));
  // The control loop's 5 ms heartbeat kept beating while names were resolved (curl's threaded resolver).
  EXPECT_LT(ms(r.max_loop_gap()), 500.0) << "the control loop was blocked";
  expect_no_file("x.bin");
}

TEST_P(NetworkFault, Case17_ConnectionRefusedIsAConnectErrorWithinASecond) {
  config_.defaults.retry.retries = 1;
  Runner r(config_);
  auto req = request("/x", "x.bin");
  req.url = fmt::format("http://127.0.0.1:{}/x.bin", closed_port());
  auto id = r.add(req);
  ASSERT_TRUE(r.run());
  const Outcome& o = r.outcome(id);
  EXPECT_TRUE(failed_with(o, ErrorCategory::kConnect, {"cannot connect"}, 2));
  // "Within a second" is curl's own measure of the connect ("Failed to connect to ... after N ms"): the wall
  // time of an attempt also holds the hand-off to a strategy (a process-pool worker's first job), which a
  // sanitizer build on a loaded machine stretches past a second. That wall time must still stay far below
  // connect_timeout (5 s here), i.e. nothing waited for a timeout.
  for (const auto& a : o.log) {
    std::smatch m;
    static const std::regex kAfter(R"(after (\d+) ms)");
    ASSERT_TRUE(std::regex_search(a.result.message, m, kAfter)) << a.result.message;
    EXPECT_LT(std::stoi(m[1].str()), 1000) << "attempt " << a.number << ": " << a.result.message;
    EXPECT_LT(ms(a.ended - a.started), 2500.0) << "attempt " << a.number;
  }
  expect_no_file("x.bin");
}

// A TLS handshake that never completes (TCP connects: the kernel accepts into the backlog, and nobody ever
// answers the ClientHello) is cut by connect_timeout, and the error names that setting: not the total timeout,
// which would send the user to the wrong knob.
TEST_P(NetworkFault, TlsHandshakeThatNeverCompletesNamesConnectTimeout) {
  config_.defaults.retry.retries = 0;
  config_.defaults.connect_timeout = std::chrono::milliseconds(1000);
  SilentListener silent;
  Runner r(config_);
  auto req = request("/x", "tls.bin");
  req.url = fmt::format("https://127.0.0.1:{}/tls.bin", silent.port());
  auto id = r.add(req);
  ASSERT_TRUE(r.run());
  EXPECT_TRUE(failed_with(r.outcome(id), ErrorCategory::kTimeout, {"TLS handshake", "connect_timeout (1s)"}, 1));
  EXPECT_EQ(r.outcome(id).last.message.find("total timeout"), std::string::npos) << r.outcome(id).last.message;
  expect_no_file("tls.bin");
}

// security.deny_private_addresses: the address is judged after resolution, in the open-socket callback, so
// a loopback origin is refused before any byte is sent to it.
TEST_P(NetworkFault, DenyPrivateAddressesRefusesLoopbackBeforeConnecting) {
  config_.defaults.retry.retries = 2;
  Runner r(config_);
  auto req = request("/bytes/1000/denied.bin?seed=3", "denied.bin");
  req.options.deny_private_addresses = true;  // this job only: TearDown's liveness probe uses the config
  auto id = r.add(req);
  ASSERT_TRUE(r.run());
  // A policy, not a network fault: one attempt, never retried.
  EXPECT_TRUE(failed_with(r.outcome(id), ErrorCategory::kConnect, {"127.0.0.1", "deny_private_addresses"}, 1));
  EXPECT_EQ(requests_.count("/bytes/1000/denied.bin"), 0u);
  expect_no_file("denied.bin");
}

// ------------------------------------------------------------------------------------------------ TLS

// Runs a shell command line; true when it exited 0.
bool sh(const std::string& command) {
  return std::system(command.c_str()) == 0;
}

// nginx on 127.0.0.1 with four TLS servers, started once for every strategy.
class TlsServers {
 public:
  static TlsServers* instance() { return instance_.get(); }
  static const std::string& skip_reason() { return skip_reason_; }

  static void start() {
    if (instance_ || !skip_reason_.empty()) return;
    auto s = std::make_unique<TlsServers>();
    skip_reason_ = s->setup();
    if (skip_reason_.empty()) instance_ = std::move(s);
  }
  static void stop() { instance_.reset(); }

  ~TlsServers() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      fetchd::testing::wait_process(pid_, std::chrono::seconds(20));
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string url(const std::string& server) const {
    return fmt::format("https://127.0.0.1:{}/f.bin", ports_.at(server));
  }
  std::string ca_file() const { return (dir_ / "ca.pem").string(); }
  std::string body_sha256() const { return file_sha256(dir_ / "www" / "f.bin"); }

 private:
  std::string setup() {
    const char* nginx = nullptr;
    for (const char* p : {"/usr/sbin/nginx", "/usr/bin/nginx"}) {
      if (fs::exists(p)) nginx = p;
    }
    if (nginx == nullptr) return "nginx is not installed (scripts/setup installs it)";
    if (!sh("openssl version >/dev/null 2>&1")) return "the openssl CLI is not installed";
    dir_ = fs::temp_directory_path() / fmt::format("fetchd-fault-tls-{:x}", std::random_device{}());
    fs::create_directories(dir_ / "www");
    fs::create_directories(dir_ / "logs");
    fs::create_directories(dir_ / "tmp");
    {
      std::string body(100000, '\0');
      std::mt19937 rng(7);
      for (auto& c : body) c = static_cast<char>(rng());
      std::ofstream(dir_ / "www" / "f.bin", std::ios::binary) << body;
    }
    const std::string d = dir_.string();
    const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    auto leaf = [&](const std::string& name, const std::string& san, const std::string& days) {
      return fmt::format(
          "openssl req {key} -keyout {d}/{n}.key -out {d}/{n}.csr -subj /CN=fetchd-{n} 2>/dev/null && "
          "printf 'subjectAltName={san}\\nbasicConstraints=CA:FALSE\\n' > {d}/{n}.ext && "
          "openssl x509 -req -in {d}/{n}.csr -CA {d}/ca.pem -CAkey {d}/ca.key -CAcreateserial "
          "-out {d}/{n}.pem -days {days} -extfile {d}/{n}.ext 2>/dev/null",
          fmt::arg("key", key), fmt::arg("d", d), fmt::arg("n", name), fmt::arg("san", san),
          fmt::arg("days", days));
    };
    const bool made =
        sh(fmt::format("openssl req -x509 {} -keyout {d}/ca.key -out {d}/ca.pem -days 2 "
                       "-subj '/CN=fetchd fault test CA' -addext basicConstraints=critical,CA:TRUE "
                       "-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null",
                       key, fmt::arg("d", d))) &&
        sh(leaf("good", "IP:127.0.0.1", "2")) && sh(leaf("wrongname", "DNS:wrong.example", "2")) &&
        sh(leaf("expired", "IP:127.0.0.1", "-1")) &&
        sh(fmt::format("openssl req -x509 {} -keyout {d}/self.key -out {d}/self.pem -days 2 "
                       "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null",
                       key, fmt::arg("d", d)));
    if (!made) return "the openssl CLI could not make the test certificates";
    std::ofstream conf(dir_ / "nginx.conf");
    // master_process off: one process, no switch to the nginx user (it must read our temp dir as root).
    conf << "daemon off;\nmaster_process off;\nworker_processes 1;\n"
         << "pid " << d << "/nginx.pid;\nerror_log " << d << "/logs/error.log warn;\n"
         << "events { worker_connections 256; }\nhttp {\n  access_log off;\n"
         << "  client_body_temp_path " << d << "/tmp;\n  proxy_temp_path " << d << "/tmp;\n"
         << "  fastcgi_temp_path " << d << "/tmp;\n  uwsgi_temp_path " << d << "/tmp;\n"
         << "  scgi_temp_path " << d << "/tmp;\n";
    for (const char* name : {"good", "wrongname", "expired", "self"}) {
      int port = fetchd::testing::free_port();
      ports_[name] = port;
      conf << "  server {\n    listen 127.0.0.1:" << port << " ssl;\n    ssl_certificate " << d << "/" << name
           << ".pem;\n    ssl_certificate_key " << d << "/" << name << ".key;\n    root " << d
           << "/www;\n  }\n";
    }
    conf << "}\n";
    conf.close();
    pid_ = fetchd::testing::spawn_process({nginx, "-p", d, "-c", d + "/nginx.conf"}, d + "/logs");
    for (const auto& [name, port] : ports_) {
      if (!fetchd::testing::wait_for_port(port, std::chrono::seconds(20))) {
        return "nginx did not start: " + read_file(dir_ / "logs/stderr.log") +
               read_file(dir_ / "logs/error.log");
      }
    }
    return {};
  }

  static inline std::unique_ptr<TlsServers> instance_;
  static inline std::string skip_reason_;
  fs::path dir_;
  std::map<std::string, int> ports_;
  int pid_ = -1;
};

class TlsFault : public FaultTest {
 protected:
  static void SetUpTestSuite() { TlsServers::start(); }
  static void TearDownTestSuite() { TlsServers::stop(); }
  void SetUp() override {
    FaultTest::SetUp();
    if (TlsServers::instance() == nullptr) GTEST_SKIP() << TlsServers::skip_reason();
  }
  core::TransferRequest tls_request(const std::string& server, const std::string& dest, bool with_ca) const {
    auto req = request("/x", dest);
    req.url = TlsServers::instance()->url(server);
    if (with_ca) req.options.ca_file = TlsServers::instance()->ca_file();
    return req;
  }
};

TEST_P(TlsFault, Case18_VerificationFailuresAreFinalAndTheTestCaMakesTheGoodServerWork) {
  config_.defaults.retry.retries = 2;  // TLS failures are not retried by default (retry_on.tls: false)
  Runner r(config_);
  auto self = r.add(tls_request("self", "self.bin", false));
  auto self_with_ca = r.add(tls_request("self", "self-ca.bin", true));
  auto unknown_ca = r.add(tls_request("good", "unknown-ca.bin", false));
  auto wrong_name = r.add(tls_request("wrongname", "wrongname.bin", true));
  auto expired = r.add(tls_request("expired", "expired.bin", true));
  auto good = r.add(tls_request("good", "good.bin", true));
  ASSERT_TRUE(r.run());
  EXPECT_TRUE(failed_with(r.outcome(self), ErrorCategory::kTls, {"TLS", "self-signed"}, 1));
  EXPECT_TRUE(failed_with(r.outcome(self_with_ca), ErrorCategory::kTls, {"TLS", "self-signed"}, 1));
  EXPECT_TRUE(failed_with(r.outcome(unknown_ca), ErrorCategory::kTls, {"TLS", "issuer"}, 1));
  EXPECT_TRUE(failed_with(r.outcome(wrong_name), ErrorCategory::kTls, {"TLS", "subject name"}, 1));
  EXPECT_TRUE(failed_with(r.outcome(expired), ErrorCategory::kTls, {"TLS", "expired"}, 1));
  ASSERT_TRUE(done_after(r.outcome(good), 1));
  EXPECT_EQ(file_sha256(out("good.bin")), TlsServers::instance()->body_sha256());
  for (const char* name : {"self.bin", "self-ca.bin", "unknown-ca.bin", "wrongname.bin", "expired.bin"}) {
    expect_no_file(name);
  }
}

INSTANTIATE_TEST_SUITE_P(AllStrategies, NetworkFault, ::testing::ValuesIn(all_strategies()), param_name);
INSTANTIATE_TEST_SUITE_P(AllStrategies, TlsFault, ::testing::ValuesIn(all_strategies()), param_name);

}  // namespace
}  // namespace fetchd::fault
