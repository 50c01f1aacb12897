// SPDX-License-Identifier: Apache-2.0
// Manual measurement driver for the SQLite job store (not a test): commit throughput and latency for a given
// batch size and durability setting, and the memory and query costs of a store holding many queued jobs.
// The numbers in docs/store.md come from it; run it on a real disk (not tmpfs), e.g.
//   store_bench --dir /var/tmp batch --jobs 200000 --batch 10000 --sync full
//   store_bench --dir /var/tmp single --commits 2000 --sync normal
//   store_bench --dir /var/tmp fill --jobs 1000000
// Thread: main thread only.

#include <fmt/format.h>
#include <sqlite3.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "fetchd/store/job_store.hpp"
#include "fetchd/store/sqlite.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using fetchd::store::Batch;
using fetchd::store::NewJob;
using fetchd::store::Synchronous;

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// CPU seconds (user + system) of this process so far: on a shared machine the wall clock also measures the
// neighbours, the CPU time does not.
double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const auto sec = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

// Kilobytes of a /proc/self/status field (VmRSS, VmHWM).
long status_kib(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
  }
  return -1;
}

// Jobs shaped like real ones: a random client key (so the key index is written at random places, as in
// production), a URL and a dest under a hashed directory.
class JobMaker {
 public:
  explicit JobMaker(std::uint64_t seed = 42) : rng_(seed) {}
  NewJob next() {
    const std::uint64_t a = rng_(), b = rng_();
    NewJob j;
    j.key = fmt::format("client:{:016x}{:016x}", a, b);
    j.url = fmt::format("https://mirror.example.org/data/{:016x}/file-{}.bin", b, n_);
    j.dest = fmt::format("/var/lib/fetchd/out/{:02x}/{:016x}-{}.bin", a & 0xff, b, n_);
    j.priority = static_cast<int>(a % 16 == 0);  // a few high-priority jobs
    ++n_;
    return j;
  }

 private:
  std::mt19937_64 rng_;
  std::uint64_t n_ = 0;
};

struct Stats {
  double p50 = 0, p99 = 0, max = 0, total = 0;
};

Stats stats_of(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.p50 = v[v.size() / 2];
  s.p99 = v[std::min(v.size() - 1, v.size() * 99 / 100)];
  s.max = v.back();
  for (double x : v) s.total += x;
  return s;
}

fs::path fresh_db(const fs::path& dir, const std::string& name) {
  const fs::path p = dir / name;
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(p.string() + suffix);
  return p;
}

int run_batch(const fs::path& dir, std::uint64_t jobs, std::uint64_t batch_size, Synchronous sync,
              bool onto_fill) {
  // onto_fill: on top of the queue an earlier `fill` left (a copy, so that it stays as it was).
  const fs::path path = fresh_db(dir, "store_bench.db");
  if (onto_fill) fs::copy_file(dir / "store_bench_fill.db", path);
  auto store = fetchd::store::open_sqlite_store(path, {sync});
  JobMaker maker(onto_fill ? 7 : 42);
  std::vector<double> latencies;
  double cpu = 0;
  for (std::uint64_t done = 0; done < jobs;) {
    Batch b;
    const std::uint64_t n = std::min(batch_size, jobs - done);
    b.submits.reserve(n);
    for (std::uint64_t i = 0; i < n; ++i) b.submits.push_back(maker.next());
    const double cpu0 = cpu_seconds();
    const auto t = Clock::now();
    store->commit(b);
    latencies.push_back(ms_since(t));
    cpu += cpu_seconds() - cpu0;
    done += n;
  }
  const Stats s = stats_of(latencies);
  fmt::print(
      "batch: {} jobs in {} commits of {}, synchronous={}: {:.0f} jobs/s ({:.0f} jobs per CPU second); "
      "commit ms p50 {:.1f} p99 {:.1f} max {:.1f}\n",
      jobs, latencies.size(), batch_size, sync == Synchronous::kFull ? "FULL" : "NORMAL",
      static_cast<double>(jobs) / (s.total / 1000), static_cast<double>(jobs) / cpu, s.p50, s.p99, s.max);
  return 0;
}

int run_single(const fs::path& dir, std::uint64_t commits, Synchronous sync) {
  const fs::path path = fresh_db(dir, "store_bench.db");
  auto store = fetchd::store::open_sqlite_store(path, {sync});
  JobMaker maker;
  std::vector<double> latencies;
  for (std::uint64_t i = 0; i < commits; ++i) {
    Batch b;
    b.submits.push_back(maker.next());
    const auto t = Clock::now();
    store->commit(b);
    latencies.push_back(ms_since(t));
  }
  const Stats s = stats_of(latencies);
  fmt::print(
      "single: {} commits of 1 job, synchronous={}: {:.0f} commits/s; commit ms p50 {:.3f} p99 {:.3f} "
      "max {:.3f}\n",
      commits, sync == Synchronous::kFull ? "FULL" : "NORMAL",
      static_cast<double>(commits) / (s.total / 1000), s.p50, s.p99, s.max);
  return 0;
}

