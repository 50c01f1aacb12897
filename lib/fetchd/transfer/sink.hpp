// SPDX-License-Identifier: Apache-2.0
#pragma once
// Where a transfer's body goes: <dest>.part, hashed with SHA-256 and counted as it is written, and published
// under <dest> only by commit() (fsync, rename, directory fsync). The final name never exists unless commit()
// succeeded. Thread: one thread at a time (the one driving the transfer).

#include <openssl/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fetchd/transfer/file_system.hpp"

namespace fetchd::transfer {

struct EvpMdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const;
};

struct CommitOptions {
  bool fsync = true;  // fsync the .part before the rename and the directory after it
  bool replace =
      false;  // false: RENAME_NOREPLACE, a file that appeared under <dest> meanwhile is never clobbered
};

// "<dest>.part", unless that name would exceed NAME_MAX (a 255-byte sanitised name leaves no room for
// ".part"): then the name is cut at a UTF-8 boundary and a hash of the full name added. Deterministic, so a
// later attempt finds the same .part.
std::string part_path_for(const std::string& dest);

class Sink {
 public:
  // dest: the final path. Throws std::bad_alloc when OpenSSL cannot allocate the digest context.
  explicit Sink(std::string dest, FileSystem& fs = posix_file_system());
  // Closes the .part but leaves it on disk: an interrupted transfer keeps it (a later attempt may resume it).
  ~Sink();
  Sink(const Sink&) = delete;
  Sink& operator=(const Sink&) = delete;

  const std::string& dest_path() const { return dest_; }
  const std::string& part_path() const { return part_; }

  // Creates the missing parent directories (0755) and opens <dest>.part truncated, mode 0644, O_CLOEXEC and
  // O_NOFOLLOW (a planted symlink is never written through). Resets the byte count and the hash.
  [[nodiscard]] bool open();

  // Appends size bytes (short writes and EINTR are retried) and feeds them to the hash. The first failure
  // sticks: every later write() and commit() fails with it.
  [[nodiscard]] bool write(const void* data, std::size_t size);

  // fsync .part (if options.fsync), close, rename over <dest> (without replacing unless options.replace),
  // fsync the directory and any directory open() created (if options.fsync). On failure nothing exists under
  // <dest> (a rename that succeeded is rolled back when the directory fsync fails) and the .part is left for
  // discard().
  [[nodiscard]] bool commit(CommitOptions options);

  // Closes and unlinks the .part this sink created. Never touches <dest>; a no-op after a successful commit
  // or when open() never succeeded.
  bool discard();

  bool is_open() const { return state_ == State::kOpen; }
  bool committed() const { return state_ == State::kCommitted; }
  std::uint64_t bytes() const { return bytes_; }
  // Lowercase hex SHA-256 of the bytes written so far (the stream can go on afterwards).
  std::string sha256_hex() const;

  // The first failure: errno (0 when not an OS error) and a message naming the operation and the path, e.g.
  // "write /srv/a.bin.part: No space left on device".
  int error_code() const { return error_code_; }
  const std::string& error() const { return error_; }

 private:
  enum class State { kIdle, kOpen, kFailed, kCommitted, kDiscarded };

  bool fail(int err, std::string what);
  int make_directories(const std::string& dir, std::string* failed_dir);
  int rename_into_place(bool replace);
  int sync_directory(const std::string& dir, std::string* failed_dir);

  FileSystem& fs_;
  std::string dest_;
  std::string part_;
  std::string dir_;
  std::vector<std::string> created_dirs_;  // by open(); their parents need an fsync too
  FileDescriptor fd_;
  std::unique_ptr<EVP_MD_CTX, EvpMdCtxDeleter> md_;
  std::uint64_t bytes_ = 0;
  State state_ = State::kIdle;
  bool part_created_ = false;
  int error_code_ = 0;
  std::string error_;
};

}  // namespace fetchd::transfer
