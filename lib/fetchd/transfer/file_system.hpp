// SPDX-License-Identifier: Apache-2.0
#pragma once
// The POSIX file calls the Sink makes, behind a small virtual interface so that tests can inject EIO, ENOSPC,
// short writes and EINTR where a real disk would rarely produce them (fault-cases.md 21, 22). Every call
// mirrors its POSIX namesake but reports failure as a negative errno value instead of -1 + errno, so a fake
// never has to touch errno and a caller can never read a stale one. Thread: PosixFileSystem is stateless and
// may be used from any thread at once; a fake states its own rules.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <utility>

namespace fetchd::transfer {

class FileSystem {
 public:
  virtual ~FileSystem() = default;

  // A new fd, or -errno. Callers always pass O_CLOEXEC.
  virtual int open_at(int dirfd, const char* path, int flags, mode_t mode) = 0;
  // Bytes written (possibly fewer than size), or -errno (-EINTR included: the caller retries).
  virtual ssize_t write(int fd, const void* data, std::size_t size) = 0;
  virtual int fsync(int fd) = 0;
  // Linux releases the fd even when close fails: the caller must never retry it.
  virtual int close(int fd) = 0;
  // renameat2(2); flags = 0 is a plain renameat, RENAME_NOREPLACE fails with -EEXIST instead of replacing.
  virtual int rename_at(int old_dirfd, const char* old_path, int new_dirfd, const char* new_path,
                        unsigned flags) = 0;
  virtual int link_at(int old_dirfd, const char* old_path, int new_dirfd, const char* new_path,
                      int flags) = 0;
  virtual int unlink_at(int dirfd, const char* path, int flags) = 0;
  virtual int mkdir_at(int dirfd, const char* path, mode_t mode) = 0;
  virtual int stat_at(int dirfd, const char* path, struct stat* st, int flags) = 0;
  // Bytes read at the current offset (0 at the end), or -errno.
  virtual ssize_t read(int fd, void* data, std::size_t size) = 0;
  // ftruncate(fd, 0) and lseek(fd, 0, SEEK_SET): 0 or -errno.
  virtual int truncate(int fd) = 0;
  virtual int fstat(int fd, struct stat* st) = 0;
  // Extended attributes of an open file (fsetxattr, fgetxattr, fremovexattr). get_xattr returns the value's
  // length (at most size bytes are stored) or -errno (-ENODATA: not set; -ENOTSUP: the file system has none).
  virtual int set_xattr(int fd, const char* name, const void* value, std::size_t size) = 0;
  virtual ssize_t get_xattr(int fd, const char* name, void* value, std::size_t size) = 0;
  virtual int remove_xattr(int fd, const char* name) = 0;
};

// The real thing: direct system calls.
class PosixFileSystem : public FileSystem {
 public:
  int open_at(int dirfd, const char* path, int flags, mode_t mode) override;
  ssize_t write(int fd, const void* data, std::size_t size) override;
  int fsync(int fd) override;
  int close(int fd) override;
  int rename_at(int old_dirfd, const char* old_path, int new_dirfd, const char* new_path,
                unsigned flags) override;
  int link_at(int old_dirfd, const char* old_path, int new_dirfd, const char* new_path, int flags) override;
  int unlink_at(int dirfd, const char* path, int flags) override;
  int mkdir_at(int dirfd, const char* path, mode_t mode) override;
  int stat_at(int dirfd, const char* path, struct stat* st, int flags) override;
  ssize_t read(int fd, void* data, std::size_t size) override;
  int truncate(int fd) override;
  int fstat(int fd, struct stat* st) override;
  int set_xattr(int fd, const char* name, const void* value, std::size_t size) override;
  ssize_t get_xattr(int fd, const char* name, void* value, std::size_t size) override;
  int remove_xattr(int fd, const char* name) override;
};

// The process-wide PosixFileSystem (stateless, so sharing it is free).
FileSystem& posix_file_system();

// Owns one fd opened through a FileSystem and closes it through the same one. Move-only.
class FileDescriptor {
 public:
  FileDescriptor() = default;
  FileDescriptor(FileSystem& fs, int fd) : fs_(&fs), fd_(fd) {}
  FileDescriptor(FileDescriptor&& other) noexcept : fs_(other.fs_), fd_(std::exchange(other.fd_, -1)) {}
  FileDescriptor& operator=(FileDescriptor&& other) noexcept {
    if (this != &other) {
      (void)close();
      fs_ = other.fs_;
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() { (void)close(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }

  // 0 or -errno; the descriptor is gone either way. Idempotent.
  int close() {
    if (fd_ < 0) return 0;
    return fs_->close(std::exchange(fd_, -1));
  }

 private:
  FileSystem* fs_ = nullptr;
  int fd_ = -1;
};

}  // namespace fetchd::transfer
