// SPDX-License-Identifier: Apache-2.0
#pragma once
// Destination names: sanitising a name taken from a URL (or later a header) into one safe path component, and
// confining a relative destination to the output directory (no absolute paths, no "..", no symlink escapes).

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>

namespace fetchd::core {

// The longest file name we produce or accept as the last component of a destination: NAME_MAX (255) less room
// for the ".part" suffix the sink appends while downloading.
inline constexpr std::size_t kMaxFileNameBytes = 250;
// The longest directory component of a destination (NAME_MAX).
inline constexpr std::size_t kMaxPathComponentBytes = 255;

// One safe file name: never empty, ".", "..", never contains '/', '\\', NUL or control characters, at most
// kMaxFileNameBytes bytes (UTF-8 kept whole, extension kept), no leading dots that would hide it. Only the last
// '/'- or '\\'-separated part of `name` is used ("../../x" -> "x"); invalid UTF-8 bytes become '_'.
// Returns "download" when nothing usable is left.
std::string sanitize_filename(std::string_view name);

// The last non-empty path segment of the URL (percent-decoded, query and fragment ignored), sanitised.
// "http://h/a/b.bin?x=1" -> "b.bin"; "http://h/" -> "index.html".
std::string filename_from_url(std::string_view url);

// Validates a relative destination given by the user ("sub/a.bin") and returns it normalized. Errors (returned
// as nullopt with *error set): empty, absolute, a ".." or "." component, NUL or control characters, a backslash,
// a directory component over kMaxPathComponentBytes or a file name over kMaxFileNameBytes, a trailing '/'.
// Repeated slashes collapse ("a//b" -> "a/b").
std::optional<std::string> normalize_relative_dest(std::string_view dest, std::string* error);

// Checks that out_dir/rel stays inside out_dir on the real file system: every existing component of the parent
// chain is resolved and must not leave out_dir (a symlink pointing outside is an escape). Returns the absolute
// destination path (out_dir made absolute and lexically normal, joined with the normalized rel), or nullopt with
// *error set. `rel` is validated with normalize_relative_dest first. An existing destination that is itself a
// symlink pointing outside is refused too. This is a check at one moment: the writer must still open with
// O_NOFOLLOW.
std::optional<std::filesystem::path> confine(const std::filesystem::path& out_dir, std::string_view rel,
                                             std::string* error);

// confine() for many destinations in one output directory: the directory is resolved once, and each folder
// below it once, the first time a destination names it; after that a destination costs one lstat of the file
// itself (a symlink there is resolved in full). For one config load or one submit request: what it found safe
// is a check at that moment, like confine()'s. Thread: one thread at a time.
class Confiner {
 public:
  explicit Confiner(std::filesystem::path out_dir);
  std::optional<std::filesystem::path> confine(std::string_view rel, std::string* error);

 private:
  std::filesystem::path base_;  // absolute and lexically normal
  std::optional<std::filesystem::path> real_base_;  // resolved on first use
  std::unordered_set<std::string> safe_folders_;  // normalized relative folders found inside ("" = base_)
};

}  // namespace fetchd::core
