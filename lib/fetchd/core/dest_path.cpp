// SPDX-License-Identifier: Apache-2.0
#include "fetchd/core/dest_path.hpp"

#include <fmt/format.h>
#include <sys/stat.h>

#include "fetchd/core/text.hpp"

#include <deque>
#include <system_error>
#include <vector>

namespace fetchd::core {
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kFallbackName = "download";
constexpr std::size_t kMaxKeptExtensionBytes = 32;
constexpr int kMaxSymlinkHops = 40;  // Linux's MAXSYMLINKS

bool is_control(unsigned char c) {
  return c < 0x20 || c == 0x7f;
}

// Length of the valid UTF-8 sequence starting at s[i], or 0 when it is invalid (overlong, surrogate, >
// U+10FFFF, truncated).
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char b0 = byte(i);
  if (b0 < 0x80) return 1;
  std::size_t len = 0;
  char32_t cp = 0;
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    len = 2;
    cp = b0 & 0x1fu;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    len = 3;
    cp = b0 & 0x0fu;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    len = 4;
    cp = b0 & 0x07u;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    unsigned char b = byte(i + k);
    if ((b & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3fu);
  }
  static constexpr char32_t kMinForLength[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMinForLength[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return len;
}

// C1 controls (U+0080..U+009F, encoded C2 80..C2 9F) are as unwanted in a name as C0 ones.
bool is_c1_control(std::string_view s, std::size_t i, std::size_t len) {
  return len == 2 && static_cast<unsigned char>(s[i]) == 0xc2 && static_cast<unsigned char>(s[i + 1]) <= 0x9f;
}

// Largest cut <= max that does not split a UTF-8 sequence of the (valid UTF-8) string s.
std::size_t utf8_floor(std::string_view s, std::size_t max) {
  if (max >= s.size()) return s.size();
  std::size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xc0) == 0x80) --cut;
  return cut;
}

std::string_view trim_name(std::string_view s) {
  // Leading dots would hide the file (".bashrc") or make "." / ".."; surrounding spaces are never intended.
  while (!s.empty() && (s.front() == '.' || s.front() == ' ')) s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

// Cuts `name` to kMaxFileNameBytes, keeping a short extension so the type of the file survives.
std::string truncate_name(const std::string& name) {
  if (name.size() <= kMaxFileNameBytes) return name;
  std::string_view ext;
  auto dot = name.rfind('.');
  if (dot != std::string::npos && dot > 0 && name.size() - dot <= kMaxKeptExtensionBytes) {
    ext = std::string_view(name).substr(dot);
  }
  std::string_view stem = std::string_view(name).substr(0, name.size() - ext.size());
  stem = stem.substr(0, utf8_floor(stem, kMaxFileNameBytes - ext.size()));
  std::string out(stem);
  out += ext;
  return out;
}

// Like realpath(3), but a missing tail is fine: the result is the real path of the longest existing prefix
// with the rest appended. Dangling symlinks are followed textually, so "link -> /elsewhere/missing" resolves
// outside. `p` must be absolute.
std::optional<fs::path> resolve_existing_prefix(const fs::path& p, std::string* error) {
  const fs::path rel = p.relative_path();
  std::deque<fs::path> todo(rel.begin(), rel.end());
  fs::path done = p.root_path();
  bool missing = false;
  int hops = 0;
  while (!todo.empty()) {
    fs::path part = std::move(todo.front());
    todo.pop_front();
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      // `done` is already real (free of symlinks) while nothing is missing, so its parent is the real parent.
      done = done.parent_path();
      continue;
    }
    fs::path next = done / part;
    if (missing) {
      done = std::move(next);
      continue;
    }
    std::error_code ec;
    fs::file_status st = fs::symlink_status(next, ec);
    // libstdc++ reports ENOTDIR as "not found" too; here it means a file sits where a folder must be.
    if (ec == std::errc::not_a_directory) {
      *error = fmt::format("'{}' is not a directory", done.string());
      return std::nullopt;
    }
    if (ec && st.type() != fs::file_type::not_found) {
      *error = fmt::format("cannot inspect '{}': {}", next.string(), ec.message());
      return std::nullopt;
    }
    if (st.type() == fs::file_type::not_found) {
      missing = true;
      done = std::move(next);
      continue;
    }
    if (st.type() == fs::file_type::symlink) {
      if (++hops > kMaxSymlinkHops) {
        *error = fmt::format("too many levels of symbolic links at '{}'", next.string());
        return std::nullopt;
      }
      fs::path target = fs::read_symlink(next, ec);
      if (ec) {
        *error = fmt::format("cannot read symbolic link '{}': {}", next.string(), ec.message());
        return std::nullopt;
      }
      const fs::path target_rel = target.relative_path();
      todo.insert(todo.begin(), target_rel.begin(), target_rel.end());
      if (target.is_absolute()) done = target.root_path();
      continue;
    }
    done = std::move(next);
  }
  return done;
}

// True when `inner` is `outer` or below it, component by component (so "/a/bc" is not below "/a/b").
bool is_within(const fs::path& outer, const fs::path& inner) {
  auto o = outer.begin();
  auto i = inner.begin();
  for (; o != outer.end(); ++o, ++i) {
    if (o->empty()) continue;  // trailing separator of outer
    if (i == inner.end() || *o != *i) return false;
  }
  return true;
}

}  // namespace

