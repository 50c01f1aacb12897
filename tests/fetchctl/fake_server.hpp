// SPDX-License-Identifier: Apache-2.0
#pragma once
// A stand-in for fetchd's control socket in tests: listens on a unix socket (or 127.0.0.1), reads request
// lines, records them, and answers what the test's handler returns. One connection at a time on its own
// thread; every wait is a poll() that also watches a stop eventfd, so destruction never hangs.

#include <cstddef>
#include <filesystem>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "fetchd/core/unique_fd.hpp"

namespace fetchd::testing {

class FakeServer {
 public:
  struct Action {
    std::vector<std::string> send;  // written in order, as they are (reply lines need their '\n')
    bool close = false;             // close the connection after sending
  };
  // `request` is the parsed line (discarded when it is not JSON); `index` counts requests from 0 over all
  // connections.
  using Handler = std::function<Action(const nlohmann::json& request, std::size_t index)>;

  // Unix socket at `path`.
  FakeServer(std::filesystem::path path, Handler handler);
  // TCP on 127.0.0.1 with an ephemeral port (port()).
  explicit FakeServer(Handler handler);
  ~FakeServer();
  FakeServer(const FakeServer&) = delete;
  FakeServer& operator=(const FakeServer&) = delete;

  int port() const { return port_; }
  std::vector<std::string> requests() const;         // raw lines received, in order
  std::vector<nlohmann::json> request_json() const;  // the same, parsed
  std::size_t connections() const;
  std::string error() const;  // first failure of the server thread itself ("" = none)

 private:
  void start();
  void run();
  void serve(int fd);
  void fail(const std::string& message);

  Handler handler_;
  core::UniqueFd listener_;
  core::UniqueFd stop_;
  int port_ = 0;
  mutable std::mutex mutex_;
  std::vector<std::string> requests_;
  std::size_t connections_ = 0;
  std::string error_;
  std::thread thread_;
};

// Reply lines as fetchd writes them.
std::string ok_reply(const std::string& op, const nlohmann::json& result);
std::string error_reply(const std::string& op, const std::string& code, const std::string& message);

}  // namespace fetchd::testing
