// SPDX-License-Identifier: Apache-2.0
#include "fetchd/core/dest_path.hpp"

#include <gtest/gtest.h>

#include <string>

#include "temp_dir.hpp"

namespace fetchd::core {
namespace {

namespace fs = std::filesystem;
using fetchd::testing::TempDir;
using namespace std::string_literals;

bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    auto b = static_cast<unsigned char>(s[i]);
    std::size_t len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (std::size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return false;
    }
    i += len;
  }
  return true;
}

// The properties every sanitised name has, whatever went in.
void expect_safe(const std::string& name) {
  EXPECT_FALSE(name.empty());
  EXPECT_NE(name, ".");
  EXPECT_NE(name, "..");
  EXPECT_NE(name.front(), '.');
  EXPECT_LE(name.size(), kMaxFileNameBytes);
  EXPECT_TRUE(valid_utf8(name)) << name;
  for (char c : name) {
    auto u = static_cast<unsigned char>(c);
    EXPECT_FALSE(c == '/' || c == '\\' || u < 0x20 || u == 0x7f) << "byte " << int(u) << " in " << name;
  }
}

TEST(SanitizeFilename, KeepsOrdinaryNames) {
  EXPECT_EQ(sanitize_filename("a.bin"), "a.bin");
  EXPECT_EQ(sanitize_filename("report 2024.pdf"), "report 2024.pdf");
  EXPECT_EQ(sanitize_filename("café-ü.txt"), "café-ü.txt");
}

TEST(SanitizeFilename, TakesOnlyTheLastComponent) {
  EXPECT_EQ(sanitize_filename("../../x"), "x");
  EXPECT_EQ(sanitize_filename("/etc/passwd"), "passwd");
  EXPECT_EQ(sanitize_filename("a/b"), "b");
  EXPECT_EQ(sanitize_filename("a\\b"), "b");
  EXPECT_EQ(sanitize_filename("..\\..\\windows\\win.ini"), "win.ini");
  EXPECT_EQ(sanitize_filename("dir/"), "dir");
}

TEST(SanitizeFilename, NothingUsableGivesTheFallback) {
  for (const char* bad : {"", ".", "..", "...", "/", "../", "..\\", " ", " . "}) {
    EXPECT_EQ(sanitize_filename(bad), "download") << "'" << bad << "'";
  }
}

TEST(SanitizeFilename, NoHiddenFiles) {
  EXPECT_EQ(sanitize_filename(".bashrc"), "bashrc");
  EXPECT_EQ(sanitize_filename("..hidden.txt"), "hidden.txt");
}

TEST(SanitizeFilename, ControlCharactersAndNulBecomeUnderscores) {
  EXPECT_EQ(sanitize_filename("a\0b"s), "a_b");
  EXPECT_EQ(sanitize_filename("a\r\nb"), "a__b");
  EXPECT_EQ(sanitize_filename("tab\there"), "tab_here");
  EXPECT_EQ(sanitize_filename("del\x7f"), "del_");
  EXPECT_EQ(sanitize_filename("c1\xc2\x85x"), "c1_x");  // U+0085 NEXT LINE
  expect_safe(sanitize_filename("\0\0\0"s));
}

TEST(SanitizeFilename, InvalidUtf8BecomesUnderscores) {
  EXPECT_EQ(sanitize_filename("a\xff\xfe.bin"), "a__.bin");
  EXPECT_EQ(sanitize_filename("\xc0\xaf"), "__");    // overlong '/'
  EXPECT_EQ(sanitize_filename("x\xe2\x82"), "x__");  // truncated sequence
  expect_safe(sanitize_filename("\xed\xa0\x80"));    // surrogate
}

TEST(SanitizeFilename, LongNamesAreCutKeepingTheExtension) {
  std::string name = sanitize_filename(std::string(1000, 'a') + ".tar.gz");
  EXPECT_EQ(name.size(), kMaxFileNameBytes);
  EXPECT_TRUE(name.ends_with(".gz")) << name;
  expect_safe(name);
  EXPECT_EQ(sanitize_filename(std::string(1000, 'b')), std::string(kMaxFileNameBytes, 'b'));
}

