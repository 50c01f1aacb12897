// SPDX-License-Identifier: Apache-2.0
#pragma once
// Shared bits of the transfer tests: a temporary directory per test and small file helpers.

#include <gtest/gtest.h>

#include <filesystem>
#include <optional>
#include <string>

namespace fetchd::transfer::testutil {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it at the end of the test.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
};

std::optional<std::string> read_file(const std::string& path);  // nullopt when it does not exist
void write_file(const std::string& path, const std::string& content);
bool exists(const std::string& path);  // without following a final symlink

inline constexpr const char* kSha256Empty =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
inline constexpr const char* kSha256Abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
inline constexpr const char* kSha256MillionA =
    "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";

}  // namespace fetchd::transfer::testutil
