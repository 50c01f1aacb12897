// SPDX-License-Identifier: Apache-2.0
#include "fetchd/strategy/worker_io.hpp"

#include <spdlog/spdlog.h>

#include <memory>

#include "fetchd/uv/error.hpp"

namespace fetchd::strategy {

namespace {

constexpr std::size_t kReadBufferBytes = 64 * 1024;

// An exception must never unwind through libuv's C frames: every trampoline runs its callback through this.
template <typename F>
void guarded(const char* what, F&& f) noexcept {
  try {
    f();
  } catch (const std::exception& e) {
    spdlog::critical("uncaught exception in {} callback: {}", what, e.what());
  } catch (...) {
    spdlog::critical("uncaught non-standard exception in {} callback", what);
  }
}

struct PipeWriteReq {
  uv_write_t req{};
  std::string data;
  std::function<void(int)> done;
};

}  // namespace

Pipe::Pipe(uv_loop_t* loop) {
  auto box = std::make_unique<Box>();
  uv::check(uv_pipe_init(loop, &box->handle, 0), "uv_pipe_init");
  adopt(box.release());
}

void Pipe::open(int fd) {
  uv::check(uv_pipe_open(get(), fd), "uv_pipe_open");
}

int Pipe::read_start(std::function<void(ssize_t, const char*)> on_read) {
  box()->callback.on_read = std::move(on_read);
  box()->callback.buffer.resize(kReadBufferBytes);
  return uv_read_start(
      stream(),
      [](uv_handle_t* h, std::size_t, uv_buf_t* buf) noexcept {
        auto& b = box_of(reinterpret_cast<uv_pipe_t*>(h)).callback.buffer;
        *buf = uv_buf_init(b.data(), static_cast<unsigned>(b.size()));
      },
      [](uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept {
        if (nread == 0) return;  // EAGAIN: nothing this time
        guarded("pipe read",
                [&] { box_of(reinterpret_cast<uv_pipe_t*>(s)).callback.on_read(nread, buf->base); });
      });
}

void Pipe::read_stop() {
  if (get()) uv_read_stop(stream());
}

int Pipe::write(std::string data, std::function<void(int)> done) {
  auto w = std::make_unique<PipeWriteReq>();
  w->data = std::move(data);
  w->done = std::move(done);
  w->req.data = w.get();
  uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  int rc = uv_write(&w->req, stream(), &buf, 1, [](uv_write_t* r, int status) noexcept {
    std::unique_ptr<PipeWriteReq> owned(static_cast<PipeWriteReq*>(r->data));
    if (owned->done) guarded("pipe write", [&] { owned->done(status); });
  });
  if (rc == 0) w.release();
  return rc;
}

std::size_t Pipe::write_queue_size() const {
  return get() ? uv_stream_get_write_queue_size(stream()) : 0;
}

int Process::spawn(uv_loop_t* loop, const SpawnOptions& options,
                   std::function<void(std::int64_t, int)> on_exit) {
  std::vector<char*> argv;
  argv.reserve(options.args.size() + 1);
  for (const auto& a : options.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  // Flags are from the child's point of view: it reads stdin and writes stdout. libuv creates each pair with
  // SOCK_CLOEXEC; dup2 onto 0 and 1 in the child clears the flag on those two only.
  uv_stdio_container_t stdio[3];
  stdio[0].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_READABLE_PIPE);
  stdio[0].data.stream = options.stdin_pipe->stream();
  stdio[1].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[1].data.stream = options.stdout_pipe->stream();
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = options.stderr_fd;

  uv_process_options_t opts{};
  opts.file = options.file.c_str();
  opts.args = argv.data();
  opts.env = nullptr;  // inherit
  opts.stdio_count = 3;
  opts.stdio = stdio;
  opts.exit_cb = [](uv_process_t* p, std::int64_t exit_status, int term_signal) noexcept {
    guarded("process exit", [&] { box_of(p).callback(exit_status, term_signal); });
  };

  auto box = std::make_unique<Box>();
  box->callback = std::move(on_exit);
  int rc = uv_spawn(loop, &box->handle, &opts);
  // uv_spawn initialises the handle even when it fails: it must be closed either way.
  adopt(box.release());
  if (rc != 0) close();
  return rc;
}

int Process::kill(int signum) {
  return get() ? uv_process_kill(get(), signum) : UV_ESRCH;
}

}  // namespace fetchd::strategy
