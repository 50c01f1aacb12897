// SPDX-License-Identifier: Apache-2.0
#include "fetchd/bench/verify.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace fetchd::bench {

namespace {

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
struct DigestFreer {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

constexpr std::size_t kReadChunk = 64 * 1024;

bool fail(std::string* error, std::string message) {
  if (error != nullptr) *error = std::move(message);
  return false;
}

}  // namespace

std::optional<std::string> sha256_file(const std::filesystem::path& path, std::string* error) {
  // "e": O_CLOEXEC, so that a child spawned meanwhile never inherits the descriptor.
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rbe"));
  if (!file) {
    fail(error, std::strerror(errno));
    return std::nullopt;
  }
  std::unique_ptr<EVP_MD_CTX, DigestFreer> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    fail(error, "cannot initialise SHA-256");
    return std::nullopt;
  }
  std::array<unsigned char, kReadChunk> buffer{};
  while (true) {
    auto n = std::fread(buffer.data(), 1, buffer.size(), file.get());
    if (n > 0 && EVP_DigestUpdate(ctx.get(), buffer.data(), n) != 1) {
      fail(error, "SHA-256 update failed");
      return std::nullopt;
    }
    if (n < buffer.size()) {
      if (std::ferror(file.get()) != 0) {
        fail(error, std::strerror(errno));
        return std::nullopt;
      }
      break;
    }
  }
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  if (EVP_DigestFinal_ex(ctx.get(), digest.data(), &length) != 1) {
    fail(error, "SHA-256 final failed");
    return std::nullopt;
  }
  std::string hex;
  hex.reserve(length * 2);
  for (unsigned int i = 0; i < length; ++i) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

VerifyReport verify_files(const std::filesystem::path& dir, std::span<const WorkloadFile> files) {
  VerifyReport report;
  auto problem = [&report](const WorkloadFile& f, const std::string& what) {
    ++report.failures;
    if (report.problems.size() < kMaxReportedProblems) report.problems.push_back(f.name + ": " + what);
  };
  for (const auto& f : files) {
    ++report.checked;
    const auto path = dir / f.name;
    std::error_code ec;
    // symlink_status: a symlink to the right content elsewhere is not a downloaded file.
    auto status = std::filesystem::symlink_status(path, ec);
    if (ec || status.type() == std::filesystem::file_type::not_found) {
      problem(f, "missing");
      continue;
    }
    if (status.type() != std::filesystem::file_type::regular) {
      problem(f, "not a regular file");
      continue;
    }
    auto size = std::filesystem::file_size(path, ec);
    if (ec) {
      problem(f, "cannot stat: " + ec.message());
      continue;
    }
    if (size != f.size) {
      problem(f, fmt::format("size {} instead of {}", size, f.size));
      continue;
    }
    std::string error;
    auto digest = sha256_file(path, &error);
    if (!digest) {
      problem(f, "cannot read: " + error);
      continue;
    }
    if (*digest != f.sha256) {
      problem(f, fmt::format("sha256 {} instead of {}", *digest, f.sha256));
      continue;
    }
    report.bytes += size;
  }
  return report;
}

}  // namespace fetchd::bench