TEST(SanitizeFilename, TruncationNeverSplitsUtf8) {
  std::string two_byte;
  for (int i = 0; i < 300; ++i) two_byte += "é";
  for (std::string name : {two_byte, "x" + two_byte, two_byte + ".bin"}) {
    std::string out = sanitize_filename(name);
    EXPECT_LE(out.size(), kMaxFileNameBytes);
    EXPECT_GE(out.size(), kMaxFileNameBytes - 3);
    EXPECT_TRUE(valid_utf8(out)) << out;
  }
  std::string four_byte;
  for (int i = 0; i < 100; ++i) four_byte += "\xf0\x9f\x93\xa6";  // U+1F4E6
  std::string out = sanitize_filename(four_byte);
  EXPECT_EQ(out.size(), 248u);
  EXPECT_TRUE(valid_utf8(out));
}

TEST(FilenameFromUrl, LastPathSegment) {
  EXPECT_EQ(filename_from_url("http://h/a/b.bin?x=1"), "b.bin");
  EXPECT_EQ(filename_from_url("http://h:8080/bytes/1024"), "1024");
  EXPECT_EQ(filename_from_url("https://user:pw@h/x.bin"), "x.bin");
  EXPECT_EQ(filename_from_url("http://h/a/b/"), "b");
  EXPECT_EQ(filename_from_url("http://h/a#frag/x.bin"), "a");
}

TEST(FilenameFromUrl, NoPathGivesIndexHtml) {
  EXPECT_EQ(filename_from_url("http://h/"), "index.html");
  EXPECT_EQ(filename_from_url("http://h"), "index.html");
  EXPECT_EQ(filename_from_url("http://h//"), "index.html");
  EXPECT_EQ(filename_from_url("http://h?a/b.bin"), "index.html");
}

TEST(FilenameFromUrl, QueryStringsNeverNameTheFile) {
  EXPECT_EQ(filename_from_url("http://h/download.php?file=../../etc/passwd"), "download.php");
  EXPECT_EQ(filename_from_url("http://h/?name=evil.sh"), "index.html");
  EXPECT_EQ(filename_from_url("http://h/get?u=http://x/y/z.bin"), "get");
}

TEST(FilenameFromUrl, PercentDecodedThenSanitised) {
  EXPECT_EQ(filename_from_url("http://h/caf%C3%A9%20menu.txt"), "café menu.txt");
  EXPECT_EQ(filename_from_url("http://h/..%2F..%2Fx"), "x");
  EXPECT_EQ(filename_from_url("http://h/a%2F.."), "download");
  EXPECT_EQ(filename_from_url("http://h/%2e%2e"), "download");
  EXPECT_EQ(filename_from_url("http://h/%2E"), "download");
  EXPECT_EQ(filename_from_url("http://h/a%5Cb"), "b");
  EXPECT_EQ(filename_from_url("http://h/a%00b"), "a_b");
  EXPECT_EQ(filename_from_url("http://h/a%0d%0ab"), "a__b");
  EXPECT_EQ(filename_from_url("http://h/%zz"), "%zz");  // not an escape: kept
  EXPECT_EQ(filename_from_url("http://h/a%"), "a%");
  EXPECT_EQ(filename_from_url("http://h/a%4"), "a%4");
  expect_safe(filename_from_url("http://h/" + std::string(1000, 'n')));
}

TEST(NormalizeRelativeDest, AcceptsAndNormalizes) {
  std::string error;
  EXPECT_EQ(normalize_relative_dest("a.bin", &error), "a.bin");
  EXPECT_EQ(normalize_relative_dest("sub/a.bin", &error), "sub/a.bin");
  EXPECT_EQ(normalize_relative_dest("a//b///c", &error), "a/b/c");
  EXPECT_EQ(normalize_relative_dest("..a/b..", &error), "..a/b..");  // dots inside names are fine
  EXPECT_EQ(normalize_relative_dest(std::string(kMaxPathComponentBytes, 'd') + "/f", &error),
            std::string(kMaxPathComponentBytes, 'd') + "/f");
}

