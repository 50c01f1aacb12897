// SPDX-License-Identifier: Apache-2.0
#include "fetchd/origin/body.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

namespace fetchd::origin {

namespace {

constexpr std::uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

// splitmix64's output function (Steele, Lea, Flood 2014), applied to the state after b + 1 increments.
inline std::uint64_t block(std::uint64_t seed, std::uint64_t b) {
  std::uint64_t z = seed + (b + 1) * kGolden;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

inline void store_le(std::byte* dst, std::uint64_t v) {
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
  std::memcpy(dst, &v, sizeof v);
}

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

}  // namespace

void fill_body(std::uint64_t seed, std::uint64_t offset, std::span<std::byte> out) {
  std::byte* p = out.data();
  std::size_t left = out.size();
  std::uint64_t b = offset / 8;
  // A partial first block.
  if (auto skip = static_cast<std::size_t>(offset % 8); skip != 0 && left > 0) {
    std::byte tmp[8];
    store_le(tmp, block(seed, b++));
    std::size_t n = std::min<std::size_t>(8 - skip, left);
    std::memcpy(p, tmp + skip, n);
    p += n;
    left -= n;
  }
  // Whole blocks: independent iterations, so the multiplies of consecutive blocks overlap in the pipeline.
  for (; left >= 8; left -= 8, p += 8) store_le(p, block(seed, b++));
  if (left > 0) {
    std::byte tmp[8];
    store_le(tmp, block(seed, b));
    std::memcpy(p, tmp, left);
  }
}

Sha256 body_sha256(std::uint64_t size, std::uint64_t seed) {
  std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("EVP_DigestInit_ex(sha256) failed");
  }
  constexpr std::size_t kChunk = 256 * 1024;
  std::vector<std::byte> buf(static_cast<std::size_t>(std::min<std::uint64_t>(size, kChunk)));
  for (std::uint64_t off = 0; off < size;) {
    auto n = static_cast<std::size_t>(std::min<std::uint64_t>(size - off, kChunk));
    fill_body(seed, off, std::span(buf.data(), n));
    if (EVP_DigestUpdate(ctx.get(), buf.data(), n) != 1) throw std::runtime_error("EVP_DigestUpdate failed");
    off += n;
  }
  Sha256 digest{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), digest.data(), &len) != 1 || len != digest.size()) {
    throw std::runtime_error("EVP_DigestFinal_ex failed");
  }
  return digest;
}

std::string to_hex(std::span<const std::uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (auto b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

std::string body_sha256_hex(std::uint64_t size, std::uint64_t seed) {
  return to_hex(body_sha256(size, seed));
}

std::string body_etag(std::uint64_t size, std::uint64_t seed) {
  return fmt::format("\"{:x}-{:x}\"", size, seed);
}

}  // namespace fetchd::origin
