// SPDX-License-Identifier: Apache-2.0
#include "fetchd/stats/stats.hpp"

#include <sys/resource.h>

#include <fmt/format.h>

namespace fetchd::stats {

namespace {
constexpr double kMiB = 1024.0 * 1024.0;
double seconds(std::chrono::steady_clock::duration d) { return std::chrono::duration<double>(d).count(); }
double tv(const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; }
}  // namespace

Throughput::Throughput(std::string strategy, Clock::time_point start)
    : strategy_(std::move(strategy)), start_(start), last_at_(start) {}

std::string Throughput::format(std::string_view strategy, const Counters& c, double files_per_s,
                               double mib_per_s) {
  return fmt::format("strategy={} active={} queued={} done={} failed={} files/s={:.1f} MiB/s={:.2f}", strategy,
                     c.active, c.queued, c.done, c.failed, files_per_s, mib_per_s);
}

std::string Throughput::sample(const Counters& now, Clock::time_point at) {
  double dt = seconds(at - last_at_);
  double files = static_cast<double>((now.done + now.failed) - (last_.done + last_.failed));
  double bytes = static_cast<double>(now.bytes >= last_.bytes ? now.bytes - last_.bytes : 0);
  std::string line = format(strategy_, now, dt > 0 ? files / dt : 0, dt > 0 ? bytes / kMiB / dt : 0);
  last_ = now;
  last_at_ = at;
  return line;
}

std::string Throughput::total(const Counters& now, Clock::time_point at) const {
  double dt = elapsed_s(at);
  double files = static_cast<double>(now.done + now.failed);
  return format(strategy_, now, dt > 0 ? files / dt : 0, dt > 0 ? static_cast<double>(now.bytes) / kMiB / dt : 0);
}

double Throughput::elapsed_s(Clock::time_point at) const { return seconds(at - start_); }

ResourceUsage resource_usage() {
  ResourceUsage u;
  rusage self{};
  rusage children{};
  getrusage(RUSAGE_SELF, &self);
  getrusage(RUSAGE_CHILDREN, &children);
  u.cpu_user_s = tv(self.ru_utime) + tv(children.ru_utime);
  u.cpu_sys_s = tv(self.ru_stime) + tv(children.ru_stime);
  u.peak_rss_mib = static_cast<double>(self.ru_maxrss) / 1024.0;  // ru_maxrss is KiB on Linux
  return u;
}

}  // namespace fetchd::stats
