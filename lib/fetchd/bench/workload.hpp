// SPDX-License-Identifier: Apache-2.0
#pragma once
// The benchmark's workload: `files` distinct files of `size` bytes served by the origin, each with the
// SHA-256 and size fetchd verifies inline, written as the YAML job list that `fetchd run` reads. Pure
// functions, no I/O.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fetchd::bench {

struct WorkloadSpec {
  std::uint64_t files = 10'000;
  std::uint64_t size = 4096;
  // The origin's delay before each response, asked for in each URL (`&latency=25ms`), so that one origin
  // serves every profile.
  std::chrono::milliseconds latency{25};
  bool fsync = false;
};

struct WorkloadFile {
  std::string name;  // destination, and the name segment of the URL
  std::string url;
  std::uint64_t seed = 0;
  std::uint64_t size = 0;
  std::string sha256;  // lowercase hex of the origin's body for (size, seed)
};

// The origin's body digest for (size, seed), computed without the network.
using ExpectedSha256 = std::function<std::string(std::uint64_t size, std::uint64_t seed)>;

// "f00001.bin" for index 0: 1-based, zero-padded to at least 5 digits and to the width of `files`, so that
// the names sort in job order.
std::string file_name(std::uint64_t index, std::uint64_t files);

// One file per index with seed index + 1, so that no two bodies are equal (a cache or dedup cannot help).
// `base_url` is the origin's "http://127.0.0.1:PORT" (a trailing '/' is ignored).
std::vector<WorkloadFile> make_workload(const WorkloadSpec& spec, std::string_view base_url,
                                        const ExpectedSha256& expected_sha256);

struct JobListSettings {
  std::string strategy{};  // strategy.kind
  int concurrency = 1;
  std::filesystem::path output_dir{};  // absolute
  bool fsync = false;
  int workers = 0;      // strategy.workers of a process pool; 0: left out
  std::string inner{};  // strategy.inner of a process pool; empty: left out
};

// The config loader's size limits (config.hpp), passed in so that tests can use small ones.
struct JobListLimits {
  std::size_t max_config_bytes = 0;
  std::size_t max_urls_file_bytes = 0;
};

struct UrlsFile {
  std::string name;  // relative to the job list's folder
  std::string text;  // one URL per line
};

struct JobList {
  std::string yaml;
  std::vector<UrlsFile> urls_files;  // to write beside the job list; empty when inline_checks
  // Each job carries its sha256 and size, so that fetchd verifies as it downloads, as a user's list would.
  // False when such a list would exceed max_config_bytes: the URLs then go to urls_files (the loader reads no
  // checksums there), and only bench's own verification afterwards checks the files.
  bool inline_checks = true;
};

// The job list for one row: overwrite (each row starts empty anyway), no retries (a failure must show, not be
// papered over), log at warn so that the child's logging does not weigh on what is measured. No files: an
// empty job list (bench's probe of a strategy).
JobList make_job_list(const JobListSettings& settings, std::span<const WorkloadFile> files,
                      const JobListLimits& limits);

// The `fetchd serve` config of a `--via serve` row: the job list's strategy, output and defaults, the control
// socket and job store at the given paths, log at warn, a 1 s shutdown grace. The store keeps its default
// durability (synchronous: full), as a user's daemon would, and every finished job (no history limit).
std::string make_daemon_config(const JobListSettings& settings, const std::filesystem::path& socket,
                               const std::filesystem::path& state_dir);

std::uint64_t total_bytes(const WorkloadSpec& spec);

// The line printed above the table: "workload: 10000 files x 4KiB = 39.1 MiB, origin latency 25ms, fsync off
// ...".
std::string describe_workload(const WorkloadSpec& spec);

}  // namespace fetchd::bench
