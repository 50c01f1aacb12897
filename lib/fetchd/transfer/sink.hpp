// SPDX-License-Identifier: Apache-2.0
#pragma once
// Where a transfer's body goes: <dest>.part, hashed with SHA-256 (and SHA-512 when asked) and counted as it is
// written, and published under <dest> only by commit() (fsync, rename, directory fsync). The final name never
// exists unless commit() succeeded, and what it gets is exactly the inode this sink wrote and hashed: every step
// is relative to one descriptor of the destination's folder, and the .part name is checked to still be that
// inode right before the rename. A .part can carry a resume record (an extended attribute: whose download it is
// and the validator the server sent), so that a later attempt, even after a crash, continues it with
// Range/If-Range instead of starting over. Thread: one thread at a time (the one driving the transfer).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <string>
#include <vector>

#include "fetchd/core/digest.hpp"
#include "fetchd/transfer/file_system.hpp"

namespace fetchd::transfer {

struct CommitOptions {
  bool fsync = true;  // fsync the .part before the rename and the directory after it
  bool replace =
      false;  // false: RENAME_NOREPLACE, a file that appeared under <dest> meanwhile is never clobbered
  // Non-zero: the published file carries a publish record (this job id and the SHA-256 written), so that a
  // restart after a crash between the rename and the job store's commit knows the file for this job's result.
  std::uint64_t publish_job = 0;
  // Refuse the rename (ENOLCK) once the publish fence passed (publish_fence.hpp).
  bool fenced = false;
};

// A resume record is written on the .part only once it could save something: at the start when the declared
// size is above this, else once this many bytes arrived, or when the attempt ends and keeps the .part. Small
// files never carry one (on ext4 it costs an extended-attribute block per file).
inline constexpr std::uint64_t kResumeRecordAfter = 256 * 1024;

// The publish record of a file commit() published (CommitOptions::publish_job), read through `fs` without
// following a symlink. nullopt when the file has none, or it cannot be read.
struct PublishRecord {
  std::uint64_t job = 0;
  std::string sha256;  // lowercase hex
};
std::optional<PublishRecord> read_publish_record(FileSystem& fs, const std::string& path);
// Lowercase hex SHA-256 of a regular file's bytes, read through `fs` without following a symlink.
std::optional<std::string> file_sha256_hex(FileSystem& fs, const std::string& path);

// "<dest>.part" ("<dest>.<tag>.part" with a tag: a fleet node's own), unless that name would exceed NAME_MAX (a
// 255-byte sanitised name leaves no room for ".part"): then the name is cut at a UTF-8 boundary and a hash of
// the full name added. Deterministic, so a later attempt finds the same .part.
std::string part_path_for(const std::string& dest, const std::string& tag = {});

class Sink {
 public:
  // dest: the final path. Throws (core::Digest) when OpenSSL cannot allocate the digest contexts.
  explicit Sink(std::string dest, FileSystem& fs = posix_file_system(), bool sha512 = false,
                const std::string& part_tag = {});
  // Closes the .part but leaves it on disk: an interrupted transfer keeps it (a later attempt may resume it).
  ~Sink();
  Sink(const Sink&) = delete;
  Sink& operator=(const Sink&) = delete;

  const std::string& dest_path() const { return dest_; }
  const std::string& part_path() const { return part_; }

  // Creates the missing parent directories (0755) and opens <dest>.part, mode 0644, O_CLOEXEC and O_NOFOLLOW
  // (a planted symlink is never written through). With a non-empty `source` (what is downloaded: the URL) an
  // existing .part whose resume record names the same source keeps its bytes, which are read back into the
  // hash: resumed_from() tells how many. Any other .part is truncated. The record holds a hash of the source,
  // never the URL itself (it may carry a token), computed only when a record is read or written.
  [[nodiscard]] bool open(std::string_view source = {});

  // Bytes kept from an earlier attempt by open(), and what the record said about them.
  std::uint64_t resumed_from() const { return resumed_from_; }
  const std::string& resume_validator() const { return resume_validator_; }
  std::optional<std::uint64_t> resume_total() const { return resume_total_; }

