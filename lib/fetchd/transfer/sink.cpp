// SPDX-License-Identifier: Apache-2.0
#include "fetchd/transfer/sink.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <mutex>
#include <unordered_map>
#include <cerrno>
#include <cstdio>
#include <new>
#include <string_view>
#include <system_error>
#include <utility>

#include "fetchd/transfer/publish_fence.hpp"

namespace fetchd::transfer {

namespace {

constexpr mode_t kFileMode = 0644;
constexpr mode_t kDirMode = 0755;
// The resume record on a .part: "fetchd-resume 1\n<identity>\n<validator>\n<total or ->\n".
constexpr const char* kResumeXattr = "user.fetchd.resume";
constexpr std::string_view kResumeMagic = "fetchd-resume 1";
constexpr std::size_t kMaxResumeRecord = 4096;
// The publish record on a published file: version byte 1, the job id (8 bytes, little endian), the raw
// SHA-256 (32 bytes). Binary and short on purpose: ext4 keeps 41 bytes under a short name inside the inode,
// so the record costs no extra block.
constexpr const char* kPublishXattr = "user.fetchd.job";
constexpr std::size_t kPublishRecordSize = 1 + 8 + 32;

std::string errno_text(int err) {
  return std::generic_category().message(err);
}

// "/a/b" -> "/a", "/a" -> "/", "a" -> ".", "a/" -> "a". Never touches the file system.
std::string parent_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string last_component(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

std::string part_path_for(const std::string& dest, const std::string& tag) {
  constexpr std::size_t kNameMax = 255;  // NAME_MAX on Linux file systems
  const std::string kSuffix = tag.empty() ? std::string(".part") : "." + tag + ".part";
  const auto slash = dest.rfind('/');
  const std::size_t base_start = slash == std::string::npos ? 0 : slash + 1;
  const std::string_view base = std::string_view(dest).substr(base_start);
  if (base.size() + kSuffix.size() <= kNameMax) return dest + kSuffix;
  // FNV-1a, 64 bit: stable across builds and platforms, unlike std::hash.
  std::uint64_t hash = 14695981039346656037ULL;
  for (unsigned char c : base) {
    hash ^= c;
    hash *= 1099511628211ULL;
  }
  std::size_t keep = kNameMax - kSuffix.size() - 17;  // 17: '-' and 16 hex digits
  while (keep > 0 && (static_cast<unsigned char>(base[keep]) & 0xC0) == 0x80)
    --keep;  // not inside a UTF-8 char
  return fmt::format("{}{}-{:016x}{}", dest.substr(0, base_start), base.substr(0, keep), hash, kSuffix);
}

Sink::Sink(std::string dest, FileSystem& fs, bool sha512, const std::string& part_tag)
    : fs_(fs),
      dest_(std::move(dest)),
      part_(part_path_for(dest_, part_tag)),
      dir_(parent_of(dest_)),
      dest_name_(last_component(dest_)),
      part_name_(last_component(part_)),
      md_(core::DigestKind::kSha256) {
  if (sha512) md512_.emplace(core::DigestKind::kSha512);
}

bool Sink::reset_digests() {
  sha256_raw_.clear();
  return md_.reset() && (!md512_ || md512_->reset());
}

bool Sink::hash(const void* data, std::size_t size) {
  sha256_raw_.clear();
  return md_.update(data, size) && (!md512_ || md512_->update(data, size));
}

// The SHA-256 of the bytes so far, finalised once however often it is asked (the transfer's verification and
// the publish record both want it).
const std::string& Sink::sha256_raw() const {
  if (sha256_raw_.empty()) sha256_raw_ = md_.raw();
  return sha256_raw_;
}

const std::string& Sink::identity() {
  if (identity_.empty() && !source_.empty()) identity_ = core::sha256_hex(source_);
  return identity_;
}

Sink::~Sink() = default;

bool Sink::fail(int err, std::string what) {
  return fail_message(err, err != 0 ? fmt::format("{}: {}", what, errno_text(err)) : std::move(what));
}

bool Sink::fail_message(int err, std::string message) {
  if (state_ == State::kFailed) return false;  // the first failure is the one reported
  state_ = State::kFailed;
  error_code_ = err;
  error_ = std::move(message);
  return false;
}

int Sink::make_directories(const std::string& dir, std::string* failed_dir) {
  int rc = fs_.mkdir_at(AT_FDCWD, dir.c_str(), kDirMode);
  if (rc == -ENOENT) {
    std::string parent = parent_of(dir);
    if (parent == dir) {
      *failed_dir = dir;
      return rc;
    }
    rc = make_directories(parent, failed_dir);
    if (rc < 0) return rc;
    rc = fs_.mkdir_at(AT_FDCWD, dir.c_str(), kDirMode);
  }
  if (rc == 0) {
    created_dirs_.push_back(dir);
    return 0;
  }
  if (rc == -EEXIST) return 0;  // if it is not a directory, the open below says so (ENOTDIR)
  *failed_dir = dir;
  return rc;
}

namespace {

// The descriptors of the folders sinks are writing into, shared while several sinks use one folder at the same
// time: a busy folder costs an open and a close per second instead of per file. A descriptor is handed out
// again only within kDirectoryReuse of its open, so a folder renamed or replaced meanwhile is picked up
// within that time; it is closed when its last sink lets go. Process-wide; any thread.
class DirectoryCache {
 public:
  static constexpr std::chrono::seconds kDirectoryReuse{1};

  // A descriptor of `dir` opened through `fs`, or -errno.
  std::shared_ptr<FileDescriptor> acquire(FileSystem& fs, const std::string& dir, int* error) {
    const auto now = std::chrono::steady_clock::now();
    Key key{&fs, dir};
    {
      std::lock_guard lock(mutex_);
      auto it = entries_.find(key);
      if (it != entries_.end() && now - it->second.opened < kDirectoryReuse) {
        if (auto fd = it->second.fd.lock()) return fd;
      }
    }
    int fd;
    do {
      fd = fs.open_at(AT_FDCWD, dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    } while (fd == -EINTR);
    if (fd < 0) {
      *error = fd;
      return nullptr;
    }
    auto* owned = new FileDescriptor(fs, fd);
    std::shared_ptr<FileDescriptor> shared(owned, [this, key](FileDescriptor* p) {
      {
        std::lock_guard lock(mutex_);
        auto it = entries_.find(key);
        if (it != entries_.end() && it->second.raw == p) entries_.erase(it);
      }
      delete p;
    });
    std::lock_guard lock(mutex_);
    entries_[key] = Entry{shared, owned, now};
    return shared;
  }

 private:
  struct Key {
    FileSystem* fs;
    std::string dir;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    std::size_t operator()(const Key& k) const {
      return std::hash<std::string>()(k.dir) ^ std::hash<const void*>()(k.fs);
    }
  };
  struct Entry {
    std::weak_ptr<FileDescriptor> fd;
    const FileDescriptor* raw = nullptr;  // which descriptor the entry is for, to erase only its own
    std::chrono::steady_clock::time_point opened;
  };
  std::mutex mutex_;
  std::unordered_map<Key, Entry, KeyHash> entries_;
};

DirectoryCache& directory_cache() {
  static DirectoryCache* cache = new DirectoryCache;  // never destroyed: sinks may outlive static destructors
  return *cache;
}

}  // namespace

bool Sink::open(std::string_view source) {
  if (state_ != State::kIdle) return fail(EBADF, fmt::format("open {}: sink already used", part_));
  // The destination's folder, opened once: the .part, the check before publishing, the rename and the
  // directory fsync all go through this descriptor, so a folder swapped for a symlink after this point cannot
  // redirect them. The path itself may hold symlinks that stay inside the output directory (core::confine
  // allows them).
  int err = 0;
  dir_fd_ = directory_cache().acquire(fs_, dir_, &err);
  if (!dir_fd_ && err == -ENOENT) {
    std::string failed_dir;
    int rc = make_directories(dir_, &failed_dir);
    if (rc < 0) return fail(-rc, fmt::format("create directory {}", failed_dir));
    dir_fd_ = directory_cache().acquire(fs_, dir_, &err);
  }
  if (!dir_fd_) return fail(-err, fmt::format("open directory {}", dir_));

  // A new .part is created with O_EXCL, so it is certainly ours. One that exists (kept by an earlier attempt
  // for resume, or planted) is opened without O_CREAT, O_TRUNC or following a symlink (O_NOFOLLOW), with
  // O_NONBLOCK so that a FIFO cannot block, and written only if it is a plain file with one name: a hard link
  // to another file would otherwise be truncated or overwritten.
  constexpr int kFlags = O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK;
  auto open_part = [&](int flags) {
    int fd;
    do {
      fd = fs_.open_at(dir_fd_->get(), part_name_.c_str(), flags, kFileMode);
    } while (fd == -EINTR);
    return fd;
  };
  int fd = open_part(kFlags | O_CREAT | O_EXCL);
  const bool created = fd >= 0;
  struct stat st {};
  if (fd == -EEXIST) {
    fd = open_part(kFlags);
    if (fd >= 0 && (fs_.fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1)) {
      (void)fs_.close(fd);
      return fail_message(EEXIST, fmt::format("{} is a hard link or not a regular file; fetchd never writes to "
                                              "one: remove it",
                                              part_));
    }
  } else if (fd >= 0 && fs_.fstat(fd, &st) != 0) {
    st = {};
  }
  if (fd == -ELOOP) {
    return fail_message(ELOOP, fmt::format("{} is a symbolic link; fetchd never follows one: remove it", part_));
  }
  if (fd < 0) return fail(-fd, fmt::format("open {}", part_));
  fd_ = FileDescriptor(fs_, fd);
  part_dev_ = st.st_dev;
  part_ino_ = st.st_ino;
  part_created_ = true;
  bytes_ = 0;
  source_ = std::string(source);
  if (created) {
    // Empty and certainly without a record: nothing to load, nothing to truncate.
  } else if (source_.empty()) {
    // Nothing is resumed without a source.
    if (int rc = fs_.truncate(fd_.get()); rc < 0) return fail(-rc, fmt::format("truncate {}", part_));
  } else if (!load_resume()) {
    return false;
  }
  state_ = State::kOpen;
  return true;
}

bool Sink::load_resume() {
  std::string record(kMaxResumeRecord, '\0');
  ssize_t n = fs_.get_xattr(fd_.get(), kResumeXattr, record.data(), record.size());
  bool keep = false;
  if (n > 0) {
    record.resize(static_cast<std::size_t>(n));
    // magic, identity, validator, total
    std::vector<std::string_view> fields;
    std::string_view rest = record;
    while (!rest.empty() && fields.size() < 5) {
      auto nl = rest.find('\n');
      if (nl == std::string_view::npos) break;
      fields.push_back(rest.substr(0, nl));
      rest.remove_prefix(nl + 1);
    }
    struct stat st {};
    if (fields.size() == 4 && rest.empty() && fields[0] == kResumeMagic && fields[1] == identity() &&
        !fields[2].empty() && fs_.fstat(fd_.get(), &st) == 0 && st.st_size > 0) {
      std::optional<std::uint64_t> total;
      if (fields[3] != "-") {
        std::uint64_t t = 0;
        auto [ptr, ec] = std::from_chars(fields[3].data(), fields[3].data() + fields[3].size(), t);
        if (ec == std::errc() && ptr == fields[3].data() + fields[3].size()) total = t;
      }
      const auto size = static_cast<std::uint64_t>(st.st_size);
      if (!total || size <= *total) {
        keep = true;
        resume_validator_ = std::string(fields[2]);
        resume_total_ = total;
      }
    }
  }
  if (!keep) {
    if (int rc = fs_.truncate(fd_.get()); rc < 0) return fail(-rc, fmt::format("truncate {}", part_));
    if (n > 0) (void)fs_.remove_xattr(fd_.get(), kResumeXattr);
    return true;
  }
  // Read the kept bytes back into the hash; the file offset ends at their end, where write() continues.
  std::vector<char> buffer(64 * 1024);
  while (true) {
    ssize_t got = fs_.read(fd_.get(), buffer.data(), buffer.size());
    if (got == -EINTR) continue;
    if (got < 0) return fail(static_cast<int>(-got), fmt::format("read {}", part_));
    if (got == 0) break;
    if (!hash(buffer.data(), static_cast<std::size_t>(got))) return fail(0, "sha256: EVP_DigestUpdate failed");
    bytes_ += static_cast<std::uint64_t>(got);
  }
  resumed_from_ = bytes_;
  // The record on disk stays valid for as long as the server's validator is the same one.
  validator_ = resume_validator_;
  total_ = resume_total_;
  record_on_disk_ = true;
  return true;
}

bool Sink::write_record() {
  if (record_on_disk_ || validator_.empty()) return record_on_disk_;
  const std::string record = fmt::format("{}\n{}\n{}\n{}\n", kResumeMagic, identity(), validator_,
                                         total_ ? std::to_string(*total_) : std::string("-"));
  record_on_disk_ = fs_.set_xattr(fd_.get(), kResumeXattr, record.data(), record.size()) == 0;
  if (!record_on_disk_) validator_.clear();  // no extended attributes here: never resumable
  return record_on_disk_;
}

void Sink::drop_record() {
  if (record_on_disk_) (void)fs_.remove_xattr(fd_.get(), kResumeXattr);
  record_on_disk_ = false;
  validator_.clear();
  total_.reset();
}

bool Sink::record_resume(const std::string& validator, std::optional<std::uint64_t> total) {
  if (state_ != State::kOpen || source_.empty()) return false;
  if (validator.empty() || validator.find('\n') != std::string::npos ||
      kResumeMagic.size() + 64 + validator.size() + 24 > kMaxResumeRecord) {
    drop_record();
    return false;
  }
  if (record_on_disk_ && (validator != validator_ || total != total_)) drop_record();
  validator_ = validator;
  total_ = total;
  if (total && *total > kResumeRecordAfter) return write_record();
  return true;
}

bool Sink::restart() {
  if (state_ != State::kOpen) return state_ == State::kFailed ? false : fail(EBADF, "restart: not open");
  if (int rc = fs_.truncate(fd_.get()); rc < 0) return fail(-rc, fmt::format("truncate {}", part_));
  drop_record();
  resumed_from_ = 0;
  resume_validator_.clear();
  resume_total_.reset();
  bytes_ = 0;
  if (!reset_digests()) return fail(0, "sha256: EVP_DigestInit_ex failed");
  return true;
}

void Sink::keep() {
  if (state_ != State::kOpen && state_ != State::kFailed) return;
  if (!write_record()) {
    discard();
    return;
  }
  (void)fd_.close();
  dir_fd_.reset();
  state_ = State::kKept;
}

bool Sink::write(const void* data, std::size_t size) {
  if (state_ != State::kOpen) {
    return state_ == State::kFailed ? false : fail(EBADF, fmt::format("write {}: not open", part_));
  }
  const char* p = static_cast<const char*>(data);
  std::size_t left = size;
  while (left > 0) {
    ssize_t n = fs_.write(fd_.get(), p, left);
    if (n == -EINTR) continue;
    if (n < 0) return fail(static_cast<int>(-n), fmt::format("write {}", part_));
    if (n == 0) return fail(EIO, fmt::format("write {} made no progress", part_));
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  if (!hash(data, size)) return fail(0, "sha256: EVP_DigestUpdate failed");
  bytes_ += size;
  if (!record_on_disk_ && bytes_ > kResumeRecordAfter) (void)write_record();
  return true;
}

// Whether the .part name still is the inode open() opened: nobody replaced, removed or swapped it for a
// symlink meanwhile.
bool Sink::part_is_ours() {
  struct stat st {};
  return fs_.stat_at(dir_fd_->get(), part_name_.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
         st.st_dev == part_dev_ && st.st_ino == part_ino_;
}

int Sink::rename_into_place(bool replace) {
  const int dir = dir_fd_->get();
  if (replace) return fs_.rename_at(dir, part_name_.c_str(), dir, dest_name_.c_str(), 0);
  int rc = fs_.rename_at(dir, part_name_.c_str(), dir, dest_name_.c_str(), RENAME_NOREPLACE);
  if (rc != -EINVAL) return rc;
  // A file system without RENAME_NOREPLACE: link(2) refuses to replace as well, then drop the .part name.
  rc = fs_.link_at(dir, part_name_.c_str(), dir, dest_name_.c_str(), 0);
  if (rc < 0) return rc;
  if (int u = fs_.unlink_at(dir, part_name_.c_str(), 0); u < 0 && u != -ENOENT) {
    spdlog::warn("unlink {} after linking it to {}: {}", part_, dest_, errno_text(-u));
  }
  return 0;
}

int Sink::sync_directory(const std::string& dir, std::string* failed_dir) {
  if (dir == dir_) {
    int rc = fs_.fsync(dir_fd_->get());
    if (rc == -EINVAL) rc = 0;  // fsync(2): EINVAL where the file system cannot sync directories at all
    if (rc < 0) *failed_dir = dir;
    return rc;
  }
  int fd;
  do {
    fd = fs_.open_at(AT_FDCWD, dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
  } while (fd == -EINTR);
  if (fd < 0) {
    *failed_dir = dir;
    return fd;
  }
  FileDescriptor guard(fs_, fd);
  int rc = fs_.fsync(fd);
  if (rc == -EINVAL) rc = 0;
  if (rc < 0) *failed_dir = dir;
  return rc;
}

bool Sink::commit(CommitOptions options) {
  if (state_ != State::kOpen) {
    return state_ == State::kFailed ? false : fail(EBADF, fmt::format("commit {}: not open", part_));
  }
  // The published file carries no resume record (it would only confuse a later download to the same name).
  if (record_on_disk_) (void)fs_.remove_xattr(fd_.get(), kResumeXattr);
  record_on_disk_ = false;
  if (options.publish_job != 0) {
    const std::string& digest = sha256_raw();
    if (digest.size() != 32) return fail(0, "sha256: EVP_DigestFinal_ex failed");
    std::string record(kPublishRecordSize, '\0');
    record[0] = 1;
    for (int i = 0; i < 8; ++i) record[1 + i] = static_cast<char>((options.publish_job >> (8 * i)) & 0xff);
    record.replace(9, 32, digest);
    // Best effort, like the resume record: without extended attributes a restart just cannot tell.
    (void)fs_.set_xattr(fd_.get(), kPublishXattr, record.data(), record.size());
  }
  if (options.fsync) {
    int rc;
    do {
      rc = fs_.fsync(fd_.get());
    } while (rc == -EINTR);
    if (rc < 0) return fail(-rc, fmt::format("fsync {}", part_));
  }
  // close(2) is where NFS reports deferred write errors; never publish a file whose close failed.
  if (int rc = fd_.close(); rc < 0 && rc != -EINTR) return fail(-rc, fmt::format("close {}", part_));

  // Publish exactly the bytes written and hashed here: if the .part name now holds another file (replaced,
  // removed, or a symlink), that file was never checked.
  if (!part_is_ours()) {
    return fail_message(ESTALE, fmt::format("{} was replaced or removed during the download; not publishing "
                                            "a file fetchd did not write",
                                            part_));
  }
  // As late as can be: a node stopped for longer than its lease after this check could still rename, a window
  // of one system call (docs/fleet.md).
  if (options.fenced && !publish_allowed()) {
    return fail(ENOLCK, fmt::format("not publishing {}: this node's lease on the job may have ended", dest_));
  }
  if (int rc = rename_into_place(options.replace); rc < 0) {
    if (rc == -EEXIST)
      return fail(EEXIST, fmt::format("rename {} to {}: destination appeared meanwhile", part_, dest_));
    return fail(-rc, fmt::format("rename {} to {}", part_, dest_));
  }

  if (options.fsync) {
    // The rename lives in dir_; each directory open() created lives in its parent.
    std::vector<std::string> dirs{dir_};
    for (const auto& created : created_dirs_) dirs.push_back(parent_of(created));
    std::sort(dirs.begin(), dirs.end());
    dirs.erase(std::unique(dirs.begin(), dirs.end()), dirs.end());
    for (const auto& dir : dirs) {
      std::string failed_dir;
      if (int rc = sync_directory(dir, &failed_dir); rc < 0) {
        // Not durable, so not committed: take the final name back. The job fails; a later attempt starts
        // over.
        if (int u = fs_.unlink_at(dir_fd_->get(), dest_name_.c_str(), 0); u < 0 && u != -ENOENT) {
          spdlog::error("roll back {} after a failed directory fsync: {}", dest_, errno_text(-u));
        }
        return fail(-rc, fmt::format("fsync directory {}", failed_dir));
      }
    }
  }
  dir_fd_.reset();
  state_ = State::kCommitted;
  return true;
}

bool Sink::discard() {
  if (state_ == State::kCommitted || state_ == State::kDiscarded || state_ == State::kKept || !part_created_)
    return true;
  (void)fd_.close();
  state_ = State::kDiscarded;
  // Someone else's file under the .part name (it replaced ours) is not ours to remove.
  const bool ours = part_is_ours();
  int rc = ours ? fs_.unlink_at(dir_fd_->get(), part_name_.c_str(), 0) : 0;
  dir_fd_.reset();
  if (rc < 0 && rc != -ENOENT) {
    spdlog::warn("remove {}: {}", part_, errno_text(-rc));
    return false;
  }
  return true;
}

std::string Sink::sha256_hex() const {
  return core::to_hex(sha256_raw());
}

std::string Sink::sha512_hex() const {
  return md512_ ? md512_->hex() : std::string();
}

namespace {

// An existing file opened for reading, never through a symlink, never blocking on a FIFO.
std::optional<FileDescriptor> open_for_reading(FileSystem& fs, const std::string& path) {
  int fd;
  do {
    fd = fs.open_at(AT_FDCWD, path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0);
  } while (fd == -EINTR);
  if (fd < 0) return std::nullopt;
  return FileDescriptor(fs, fd);
}

}  // namespace

std::optional<PublishRecord> read_publish_record(FileSystem& fs, const std::string& path) {
  auto guard = open_for_reading(fs, path);
  if (!guard) return std::nullopt;
  const int fd = guard->get();
  char record[kPublishRecordSize + 1];
  const ssize_t n = fs.get_xattr(fd, kPublishXattr, record, sizeof record);
  if (n != static_cast<ssize_t>(kPublishRecordSize) || record[0] != 1) return std::nullopt;
  PublishRecord out;
  for (int i = 0; i < 8; ++i) out.job |= std::uint64_t{static_cast<unsigned char>(record[1 + i])} << (8 * i);
  out.sha256 = core::to_hex(std::string_view(record + 9, 32));
  return out;
}

std::optional<std::string> file_sha256_hex(FileSystem& fs, const std::string& path) {
  auto guard = open_for_reading(fs, path);
  if (!guard) return std::nullopt;
  const int fd = guard->get();
  struct stat st {};
  if (fs.fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  core::Digest md;
  std::vector<char> buffer(256 * 1024);
  while (true) {
    const ssize_t got = fs.read(fd, buffer.data(), buffer.size());
    if (got == -EINTR) continue;
    if (got < 0) return std::nullopt;
    if (got == 0) break;
    if (!md.update(buffer.data(), static_cast<std::size_t>(got))) return std::nullopt;
  }
  return md.hex();
}

}  // namespace fetchd::transfer