int run_fill(const fs::path& dir, std::uint64_t jobs, bool keep) {
  const fs::path path = dir / "store_bench_fill.db";
  if (!keep || !fs::exists(path)) {
    fresh_db(dir, "store_bench_fill.db");
    auto store = fetchd::store::open_sqlite_store(path, {Synchronous::kNormal});
    JobMaker maker;
    const auto t = Clock::now();
    double commit_ms = 0, commit_cpu = 0;  // since the last progress line
    for (std::uint64_t done = 0; done < jobs;) {
      Batch b;
      const std::uint64_t n = std::min<std::uint64_t>(10000, jobs - done);
      for (std::uint64_t i = 0; i < n; ++i) b.submits.push_back(maker.next());
      const double cpu0 = cpu_seconds();
      const auto t0 = Clock::now();
      store->commit(b);
      commit_ms += ms_since(t0);
      commit_cpu += cpu_seconds() - cpu0;
      done += n;
      if (done % 100000 == 0 || done == jobs) {
        fmt::print("  {:>8} jobs: last 100000 at {:.0f} jobs/s ({:.0f} per CPU second)\n", done,
                   100000 / (commit_ms / 1000), 100000 / commit_cpu);
        commit_ms = commit_cpu = 0;
      }
    }
    fmt::print("fill: {} queued jobs in batches of 10000 (NORMAL) in {:.1f} s; VmHWM {} KiB\n", jobs,
               ms_since(t) / 1000, status_kib("VmHWM"));
  }
  // A fresh process state for the daemon's view: open, then what it does at start and every second.
  const long rss_before_open = status_kib("VmRSS");
  auto t = Clock::now();
  auto store = fetchd::store::open_sqlite_store(path, {Synchronous::kFull});
  fmt::print("open: {:.1f} ms\n", ms_since(t));
  t = Clock::now();
  const auto requeued = store->requeue_running();
  fmt::print("requeue_running: {} jobs, {:.1f} ms\n", requeued, ms_since(t));
  t = Clock::now();
  auto first = store->next_queued(std::nullopt, 2048);
  fmt::print("next_queued(nullopt, 2048): {} jobs, {:.1f} ms\n", first.size(), ms_since(t));
  if (!first.empty()) {
    const fetchd::store::Cursor c{first.back().priority, first.back().id};
    t = Clock::now();
    auto more = store->next_queued(c, 2048);
    fmt::print("next_queued(cursor, 2048): {} jobs, {:.1f} ms\n", more.size(), ms_since(t));
  }
  std::vector<double> count_ms;
  fetchd::store::Counts c;
  for (int i = 0; i < 20; ++i) {
    t = Clock::now();
    c = store->counts();
    count_ms.push_back(ms_since(t));
  }
  fmt::print("counts(): queued {}, {:.3f} ms (p50 of 20)\n", c.queued, stats_of(count_ms).p50);
  fmt::print(
      "RSS after open + next_queued(2048) + counts(): VmRSS {} KiB (was {} KiB before open), VmHWM {} "
      "KiB; SQLite heap {} KiB (peak {} KiB)\n",
      status_kib("VmRSS"), rss_before_open, status_kib("VmHWM"), sqlite3_memory_used() / 1024,
      sqlite3_memory_highwater(0) / 1024);

  // For comparison: what counts() would cost as a GROUP BY over the state index.
  auto raw = fetchd::store::sqlite::Database::open(path, SQLITE_OPEN_READONLY);
  raw.exec("PRAGMA cache_size = -8192");
  std::vector<double> group_ms;
  for (int i = 0; i < 5; ++i) {
    t = Clock::now();
    auto s = raw.prepare("SELECT state, count(*) FROM jobs GROUP BY state");
    auto scope = s.use();
    while (s.step()) {
    }
    group_ms.push_back(ms_since(t));
  }
  fmt::print("GROUP BY state over jobs_state (for comparison): {:.1f} ms (p50 of 5)\n",
             stats_of(group_ms).p50);
  fmt::print("file size: {:.1f} MiB\n", static_cast<double>(fs::file_size(path)) / (1 << 20));
  return 0;
}

Synchronous parse_sync(const std::string& s) {
  return s == "normal" ? Synchronous::kNormal : Synchronous::kFull;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Measures the SQLite job store (docs/store.md)"};
  std::string dir = "/var/tmp";
  app.add_option("--dir", dir, "directory for the database files (use a real disk, not tmpfs)");
  app.require_subcommand(1);

  std::uint64_t jobs = 200000, batch = 10000, commits = 2000;
  std::string sync = "full";
  bool keep = false, onto_fill = false;
  auto* batch_cmd = app.add_subcommand("batch", "commit throughput in batches");
  batch_cmd->add_option("--jobs", jobs);
  batch_cmd->add_option("--batch", batch);
  batch_cmd->add_option("--sync", sync)->check(CLI::IsMember({"full", "normal"}));
  batch_cmd->add_flag("--onto-fill", onto_fill, "add to (a copy of) the queue of an earlier fill");
  auto* single_cmd = app.add_subcommand("single", "latency of one-job commits");
  single_cmd->add_option("--commits", commits);
  single_cmd->add_option("--sync", sync)->check(CLI::IsMember({"full", "normal"}));
  auto* fill_cmd = app.add_subcommand("fill", "memory and query cost of a big queue");
  fill_cmd->add_option("--jobs", jobs);
  fill_cmd->add_flag("--keep", keep, "reuse the database of an earlier fill");
  CLI11_PARSE(app, argc, argv);

  try {
    if (*batch_cmd)
      return run_batch(dir, jobs, std::max<std::uint64_t>(batch, 1), parse_sync(sync), onto_fill);
    if (*single_cmd) return run_single(dir, commits, parse_sync(sync));
    if (*fill_cmd) return run_fill(dir, jobs, keep);
  } catch (const std::exception& e) {
    fmt::print(stderr, "store_bench: {}\n", e.what());
    return 1;
  }
  return 2;
}
