// SPDX-License-Identifier: Apache-2.0
#include "fetchd/transfer/file_system.hpp"

#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

namespace fetchd::transfer {

namespace {

int result(int rc) {
  return rc < 0 ? -errno : rc;
}

}  // namespace

int PosixFileSystem::open_at(int dirfd, const char* path, int flags, mode_t mode) {
  return result(::openat(dirfd, path, flags, mode));
}

ssize_t PosixFileSystem::write(int fd, const void* data, std::size_t size) {
  ssize_t n = ::write(fd, data, size);
  return n < 0 ? -errno : n;
}

int PosixFileSystem::fsync(int fd) {
  return result(::fsync(fd));
}

int PosixFileSystem::close(int fd) {
  return result(::close(fd));
}

int PosixFileSystem::rename_at(int old_dirfd, const char* old_path, int new_dirfd, const char* new_path,
                               unsigned flags) {
  return result(::renameat2(old_dirfd, old_path, new_dirfd, new_path, flags));
}

int PosixFileSystem::link_at(int old_dirfd, const char* old_path, int new_dirfd, const char* new_path,
                             int flags) {
  return result(::linkat(old_dirfd, old_path, new_dirfd, new_path, flags));
}

int PosixFileSystem::unlink_at(int dirfd, const char* path, int flags) {
  return result(::unlinkat(dirfd, path, flags));
}

int PosixFileSystem::mkdir_at(int dirfd, const char* path, mode_t mode) {
  return result(::mkdirat(dirfd, path, mode));
}

int PosixFileSystem::stat_at(int dirfd, const char* path, struct stat* st, int flags) {
  return result(::fstatat(dirfd, path, st, flags));
}

ssize_t PosixFileSystem::read(int fd, void* data, std::size_t size) {
  ssize_t n = ::read(fd, data, size);
  return n < 0 ? -errno : n;
}

int PosixFileSystem::truncate(int fd) {
  if (::ftruncate(fd, 0) < 0) return -errno;
  return ::lseek(fd, 0, SEEK_SET) < 0 ? -errno : 0;
}

int PosixFileSystem::fstat(int fd, struct stat* st) {
  return result(::fstat(fd, st));
}

int PosixFileSystem::set_xattr(int fd, const char* name, const void* value, std::size_t size) {
  return result(::fsetxattr(fd, name, value, size, 0));
}

ssize_t PosixFileSystem::get_xattr(int fd, const char* name, void* value, std::size_t size) {
  ssize_t n = ::fgetxattr(fd, name, value, size);
  return n < 0 ? -errno : n;
}

int PosixFileSystem::remove_xattr(int fd, const char* name) {
  return result(::fremovexattr(fd, name));
}

FileSystem& posix_file_system() {
  static PosixFileSystem fs;
  return fs;
}

}  // namespace fetchd::transfer
