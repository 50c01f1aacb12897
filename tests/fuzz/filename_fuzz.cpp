// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: destination names (core/dest_path.hpp, docs/fuzzing.md). The input is a name from an
// untrusted server, a URL, and a destination a user gave, all at once. Checked:
//   - sanitize_filename and filename_from_url: never empty, ".", ".."; no '/', '\\', NUL, C0 or C1 control
//     character, DEL; valid UTF-8; at most kMaxFileNameBytes; no leading dot or space, no trailing space;
//     sanitising again changes nothing; a kept extension survives truncation; the result is a valid
//     destination of its own (normalize_relative_dest accepts it unchanged);
//   - normalize_relative_dest: refusals come with a reason; a result is the input with repeated '/'
//     collapsed, has no empty, "." or ".." component, no backslash or control character, components within
//     their limits, and is its own normal form.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fetchd/core/dest_path.hpp"
#include "fuzz_check.hpp"

namespace {

using namespace fetchd;
using fuzz::printable;

bool is_control(unsigned char c) {
  return c < 0x20 || c == 0x7f;
}

void check_name(const std::string& out, std::string_view input, std::string_view what) {
  FUZZ_CHECK(!out.empty() && out != "." && out != "..", "{} gave {} for {}", what, printable(out),
             printable(input));
  FUZZ_CHECK(out.size() <= core::kMaxFileNameBytes, "{} gave {} bytes for {}", what, out.size(),
             printable(input));
  for (std::size_t i = 0; i < out.size(); ++i) {
    const auto c = static_cast<unsigned char>(out[i]);
    FUZZ_CHECK(c != '/' && c != '\\' && !is_control(c), "{} gave {} (byte {}) for {}", what, printable(out),
               i, printable(input));
    // U+0080..U+009F, the C1 controls, are C2 80..C2 9F in UTF-8.
    FUZZ_CHECK(!(c == 0xc2 && i + 1 < out.size() && static_cast<unsigned char>(out[i + 1]) <= 0x9f),
               "{} gave a C1 control in {} for {}", what, printable(out), printable(input));
  }
  FUZZ_CHECK(fuzz::valid_utf8(out), "{} gave invalid UTF-8 {} for {}", what, printable(out),
             printable(input));
  FUZZ_CHECK(out.front() != '.' && out.front() != ' ' && out.back() != ' ', "{} gave {} for {}", what,
             printable(out), printable(input));
  const std::string again = core::sanitize_filename(out);
  FUZZ_CHECK(again == out, "sanitize_filename is not idempotent: {} -> {} (from {} of {})", printable(out),
             printable(again), what, printable(input));
  std::string why;
  const auto dest = core::normalize_relative_dest(out, &why);
  FUZZ_CHECK(dest && *dest == out, "{} gave {}, which is not a valid destination: {} (input {})", what,
             printable(out), why, printable(input));
}

// "extension kept": a plain name (printable ASCII, nothing to trim) that is too long keeps its extension.
void check_extension_kept(const std::string& out, std::string_view name) {
  if (name.size() <= core::kMaxFileNameBytes || name.front() == '.' || name.front() == ' ' ||
      name.back() == ' ')
    return;
  for (char ch : name) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c >= 0x7f || c == '/' || c == '\\') return;
  }
  const auto dot = name.rfind('.');
  if (dot == std::string_view::npos || dot == 0 || name.size() - dot > 32) return;
  const std::string_view ext = name.substr(dot);
  FUZZ_CHECK(out.ends_with(ext), "sanitize_filename dropped the extension {}: {} for {}", printable(ext),
             printable(out), printable(name));
}

void check_dest(std::string_view input) {
  std::string why;
  const std::optional<std::string> dest = core::normalize_relative_dest(input, &why);
  if (!dest) {
    FUZZ_CHECK(!why.empty(), "normalize_relative_dest refused {} without a reason", printable(input));
    return;
  }
  const std::string& d = *dest;
  std::string collapsed;
  for (char c : input) {
    if (c == '/' && !collapsed.empty() && collapsed.back() == '/') continue;
    collapsed += c;
  }
  FUZZ_CHECK(d == collapsed, "normalize_relative_dest({}) = {}, expected {}", printable(input), printable(d),
             printable(collapsed));
  FUZZ_CHECK(!d.empty() && d.front() != '/' && d.back() != '/', "normalize_relative_dest({}) = {}",
             printable(input), printable(d));
  std::string_view rest = d;
  for (;;) {
    const auto slash = rest.find('/');
    const std::string_view part = rest.substr(0, slash);
    const bool last = slash == std::string_view::npos;
    FUZZ_CHECK(!part.empty() && part != "." && part != "..", "normalize_relative_dest({}) = {}",
               printable(input), printable(d));
    FUZZ_CHECK(part.size() <= (last ? core::kMaxFileNameBytes : core::kMaxPathComponentBytes),
               "normalize_relative_dest({}) kept a {}-byte component", printable(input), part.size());
    for (char ch : part) {
      FUZZ_CHECK(ch != '\\' && !is_control(static_cast<unsigned char>(ch)),
                 "normalize_relative_dest({}) = {}", printable(input), printable(d));
    }
    if (last) break;
    rest.remove_prefix(slash + 1);
  }
  std::string why2;
  const auto again = core::normalize_relative_dest(d, &why2);
  FUZZ_CHECK(again && *again == d, "normalize_relative_dest is not idempotent on {} ({})", printable(d),
             why2);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  const std::string name = core::sanitize_filename(input);
  check_name(name, input, "sanitize_filename");
  std::string_view last = input;
  while (!last.empty() && (last.back() == '/' || last.back() == '\\')) last.remove_suffix(1);
  if (auto sep = last.find_last_of("/\\"); sep != std::string_view::npos) last.remove_prefix(sep + 1);
  check_extension_kept(name, last);

  check_name(core::filename_from_url(input), input, "filename_from_url");
  check_dest(input);
  return 0;
}