TEST(NormalizeRelativeDest, RejectsWithAReason) {
  struct Case {
    std::string dest;
    std::string reason;
  };
  for (const auto& c : std::vector<Case>{
           {"", "empty"},
           {"/etc/passwd", "absolute"},
           {"..", "'..'"},
           {"../x", "'..'"},
           {"a/../../x", "'..'"},
           {"a/..", "'..'"},
           {".", "'.'"},
           {"./a", "'.'"},
           {"a/", "ends with '/'"},
           {"a\\b", "backslash"},
           {"a\0b"s, "NUL"},
           {"a\nb", "control"},
           {"a\rb", "control"},
           {std::string(kMaxPathComponentBytes + 1, 'd') + "/f", "folder name"},
           {std::string(kMaxFileNameBytes + 1, 'f'), "file name"},
       }) {
    std::string error;
    EXPECT_FALSE(normalize_relative_dest(c.dest, &error)) << c.dest;
    EXPECT_NE(error.find(c.reason), std::string::npos) << c.dest << ": " << error;
  }
}

class Confine : public ::testing::Test {
 protected:
  void SetUp() override {
    out_ = tmp_ / "out";
    fs::create_directories(out_);
    fs::create_directories(tmp_ / "canary");
  }
  TempDir tmp_;
  fs::path out_;
};

TEST_F(Confine, PlainDestinationsStayInside) {
  std::string error;
  EXPECT_EQ(confine(out_, "a.bin", &error), out_ / "a.bin") << error;
  EXPECT_EQ(confine(out_, "new/sub/a.bin", &error), out_ / "new/sub/a.bin") << error;
  EXPECT_EQ(confine(out_ / "", "a.bin", &error), out_ / "a.bin") << error;
}

TEST_F(Confine, OutputDirNeedNotExist) {
  std::string error;
  EXPECT_EQ(confine(tmp_ / "later/deeper", "a.bin", &error), tmp_ / "later/deeper/a.bin") << error;
  EXPECT_FALSE(fs::exists(tmp_ / "later"));  // a check, never a mkdir
}

TEST_F(Confine, RejectsWhatNormalizeRejects) {
  std::string error;
  EXPECT_FALSE(confine(out_, "../canary/x", &error));
  EXPECT_NE(error.find("'..'"), std::string::npos) << error;
  EXPECT_FALSE(confine(out_, "/etc/passwd", &error));
  EXPECT_FALSE(confine(out_, "", &error));
  EXPECT_TRUE(confine(out_, "a.bin", nullptr));  // a null error pointer is allowed
  EXPECT_FALSE(confine(out_, "..", nullptr));
}

TEST_F(Confine, SymlinkToOutsideIsAnEscape) {
  fs::create_directory_symlink(tmp_ / "canary", out_ / "link");
  std::string error;
  EXPECT_FALSE(confine(out_, "link/x.bin", &error));
  EXPECT_NE(error.find("symbolic link"), std::string::npos) << error;
  EXPECT_FALSE(confine(out_, "link/deeper/x.bin", &error));
}

// One Confiner for many destinations: a folder found inside is not resolved again, but the file itself is
// still looked at (a symlink there is resolved in full), and a folder seen for the first time is resolved.
TEST_F(Confine, ConfinerResolvesEachFolderOnceAndStillCatchesEscapes) {
  fs::create_directories(out_ / "sub");
  Confiner confiner(out_);
  std::string error;
  EXPECT_EQ(confiner.confine("a.bin", &error), out_ / "a.bin") << error;
  EXPECT_EQ(confiner.confine("sub/b.bin", &error), out_ / "sub/b.bin") << error;
  fs::create_symlink(tmp_ / "canary" / "x", out_ / "file-link");
  EXPECT_FALSE(confiner.confine("file-link", &error)) << "a symlinked file in a known folder";
  fs::create_symlink(tmp_ / "canary" / "y", out_ / "sub" / "deep-link");
  EXPECT_FALSE(confiner.confine("sub/deep-link", &error));
  fs::create_directory_symlink(tmp_ / "canary", out_ / "escape");
  EXPECT_FALSE(confiner.confine("escape/c.bin", &error)) << "a new folder is resolved";
  EXPECT_NE(error.find("symbolic link"), std::string::npos) << error;
  fs::create_directory_symlink("sub", out_ / "alias");
  EXPECT_EQ(confiner.confine("alias/d.bin", &error), out_ / "alias/d.bin") << "a symlink that stays inside";
  EXPECT_FALSE(confiner.confine("../x", &error));
}

