// SPDX-License-Identifier: Apache-2.0
#pragma once
// The origin's deterministic bodies: byte i of the body for a seed is a pure function of (seed, i), so any
// range can be generated on its own and a client's download can be verified without the network. Definition:
// block b = splitmix64 output number b + 1 for the state `seed` (i.e. mix(seed + (b + 1) * golden)); byte i
// is byte i % 8 (little-endian) of block i / 8. Thread: any; no shared state.

#include <openssl/types.h>  // EVP_MD_CTX, without all of evp.h

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace fetchd::origin {

// Fills out with body bytes [offset, offset + out.size()) for seed. Several GB/s on one core.
void fill_body(std::uint64_t seed, std::uint64_t offset, std::span<std::byte> out);

using Sha256 = std::array<std::uint8_t, 32>;

// SHA-256 of the whole body of size bytes for seed (OpenSSL EVP, generated in chunks; no network).
Sha256 body_sha256(std::uint64_t size, std::uint64_t seed);
std::string body_sha256_hex(std::uint64_t size, std::uint64_t seed);  // lower-case hex, 64 characters
std::string to_hex(std::span<const std::uint8_t> bytes);

std::string to_base64(std::span<const std::uint8_t> bytes);  // RFC 4648 §4, padded
// An RFC 9530 Content-Digest / Repr-Digest field value: "sha-256=:<base64>:" (an RFC 8941 byte sequence).
std::string sha256_field(const Sha256& digest);

// SHA-256 of a whole generated body and/or of one range of it, computed a slice at a time so that an event
// loop can do other work between slices (a GiB takes about a second). Thread: one owner.
class BodyDigest {
 public:
  // whole: digest of bytes [0, size); part: digest of bytes [first, first + length), within the body.
  BodyDigest(std::uint64_t seed, std::uint64_t size, bool whole, std::uint64_t first, std::uint64_t length,
             bool part);
  // Hashes the next scratch.size() bytes (at most), generating them into scratch; true once all is hashed.
  bool step(std::span<std::byte> scratch);
  bool done() const { return pos_ == end_; }
  const Sha256& whole() const { return whole_digest_; }  // after done()
  const Sha256& part() const { return part_digest_; }    // after done()

 private:
  struct CtxDeleter {
    void operator()(EVP_MD_CTX* c) const;
  };
  using Ctx = std::unique_ptr<EVP_MD_CTX, CtxDeleter>;
  static Ctx new_sha256();
  void finish();

  std::uint64_t seed_;
  std::uint64_t first_;
  std::uint64_t last_;  // exclusive
  std::uint64_t pos_;   // next byte to hash
  std::uint64_t end_;
  bool part_is_whole_;  // one pass yields both
  Ctx whole_;           // null when not wanted
  Ctx part_;
  Sha256 whole_digest_{};
  Sha256 part_digest_{};
};

// Strong validator derived from (size, seed), quotes included: "\"1000-7b\"" (hex).
std::string body_etag(std::uint64_t size, std::uint64_t seed);
// Every generated body claims this Last-Modified, so If-Range with a date works too.
inline constexpr std::string_view kBodyLastModified = "Sat, 01 Jan 2022 00:00:00 GMT";

}  // namespace fetchd::origin
