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

std::string to_base64(std::span<const std::uint8_t> bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::string sha256_field(const Sha256& digest) {
  return "sha-256=:" + to_base64(digest) + ":";
}

void BodyDigest::CtxDeleter::operator()(EVP_MD_CTX* c) const {
  EVP_MD_CTX_free(c);
}

BodyDigest::Ctx BodyDigest::new_sha256() {
  Ctx ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("EVP_DigestInit_ex(sha256) failed");
  }
  return ctx;
}

namespace {

void update(EVP_MD_CTX* ctx, const std::byte* data, std::size_t n) {
  if (n > 0 && EVP_DigestUpdate(ctx, data, n) != 1) throw std::runtime_error("EVP_DigestUpdate failed");
}

void digest_final(EVP_MD_CTX* ctx, Sha256& out) {
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx, out.data(), &len) != 1 || len != out.size()) {
    throw std::runtime_error("EVP_DigestFinal_ex failed");
  }
}

}  // namespace

BodyDigest::BodyDigest(std::uint64_t seed, std::uint64_t size, bool whole, std::uint64_t first,
                       std::uint64_t length, bool part)
    : seed_(seed),
      first_(std::min(first, size)),
      last_(first_ + std::min(length, size - first_)),
      part_is_whole_(whole && part && first_ == 0 && last_ == size) {
  if (whole) whole_ = new_sha256();
  if (part && !part_is_whole_) part_ = new_sha256();
  // Only the part is wanted: hash just that range.
  pos_ = whole ? 0 : first_;
  end_ = whole ? size : last_;
  if (done()) finish();
}

bool BodyDigest::step(std::span<std::byte> scratch) {
  if (done()) return true;
  const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(end_ - pos_, scratch.size()));
  fill_body(seed_, pos_, scratch.first(n));
  if (whole_) update(whole_.get(), scratch.data(), n);
  if (part_) {
    // The overlap of [pos_, pos_ + n) with [first_, last_).
    const std::uint64_t lo = std::max(pos_, first_);
    const std::uint64_t hi = std::min(pos_ + n, last_);
    if (lo < hi) update(part_.get(), scratch.data() + (lo - pos_), static_cast<std::size_t>(hi - lo));
  }
  pos_ += n;
  if (done()) finish();
  return done();
}

void BodyDigest::finish() {
  if (whole_) digest_final(whole_.get(), whole_digest_);
  if (part_) digest_final(part_.get(), part_digest_);
  if (part_is_whole_) part_digest_ = whole_digest_;
  whole_.reset();
  part_.reset();
}

std::string body_etag(std::uint64_t size, std::uint64_t seed) {
  return fmt::format("\"{:x}-{:x}\"", size, seed);
}

}  // namespace fetchd::origin