TEST_F(Confine, RelativeSymlinkUpwardsIsAnEscape) {
  fs::create_directory_symlink("..", out_ / "up");
  std::string error;
  EXPECT_FALSE(confine(out_, "up/canary/x", &error));
  EXPECT_FALSE(confine(out_, "up/x", &error));
}

TEST_F(Confine, DanglingSymlinkToOutsideIsAnEscape) {
  fs::create_directory_symlink(tmp_ / "canary/missing/dir", out_ / "dangling");
  std::string error;
  EXPECT_FALSE(confine(out_, "dangling/x", &error));
  EXPECT_FALSE(fs::exists(tmp_ / "canary/missing"));
}

TEST_F(Confine, ExistingDestinationSymlinkToOutsideIsRefused) {
  fs::create_symlink(tmp_ / "canary/target", out_ / "a.bin");
  std::string error;
  EXPECT_FALSE(confine(out_, "a.bin", &error));
}

TEST_F(Confine, SymlinkToTheOutputDirItselfIsRefused) {
  fs::create_directory_symlink(".", out_ / "self");
  std::string error;
  EXPECT_FALSE(confine(out_, "self", &error));
  // Through it to a file inside is fine.
  EXPECT_EQ(confine(out_, "self/a.bin", &error), out_ / "self/a.bin") << error;
}

TEST_F(Confine, SymlinksThatStayInsideAreFine) {
  fs::create_directories(out_ / "real");
  fs::create_directory_symlink("real", out_ / "alias");
  std::string error;
  EXPECT_EQ(confine(out_, "alias/a.bin", &error), out_ / "alias/a.bin") << error;
}

TEST_F(Confine, OutputDirReachedThroughASymlinkIsFine) {
  fs::create_directory_symlink(out_, tmp_ / "out-link");
  std::string error;
  EXPECT_EQ(confine(tmp_ / "out-link", "a.bin", &error), tmp_ / "out-link/a.bin") << error;
  fs::create_directory_symlink("../out", tmp_ / "canary/back");
  // From out-link, "x" -> ../canary -> back resolves into out again: still inside.
  fs::create_directory_symlink(tmp_ / "canary/back", out_ / "loop-in");
  EXPECT_TRUE(confine(tmp_ / "out-link", "loop-in/a.bin", &error)) << error;
}

TEST_F(Confine, SymlinkLoopIsAnErrorNotAHang) {
  fs::create_symlink("b", out_ / "a");
  fs::create_symlink("a", out_ / "b");
  std::string error;
  EXPECT_FALSE(confine(out_, "a/x", &error));
  EXPECT_NE(error.find("too many levels"), std::string::npos) << error;
}

TEST_F(Confine, FileInTheMiddleIsReported) {
  std::ofstream(out_ / "file.txt") << "x";
  std::string error;
  EXPECT_FALSE(confine(out_, "file.txt/x.bin", &error));
  EXPECT_NE(error.find("not a directory"), std::string::npos) << error;
}

TEST_F(Confine, RelativeOutputDir) {
  std::string error;
  auto got = confine("rel-out", "a.bin", &error);
  ASSERT_TRUE(got) << error;
  EXPECT_TRUE(got->is_absolute());
  EXPECT_EQ(*got, fs::current_path() / "rel-out/a.bin");
}

}  // namespace
}  // namespace fetchd::core
