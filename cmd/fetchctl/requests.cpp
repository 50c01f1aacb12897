// SPDX-License-Identifier: Apache-2.0
#include "requests.hpp"

#include <algorithm>
#include <charconv>

namespace fetchd::ctl {

namespace {

constexpr std::string_view kSubmitHead = R"({"op":"submit","jobs":[)";
constexpr std::string_view kSubmitTail = "]}";
constexpr std::string_view kJobsPrefix = "jobs[";

bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

// Calls fn(start, end, index) for each "jobs[N]" in the message, N parsed as a decimal number.
template <typename Fn>
void for_each_job_index(std::string_view message, Fn&& fn) {
  std::size_t pos = 0;
  while ((pos = message.find(kJobsPrefix, pos)) != std::string_view::npos) {
    std::size_t digits = pos + kJobsPrefix.size();
    std::size_t end = digits;
    while (end < message.size() && message[end] >= '0' && message[end] <= '9') ++end;
    std::size_t value = 0;
    if (end > digits && end < message.size() && message[end] == ']' &&
        std::from_chars(message.data() + digits, message.data() + end, value).ec == std::errc()) {
      if (!fn(digits, end, value)) return;
    }
    pos = digits;
  }
}

}  // namespace

std::string_view url_from_line(std::string_view line) {
  // A UTF-8 byte order mark (first line of files written by some editors).
  if (line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);
  line = trim(line);
  if (line.empty() || line.front() == '#') return {};
  for (std::size_t i = 1; i < line.size(); ++i) {
    if (line[i] == '#' && is_blank(line[i - 1])) return trim(line.substr(0, i));
  }
  return line;
}

std::optional<std::pair<std::string, std::string>> parse_header_arg(std::string_view text,
                                                                    std::string* error) {
  auto colon = text.find(':');
  if (colon == std::string_view::npos) {
    if (error) *error = "a header is written 'Name: value'";
    return std::nullopt;
  }
  std::string_view name = text.substr(0, colon);
  if (name.empty()) {
    if (error) *error = "the header name before ':' is empty";
    return std::nullopt;
  }
  if (std::any_of(name.begin(), name.end(), is_blank)) {
    if (error) *error = "a header name has no blanks ('Name: value')";
    return std::nullopt;
  }
  return std::make_pair(std::string(name), std::string(trim(text.substr(colon + 1))));
}

nlohmann::ordered_json make_job(std::string_view url, const JobTemplate& t) {
  nlohmann::ordered_json job;
  job["url"] = url;
  if (t.dest) job["dest"] = *t.dest;
  if (t.sha256) job["sha256"] = *t.sha256;
  if (t.size) job["size"] = *t.size;
  if (!t.headers.empty()) {
    nlohmann::ordered_json headers = nlohmann::ordered_json::object();
    for (const auto& [name, value] : t.headers) headers[name] = value;
    job["headers"] = std::move(headers);
  }
  if (t.priority) job["priority"] = *t.priority;
  if (t.key) job["key"] = *t.key;
  for (const auto& [name, value] : t.options.items()) job[name] = value;
  return job;
}

bool SubmitBatch::fits_alone(std::string_view job_json) {
  return kSubmitHead.size() + job_json.size() + kSubmitTail.size() <= kMaxRequestLine;
}

bool SubmitBatch::try_add(std::string_view job_json) {
  if (jobs_ >= kMaxJobsPerSubmit) return false;
  std::size_t separator = jobs_ == 0 ? 0 : 1;
  std::size_t line =
      kSubmitHead.size() + jobs_text_.size() + separator + job_json.size() + kSubmitTail.size();
  if (line > kMaxRequestLine) return false;
  if (separator != 0) jobs_text_ += ',';
  jobs_text_.append(job_json);
  ++jobs_;
  return true;
}

std::string SubmitBatch::finish() {
  std::string line;
  line.reserve(kSubmitHead.size() + jobs_text_.size() + kSubmitTail.size());
  line.append(kSubmitHead).append(jobs_text_).append(kSubmitTail);
  jobs_text_.clear();
  jobs_ = 0;
  return line;
}

std::string rewrite_job_indexes(std::string_view message, const std::vector<std::size_t>& global) {
  std::string out;
  std::size_t copied = 0;
  for_each_job_index(message, [&](std::size_t start, std::size_t end, std::size_t index) {
    if (index < global.size()) {
      out.append(message.substr(copied, start - copied));
      out += std::to_string(global[index]);
      copied = end;
    }
    return true;
  });
  out.append(message.substr(copied));
  return out;
}

std::optional<std::size_t> first_job_index(std::string_view message) {
  std::optional<std::size_t> first;
  for_each_job_index(message, [&](std::size_t, std::size_t, std::size_t index) {
    first = index;
    return false;
  });
  return first;
}

}  // namespace fetchd::ctl