std::string sanitize_filename(std::string_view name) {
  // Only the last component counts: "../../x", "/etc/passwd" and "a\b" come from untrusted servers.
  while (!name.empty() && (name.back() == '/' || name.back() == '\\')) name.remove_suffix(1);
  auto sep = name.find_last_of("/\\");
  if (sep != std::string_view::npos) name.remove_prefix(sep + 1);

  std::string clean;
  clean.reserve(name.size());
  for (std::size_t i = 0; i < name.size();) {
    std::size_t len = utf8_sequence_length(name, i);
    if (len == 0 || (len == 1 && is_control(static_cast<unsigned char>(name[i]))) ||
        is_c1_control(name, i, len)) {
      clean.push_back('_');
      i += len == 0 ? 1 : len;
      continue;
    }
    clean.append(name.substr(i, len));
    i += len;
  }
  std::string out = truncate_name(std::string(trim_name(clean)));
  // Truncation can expose trailing spaces again; trimming cannot make the name longer.
  out = std::string(trim_name(out));
  if (out.empty()) return std::string(kFallbackName);
  return out;
}

std::string filename_from_url(std::string_view url) {
  std::string_view s = url;
  if (auto hash = s.find('#'); hash != std::string_view::npos) s = s.substr(0, hash);
  if (auto query = s.find('?'); query != std::string_view::npos) s = s.substr(0, query);
  if (auto scheme_end = s.find("://"); scheme_end != std::string_view::npos) {
    s.remove_prefix(scheme_end + 3);
    auto path_start = s.find('/');
    s = path_start == std::string_view::npos ? std::string_view{} : s.substr(path_start);
  }
  while (!s.empty() && s.back() == '/') s.remove_suffix(1);
  auto slash = s.rfind('/');
  if (slash != std::string_view::npos) s.remove_prefix(slash + 1);
  if (s.empty()) return "index.html";
  return sanitize_filename(percent_decode(s));
}

std::optional<std::string> normalize_relative_dest(std::string_view dest, std::string* error) {
  auto fail = [&](std::string msg) -> std::optional<std::string> {
    if (error) *error = std::move(msg);
    return std::nullopt;
  };
  if (dest.empty()) return fail("destination is empty");
  if (dest.front() == '/') return fail("destination must be relative to output.dir, not absolute");
  for (char c : dest) {
    if (c == '\0') return fail("destination contains a NUL byte");
    if (is_control(static_cast<unsigned char>(c))) return fail("destination contains a control character");
    if (c == '\\') return fail("destination contains a backslash; separate folders with '/'");
  }
  if (dest.back() == '/') return fail("destination ends with '/'; it must name a file");

  std::vector<std::string_view> parts;
  std::string_view rest = dest;
  while (!rest.empty()) {
    auto slash = rest.find('/');
    std::string_view part = rest.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    if (part.empty()) continue;
    if (part == "..") return fail("destination must not contain '..'");
    if (part == ".") return fail("destination must not contain '.' components");
    parts.push_back(part);
  }
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    bool last = i + 1 == parts.size();
    std::size_t limit = last ? kMaxFileNameBytes : kMaxPathComponentBytes;
    if (parts[i].size() > limit) {
      return fail(
          last ? fmt::format("file name is {} bytes long; at most {} are allowed (room is kept for the "
                             "'.part' suffix)",
                             parts[i].size(), limit)
               : fmt::format("folder name is {} bytes long; at most {} are allowed", parts[i].size(), limit));
    }
    if (!out.empty()) out += '/';
    out += parts[i];
  }
  return out;
}

Confiner::Confiner(fs::path out_dir) : base_(std::move(out_dir)) {}

std::optional<fs::path> Confiner::confine(std::string_view rel, std::string* error) {
  std::string local_error;
  std::string* err = error ? error : &local_error;
  auto normalized = normalize_relative_dest(rel, err);
  if (!normalized) return std::nullopt;

  if (!real_base_) {
    std::error_code ec;
    fs::path base = fs::absolute(base_, ec);
    if (ec) {
      *err = fmt::format("cannot make '{}' absolute: {}", base_.string(), ec.message());
      return std::nullopt;
    }
    base_ = base.lexically_normal();
    real_base_ = resolve_existing_prefix(base_, err);
    if (!real_base_) return std::nullopt;
    safe_folders_.insert("");
  }
  fs::path dest = base_ / *normalized;
  const auto slash = normalized->rfind('/');
  std::string folder = slash == std::string::npos ? std::string() : normalized->substr(0, slash);

  if (safe_folders_.count(folder) != 0) {
    // The folder resolved inside before: only the file itself may still lead elsewhere.
    struct stat st {};
    if (::lstat(dest.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return dest;
  }
  auto real_dest = resolve_existing_prefix(dest, err);
  if (!real_dest) return std::nullopt;
  if (!is_within(*real_base_, *real_dest) || *real_dest == *real_base_) {
    *err = fmt::format(
        "destination '{}' leaves the output directory through a symbolic link (it resolves to '{}')",
        *normalized, real_dest->string());
    return std::nullopt;
  }
  if (safe_folders_.count(folder) == 0) {
    auto real_folder = resolve_existing_prefix(base_ / folder, err);
    if (real_folder && is_within(*real_base_, *real_folder)) safe_folders_.insert(std::move(folder));
  }
  return dest;
}

std::optional<fs::path> confine(const fs::path& out_dir, std::string_view rel, std::string* error) {
  return Confiner(out_dir).confine(rel, error);
}

}  // namespace fetchd::core
