// SPDX-License-Identifier: Apache-2.0
#pragma once
// A FileSystem that forwards to the real one but injects the failures a disk rarely produces on demand (EIO,
// ENOSPC, short writes, EINTR, a file system without RENAME_NOREPLACE) and records what it was asked to do.
// Thread: one thread at a time (the test thread, or the thread running the transfer while the test waits).

#include <fcntl.h>

#include <cerrno>
#include <cstdint>
#include <set>
#include <vector>

#include "fetchd/transfer/file_system.hpp"

namespace fetchd::transfer::testutil {

class FakeFileSystem : public FileSystem {
 public:
  // Injection knobs.
  int write_errno = 0;                        // fail writes with this errno...
  std::uint64_t fail_write_after = 0;         // ...once this many bytes went through
  std::size_t max_write = 0;                  // > 0: never write more than this per call (short writes)
  bool eintr_before_each_write = false;       // every other write call fails with EINTR
  int fsync_file_errno = 0;                   // fsync of a regular file fails
  int fsync_dir_errno = 0;                    // fsync of a directory fails
  int mkdir_errno = 0;                        // every mkdir fails
  bool rename_noreplace_unsupported = false;  // RENAME_NOREPLACE gives EINVAL (old NFS, some FUSE)
  bool xattr_unsupported = false;             // every xattr call gives ENOTSUP (no resume records)

  // What happened.
  std::vector<int> open_flags;
  int opened = 0;
  int closed = 0;
  int fsyncs = 0;
  std::uint64_t written = 0;

  int open_at(int dirfd, const char* path, int flags, mode_t mode) override {
    open_flags.push_back(flags);
    int fd = real_.open_at(dirfd, path, flags, mode);
    if (fd >= 0) {
      ++opened;
      if ((flags & O_DIRECTORY) != 0) dir_fds_.insert(fd);
    }
    return fd;
  }

  ssize_t write(int fd, const void* data, std::size_t size) override {
    if (eintr_before_each_write && (toggle_ = !toggle_)) return -EINTR;
    if (write_errno != 0 && written >= fail_write_after) return -write_errno;
    if (write_errno != 0) size = std::min<std::uint64_t>(size, fail_write_after - written);
    if (max_write > 0) size = std::min(size, max_write);
    ssize_t n = real_.write(fd, data, size);
    if (n > 0) written += static_cast<std::uint64_t>(n);
    return n;
  }

  int fsync(int fd) override {
    ++fsyncs;
    if (dir_fds_.count(fd) != 0 ? fsync_dir_errno != 0 : fsync_file_errno != 0) {
      return -(dir_fds_.count(fd) != 0 ? fsync_dir_errno : fsync_file_errno);
    }
    return real_.fsync(fd);
  }

  int close(int fd) override {
    ++closed;
    dir_fds_.erase(fd);
    return real_.close(fd);
  }

  int rename_at(int old_dirfd, const char* old_path, int new_dirfd, const char* new_path,
                unsigned flags) override {
    if (rename_noreplace_unsupported && (flags & RENAME_NOREPLACE) != 0) return -EINVAL;
    return real_.rename_at(old_dirfd, old_path, new_dirfd, new_path, flags);
  }

  int link_at(int old_dirfd, const char* old_path, int new_dirfd, const char* new_path, int flags) override {
    return real_.link_at(old_dirfd, old_path, new_dirfd, new_path, flags);
  }

  int unlink_at(int dirfd, const char* path, int flags) override {
    return real_.unlink_at(dirfd, path, flags);
  }

  int mkdir_at(int dirfd, const char* path, mode_t mode) override {
    if (mkdir_errno != 0) return -mkdir_errno;
    return real_.mkdir_at(dirfd, path, mode);
  }

  int stat_at(int dirfd, const char* path, struct stat* st, int flags) override {
    return real_.stat_at(dirfd, path, st, flags);
  }

  ssize_t read(int fd, void* data, std::size_t size) override { return real_.read(fd, data, size); }
  int truncate(int fd) override { return real_.truncate(fd); }
  int fstat(int fd, struct stat* st) override { return real_.fstat(fd, st); }
  int set_xattr(int fd, const char* name, const void* value, std::size_t size) override {
    if (xattr_unsupported) return -ENOTSUP;
    return real_.set_xattr(fd, name, value, size);
  }
  ssize_t get_xattr(int fd, const char* name, void* value, std::size_t size) override {
    if (xattr_unsupported) return -ENOTSUP;
    return real_.get_xattr(fd, name, value, size);
  }
  int remove_xattr(int fd, const char* name) override {
    if (xattr_unsupported) return -ENOTSUP;
    return real_.remove_xattr(fd, name);
  }

 private:
  PosixFileSystem real_;
  std::set<int> dir_fds_;
  bool toggle_ = false;
};

}  // namespace fetchd::transfer::testutil
