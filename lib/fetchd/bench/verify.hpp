// SPDX-License-Identifier: Apache-2.0
#pragma once
// The independent check after each row: every file of the workload is on disk, a regular file, with the
// expected size and SHA-256. Bench trusts this, not the child's own summary, before it reports a row as a
// result. Thread: any; blocking file I/O.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "fetchd/bench/workload.hpp"

namespace fetchd::bench {

// Lowercase hex SHA-256 of a file's content; std::nullopt with a reason when it cannot be read.
std::optional<std::string> sha256_file(const std::filesystem::path& path, std::string* error = nullptr);

struct VerifyReport {
  std::uint64_t checked = 0;
  std::uint64_t failures = 0;         // files missing, not regular, of the wrong size or content
  std::uint64_t bytes = 0;            // total size of the files that passed
  std::vector<std::string> problems;  // the first kMaxReportedProblems, "f00001.bin: missing"
};

inline constexpr std::size_t kMaxReportedProblems = 10;

VerifyReport verify_files(const std::filesystem::path& dir, std::span<const WorkloadFile> files);

}  // namespace fetchd::bench
