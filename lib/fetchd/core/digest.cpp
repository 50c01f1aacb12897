// SPDX-License-Identifier: Apache-2.0
#include "fetchd/core/digest.hpp"

#include <openssl/evp.h>

#include <new>
#include <stdexcept>
#include <utility>

namespace fetchd::core {

namespace {

const EVP_MD* fetched(DigestKind kind) {
  // Explicit fetches, once; never freed (they live as long as the process, like OpenSSL's own tables).
  static const EVP_MD* const sha256 = EVP_MD_fetch(nullptr, "SHA2-256", nullptr);
  static const EVP_MD* const sha512 = EVP_MD_fetch(nullptr, "SHA2-512", nullptr);
  const EVP_MD* md = kind == DigestKind::kSha256 ? sha256 : sha512;
  if (md == nullptr) throw std::runtime_error("OpenSSL: cannot fetch SHA-256/SHA-512");
  return md;
}

}  // namespace

std::string to_hex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * bytes.size());
  for (unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
  }
  return out;
}

Digest::Digest(DigestKind kind) : ctx_(EVP_MD_CTX_new()), md_(fetched(kind)) {
  if (ctx_ == nullptr) throw std::bad_alloc();
  if (!reset()) {
    EVP_MD_CTX_free(ctx_);
    throw std::runtime_error("OpenSSL: EVP_DigestInit_ex failed");
  }
}

Digest::~Digest() { EVP_MD_CTX_free(ctx_); }

Digest::Digest(Digest&& other) noexcept
    : ctx_(std::exchange(other.ctx_, nullptr)), md_(other.md_) {}

Digest& Digest::operator=(Digest&& other) noexcept {
  if (this != &other) {
    EVP_MD_CTX_free(ctx_);
    ctx_ = std::exchange(other.ctx_, nullptr);
    md_ = other.md_;
  }
  return *this;
}

bool Digest::update(const void* data, std::size_t size) {
  return ctx_ != nullptr && EVP_DigestUpdate(ctx_, data, size) == 1;
}

bool Digest::reset() { return ctx_ != nullptr && EVP_DigestInit_ex(ctx_, md_, nullptr) == 1; }

std::string Digest::raw() const {
  if (ctx_ == nullptr) return {};
  // Finalising consumes a context: finalise a copy, so that the stream can go on.
  EVP_MD_CTX* copy = EVP_MD_CTX_new();
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  const bool ok = copy != nullptr && EVP_MD_CTX_copy_ex(copy, ctx_) == 1 && EVP_DigestFinal_ex(copy, digest, &len) == 1;
  EVP_MD_CTX_free(copy);
  return ok ? std::string(reinterpret_cast<const char*>(digest), len) : std::string();
}

std::string sha256_hex(std::string_view data) {
  Digest d;
  if (!d.update(data.data(), data.size())) return {};
  return d.hex();
}

}  // namespace fetchd::core
