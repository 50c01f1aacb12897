// SPDX-License-Identifier: Apache-2.0
#pragma once
// A fresh private directory (mkdtemp) that is removed with everything in it on destruction, unless kept.
// Thread: one owner.

#include <filesystem>
#include <string>
#include <string_view>

namespace fetchd::bench {

// $TMPDIR when set and not empty, else /tmp.
std::filesystem::path temp_base_dir();

// Where bench rows download to by default: $TMPDIR when set, else /dev/shm (tmpfs) when it is a writable
// directory, else /tmp. A disk's file-creation cost depends on its history (ext4 scans past recently deleted inodes,
// and every bench row deletes thousands), which would make rows unrepeatable; `--dir` measures a disk on purpose.
std::filesystem::path default_bench_dir();

// "tmpfs", "ext4", ... for the file system holding `dir`, or "unknown".
std::string file_system_name(const std::filesystem::path& dir);

class TempDir {
 public:
  // Creates `<base>/<prefix>XXXXXX`, mode 0700. Throws std::system_error.
  static TempDir create(std::string_view prefix, const std::filesystem::path& base = temp_base_dir());

  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&&) = delete;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();

  const std::filesystem::path& path() const { return path_; }
  void keep() { keep_ = true; }
  bool kept() const { return keep_; }

 private:
  explicit TempDir(std::filesystem::path path) : path_(std::move(path)) {}
  std::filesystem::path path_;  // empty once moved from
  bool keep_ = false;
};

}  // namespace fetchd::bench
