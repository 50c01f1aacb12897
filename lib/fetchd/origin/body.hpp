// SPDX-License-Identifier: Apache-2.0
#pragma once
// The origin's deterministic bodies: byte i of the body for a seed is a pure function of (seed, i), so any
// range can be generated on its own and a client's download can be verified without the network. Definition:
// block b = splitmix64 output number b + 1 for the state `seed` (i.e. mix(seed + (b + 1) * golden)); byte i
// is byte i % 8 (little-endian) of block i / 8. Thread: any; no shared state.

#include <array>
#include <cstddef>
#include <cstdint>
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

// Strong validator derived from (size, seed), quotes included: "\"1000-7b\"" (hex).
std::string body_etag(std::uint64_t size, std::uint64_t seed);
// Every generated body claims this Last-Modified, so If-Range with a date works too.
inline constexpr std::string_view kBodyLastModified = "Sat, 01 Jan 2022 00:00:00 GMT";

}  // namespace fetchd::origin
