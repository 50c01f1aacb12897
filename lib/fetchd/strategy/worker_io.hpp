// SPDX-License-Identifier: Apache-2.0
#pragma once
// RAII owners of the two libuv handles the process pool needs: a uv_pipe_t stream (the worker pipe, at both
// ends) and a uv_process_t (a spawned worker). Same Box rules as uv/handle.hpp: memory is freed in the close
// callback. They live here, not in lib/fetchd/uv/, only because that folder was not ours to change when they
// were written; they belong there (uv/pipe.hpp, uv/process.hpp) and depend on nothing of the strategy.
// Thread: every method must be called on the thread that runs the handle's loop.

#include <sys/types.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "fetchd/uv/handle.hpp"

namespace fetchd::strategy {

struct PipeCallbacks {
  std::vector<char> buffer;  // reused for every read: on_read consumes the bytes before returning
  std::function<void(ssize_t nread, const char* data)> on_read;
};

// A stream over a pipe or socketpair end.
class Pipe : public uv::Handle<uv_pipe_t, PipeCallbacks> {
 public:
  Pipe() = default;
  explicit Pipe(uv_loop_t* loop);  // uv_pipe_init, not yet connected to anything; throws uv::Error

  // Adopts an open descriptor (the worker's end of the pipe); libuv makes it non-blocking. Throws uv::Error.
  void open(int fd);
  // on_read(n, data): n > 0 bytes at data (valid until it returns), or n < 0: UV_EOF or an error, after which
  // nothing more is read. Returns 0 or a uv error.
  int read_start(std::function<void(ssize_t nread, const char* data)> on_read);
  void read_stop();
  // Queues data (owned until written). done(status), if given, runs exactly once on the loop thread: 0, a uv
  // error, or UV_ECANCELED when the handle is closed first. Returns 0 or a uv error (then done never runs).
  int write(std::string data, std::function<void(int status)> done = {});
  // Bytes accepted by write() that the kernel has not taken yet.
  std::size_t write_queue_size() const;
  uv_stream_t* stream() const { return reinterpret_cast<uv_stream_t*>(get()); }
};

struct SpawnOptions {
  std::string file;               // executed as is (no PATH search when it contains a '/')
  std::vector<std::string> args;  // argv, args[0] included
  Pipe* stdin_pipe = nullptr;     // initialised Pipes: libuv connects each to a new socketpair
  Pipe* stdout_pipe = nullptr;
  int stderr_fd = 2;  // inherited as the child's fd 2
};

// A child process started with uv_spawn: fork, then in the child only dup2 of the three stdio descriptors and
// execve (async-signal-safe, as a threaded parent requires); every other descriptor libuv or we create is
// O_CLOEXEC. The exit callback reaps the child (libuv's SIGCHLD watcher calls waitpid for it).
class Process
    : public uv::Handle<uv_process_t, std::function<void(std::int64_t exit_status, int term_signal)>> {
 public:
  Process() = default;
  // Returns 0 or the uv error of uv_spawn (e.g. UV_ENOENT for a missing file); on error *this stays empty and
  // on_exit never runs.
  int spawn(uv_loop_t* loop, const SpawnOptions& options,
            std::function<void(std::int64_t exit_status, int term_signal)> on_exit);
  pid_t pid() const { return get() ? get()->pid : 0; }
  // Returns 0 or a uv error (UV_ESRCH once the child is gone).
  int kill(int signum);
};

}  // namespace fetchd::strategy