  // Sets the resume record: validator is a strong ETag or a Last-Modified date (If-Range material), total the
  // size of the whole file when known. It reaches the disk as kResumeRecordAfter says. An empty validator
  // removes the record (the .part cannot be resumed safely). Best effort: a file system without extended
  // attributes just never resumes. Returns whether the record is accepted.
  bool record_resume(const std::string& validator, std::optional<std::uint64_t> total);
  // Whether the .part holds bytes a later attempt may resume (a record is set and bytes are there).
  bool resumable() const { return state_ == State::kOpen && !validator_.empty() && bytes_ > 0; }

  // Truncates the .part to zero bytes, drops its resume record and resets the count and the hash: the
  // server sent the whole file instead of the rest of it.
  [[nodiscard]] bool restart();

  // Writes the resume record if it is not on disk yet, closes the .part and leaves it for a later attempt.
  // A .part whose record cannot be written is of no use to anyone: it is discarded instead. discard()
  // afterwards is a no-op.
  void keep();

  // Appends size bytes (short writes and EINTR are retried) and feeds them to the hash. The first failure
  // sticks: every later write() and commit() fails with it.
  [[nodiscard]] bool write(const void* data, std::size_t size);

  // fsync .part (if options.fsync), close, check that the .part name still is the file written here, rename
  // it over <dest> (without replacing unless options.replace), fsync the directory and any directory open()
  // created (if options.fsync). On failure nothing exists under <dest> (a rename that succeeded is rolled back
  // when the directory fsync fails) and the .part is left for discard(). A .part replaced or removed by
  // someone else fails with error_code() ESTALE.
  [[nodiscard]] bool commit(CommitOptions options);

  // Closes and unlinks the .part this sink wrote (only if the name still is that file). Never touches <dest>;
  // a no-op after a successful commit or when open() never succeeded.
  bool discard();

  bool is_open() const { return state_ == State::kOpen; }
  bool committed() const { return state_ == State::kCommitted; }
  std::uint64_t bytes() const { return bytes_; }
  // Lowercase hex SHA-256 (SHA-512: "" unless the constructor asked for it) of the bytes written so far (the
  // stream can go on afterwards).
  std::string sha256_hex() const;
  std::string sha512_hex() const;

  // The first failure: errno (0 when not an OS error) and a message naming the operation and the path, e.g.
  // "write /srv/a.bin.part: No space left on device".
  int error_code() const { return error_code_; }
  const std::string& error() const { return error_; }

 private:
  enum class State { kIdle, kOpen, kFailed, kCommitted, kDiscarded, kKept };

  bool reset_digests();
  bool hash(const void* data, std::size_t size);
  const std::string& sha256_raw() const;
  bool load_resume();
  const std::string& identity();
  bool write_record();
  void drop_record();
  bool part_is_ours();
  bool fail(int err, std::string what);
  bool fail_message(int err, std::string message);  // message as is, without errno's text
  int make_directories(const std::string& dir, std::string* failed_dir);
  int rename_into_place(bool replace);
  int sync_directory(const std::string& dir, std::string* failed_dir);

  FileSystem& fs_;
  std::string dest_;
  std::string part_;
  std::string dir_;
  std::string dest_name_;  // the last components of dest_ and part_: every call is relative to dir_fd_
  std::string part_name_;
  std::vector<std::string> created_dirs_;  // by open(); their parents need an fsync too
  std::shared_ptr<FileDescriptor> dir_fd_;  // shared with other sinks writing into the same folder now
  FileDescriptor fd_;
  dev_t part_dev_ = 0;  // the inode written: only this one is ever published or removed
  ino_t part_ino_ = 0;
  core::Digest md_;
  std::optional<core::Digest> md512_;  // only when asked for
  mutable std::string sha256_raw_;     // md_ finalised; "" until asked, cleared by every hash() or reset
  std::uint64_t bytes_ = 0;
  std::string source_;
  std::string identity_;  // SHA-256 of source_, hex; "" until needed
  std::uint64_t resumed_from_ = 0;
  std::string validator_;  // the resume record's, "" when none
  std::optional<std::uint64_t> total_;
  std::string resume_validator_;  // what the record found by open() said
  std::optional<std::uint64_t> resume_total_;
  bool record_on_disk_ = false;
  State state_ = State::kIdle;
  bool part_created_ = false;
  int error_code_ = 0;
  std::string error_;
};

}  // namespace fetchd::transfer
