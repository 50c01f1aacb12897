// SPDX-License-Identifier: Apache-2.0
#pragma once
// SHA-256 and SHA-512 over OpenSSL's EVP, and the one hex encoder. Each algorithm is fetched once per process:
// OpenSSL 3 otherwise fetches it again (allocations and a lock) at every EVP_DigestInit_ex with EVP_sha256().
// Thread: a Digest is used by one thread at a time; the fetched algorithms are immutable and shared.

#include <openssl/types.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace fetchd::core {

enum class DigestKind { kSha256, kSha512 };

// Lowercase hex of raw bytes.
std::string to_hex(std::string_view bytes);

class Digest {
 public:
  // Throws std::bad_alloc when OpenSSL cannot allocate the context, std::runtime_error when the algorithm is
  // unavailable.
  explicit Digest(DigestKind kind = DigestKind::kSha256);
  ~Digest();
  Digest(Digest&& other) noexcept;
  Digest& operator=(Digest&& other) noexcept;
  Digest(const Digest&) = delete;
  Digest& operator=(const Digest&) = delete;

  // False only when OpenSSL fails (it does not for these algorithms short of memory corruption).
  [[nodiscard]] bool update(const void* data, std::size_t size);
  [[nodiscard]] bool reset();
  // The digest of what was fed so far, raw or as lowercase hex; the stream can go on. "" on failure.
  std::string raw() const;
  std::string hex() const { return to_hex(raw()); }

 private:
  EVP_MD_CTX* ctx_ = nullptr;
  const EVP_MD* md_ = nullptr;
};

// Lowercase hex SHA-256 of `data`.
std::string sha256_hex(std::string_view data);

}  // namespace fetchd::core
