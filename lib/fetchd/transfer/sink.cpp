// SPDX-License-Identifier: Apache-2.0
#include "fetchd/transfer/sink.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cerrno>
#include <cstdio>
#include <new>
#include <string_view>
#include <system_error>
#include <utility>

namespace fetchd::transfer {

namespace {

constexpr mode_t kFileMode = 0644;
constexpr mode_t kDirMode = 0755;
// The resume record on a .part: "fetchd-resume 1\n<identity>\n<validator>\n<total or ->\n".
constexpr const char* kResumeXattr = "user.fetchd.resume";
constexpr std::string_view kResumeMagic = "fetchd-resume 1";
constexpr std::size_t kMaxResumeRecord = 4096;

std::string hex_digest(const EVP_MD_CTX* md) {
  if (md == nullptr) return {};
  std::unique_ptr<EVP_MD_CTX, EvpMdCtxDeleter> copy(EVP_MD_CTX_new());
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!copy || EVP_MD_CTX_copy_ex(copy.get(), md) != 1 || EVP_DigestFinal_ex(copy.get(), digest, &len) != 1) {
    return {};
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * len);
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xf]);
  }
  return out;
}

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

}  // namespace

std::string part_path_for(const std::string& dest) {
  constexpr std::size_t kNameMax = 255;  // NAME_MAX on Linux file systems
  constexpr std::string_view kSuffix = ".part";
  const auto slash = dest.rfind('/');
  const std::size_t base_start = slash == std::string::npos ? 0 : slash + 1;
  const std::string_view base = std::string_view(dest).substr(base_start);
  if (base.size() + kSuffix.size() <= kNameMax) return dest + std::string(kSuffix);
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

void EvpMdCtxDeleter::operator()(EVP_MD_CTX* ctx) const {
  EVP_MD_CTX_free(ctx);
}

Sink::Sink(std::string dest, FileSystem& fs, bool sha512)
    : fs_(fs),
      dest_(std::move(dest)),
      part_(part_path_for(dest_)),
      dir_(parent_of(dest_)),
      md_(EVP_MD_CTX_new()),
      md512_(sha512 ? EVP_MD_CTX_new() : nullptr) {
  if (!md_ || (sha512 && !md512_) || !reset_digests()) throw std::bad_alloc();
}

bool Sink::reset_digests() {
  if (EVP_DigestInit_ex(md_.get(), EVP_sha256(), nullptr) != 1) return false;
  return !md512_ || EVP_DigestInit_ex(md512_.get(), EVP_sha512(), nullptr) == 1;
}

bool Sink::hash(const void* data, std::size_t size) {
  if (EVP_DigestUpdate(md_.get(), data, size) != 1) return false;
  return !md512_ || EVP_DigestUpdate(md512_.get(), data, size) == 1;
}

Sink::~Sink() = default;

bool Sink::fail(int err, std::string what) {
  if (state_ == State::kFailed) return false;  // the first failure is the one reported
  state_ = State::kFailed;
  error_code_ = err;
  error_ = err != 0 ? fmt::format("{}: {}", what, errno_text(err)) : std::move(what);
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

bool Sink::open(std::string_view identity) {
  if (state_ != State::kIdle) return fail(EBADF, fmt::format("open {}: sink already used", part_));
  // A new .part is created with O_EXCL, so it is certainly ours. One that exists (kept by an earlier attempt
  // for resume, or planted) is opened without O_CREAT, O_TRUNC or following a symlink (O_NOFOLLOW), with
  // O_NONBLOCK so that a FIFO cannot block, and written only if it is a plain file with one name: a hard link
  // to another file would otherwise be truncated or overwritten.
  constexpr int kFlags = O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK;
  auto open_part = [&](int flags) {
    int fd;
    do {
      fd = fs_.open_at(AT_FDCWD, part_.c_str(), flags, kFileMode);
    } while (fd == -EINTR);
    return fd;
  };
  int fd = open_part(kFlags | O_CREAT | O_EXCL);
  if (fd == -ENOENT) {
    std::string failed_dir;
    int rc = make_directories(dir_, &failed_dir);
    if (rc < 0) return fail(-rc, fmt::format("create directory {}", failed_dir));
    fd = open_part(kFlags | O_CREAT | O_EXCL);
  }
  if (fd == -EEXIST) {
    fd = open_part(kFlags);
    struct stat st {};
    if (fd >= 0 && (fs_.fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1)) {
      (void)fs_.close(fd);
      return fail(EEXIST, fmt::format("{} is a hard link or not a regular file; not writing to it", part_));
    }
  }
  if (fd < 0) return fail(-fd, fmt::format("open {}", part_));
  fd_ = FileDescriptor(fs_, fd);
  part_created_ = true;
  if (!reset_digests()) return fail(0, "sha256: EVP_DigestInit_ex failed");
  bytes_ = 0;
  identity_ = std::string(identity);
  if (identity_.empty()) {
    // Nothing is resumed without an identity.
    if (int rc = fs_.truncate(fd_.get()); rc < 0) return fail(-rc, fmt::format("truncate {}", part_));
  } else if (!load_resume(identity_)) {
    return false;
  }
  state_ = State::kOpen;
  return true;
}

bool Sink::load_resume(std::string_view identity) {
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
    if (fields.size() == 4 && rest.empty() && fields[0] == kResumeMagic && fields[1] == identity &&
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
  has_record_ = true;
  return true;
}

bool Sink::record_resume(const std::string& validator, std::optional<std::uint64_t> total) {
  if (state_ != State::kOpen || identity_.empty()) return false;
  if (validator.empty() || validator.find('\n') != std::string::npos) {
    if (has_record_) (void)fs_.remove_xattr(fd_.get(), kResumeXattr);
    has_record_ = false;
    return false;
  }
  const std::string record = fmt::format("{}\n{}\n{}\n{}\n", kResumeMagic, identity_, validator,
                                         total ? std::to_string(*total) : std::string("-"));
  if (record.size() > kMaxResumeRecord) return has_record_ = false;
  has_record_ = fs_.set_xattr(fd_.get(), kResumeXattr, record.data(), record.size()) == 0;
  return has_record_;
}

bool Sink::restart() {
  if (state_ != State::kOpen) return state_ == State::kFailed ? false : fail(EBADF, "restart: not open");
  if (int rc = fs_.truncate(fd_.get()); rc < 0) return fail(-rc, fmt::format("truncate {}", part_));
  if (has_record_) (void)fs_.remove_xattr(fd_.get(), kResumeXattr);
  has_record_ = false;
  resumed_from_ = 0;
  resume_validator_.clear();
  resume_total_.reset();
  bytes_ = 0;
  if (!reset_digests()) return fail(0, "sha256: EVP_DigestInit_ex failed");
  return true;
}

void Sink::keep() {
  if (state_ != State::kOpen && state_ != State::kFailed) return;
  (void)fd_.close();
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
  return true;
}

int Sink::rename_into_place(bool replace) {
  if (replace) return fs_.rename_at(AT_FDCWD, part_.c_str(), AT_FDCWD, dest_.c_str(), 0);
  int rc = fs_.rename_at(AT_FDCWD, part_.c_str(), AT_FDCWD, dest_.c_str(), RENAME_NOREPLACE);
  if (rc != -EINVAL) return rc;
  // A file system without RENAME_NOREPLACE: link(2) refuses to replace as well, then drop the .part name.
  rc = fs_.link_at(AT_FDCWD, part_.c_str(), AT_FDCWD, dest_.c_str(), 0);
  if (rc < 0) return rc;
  if (int u = fs_.unlink_at(AT_FDCWD, part_.c_str(), 0); u < 0 && u != -ENOENT) {
    spdlog::warn("unlink {} after linking it to {}: {}", part_, dest_, errno_text(-u));
  }
  return 0;
}

int Sink::sync_directory(const std::string& dir, std::string* failed_dir) {
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
  if (rc == -EINVAL) rc = 0;  // fsync(2): EINVAL where the file system cannot sync directories at all
  if (rc < 0) *failed_dir = dir;
  return rc;
}

bool Sink::commit(CommitOptions options) {
  if (state_ != State::kOpen) {
    return state_ == State::kFailed ? false : fail(EBADF, fmt::format("commit {}: not open", part_));
  }
  // The published file carries no resume record (it would only confuse a later download to the same name).
  if (has_record_) (void)fs_.remove_xattr(fd_.get(), kResumeXattr);
  has_record_ = false;
  if (options.fsync) {
    int rc;
    do {
      rc = fs_.fsync(fd_.get());
    } while (rc == -EINTR);
    if (rc < 0) return fail(-rc, fmt::format("fsync {}", part_));
  }
  // close(2) is where NFS reports deferred write errors; never publish a file whose close failed.
  if (int rc = fd_.close(); rc < 0 && rc != -EINTR) return fail(-rc, fmt::format("close {}", part_));

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
        if (int u = fs_.unlink_at(AT_FDCWD, dest_.c_str(), 0); u < 0 && u != -ENOENT) {
          spdlog::error("roll back {} after a failed directory fsync: {}", dest_, errno_text(-u));
        }
        return fail(-rc, fmt::format("fsync directory {}", failed_dir));
      }
    }
  }
  state_ = State::kCommitted;
  return true;
}

bool Sink::discard() {
  if (state_ == State::kCommitted || state_ == State::kDiscarded || state_ == State::kKept || !part_created_)
    return true;
  (void)fd_.close();
  state_ = State::kDiscarded;
  int rc = fs_.unlink_at(AT_FDCWD, part_.c_str(), 0);
  if (rc < 0 && rc != -ENOENT) {
    spdlog::warn("remove {}: {}", part_, errno_text(-rc));
    return false;
  }
  return true;
}

std::string Sink::sha256_hex() const {
  return hex_digest(md_.get());
}

std::string Sink::sha512_hex() const {
  return hex_digest(md512_.get());
}

}  // namespace fetchd::transfer
