// SPDX-License-Identifier: Apache-2.0
#include "fetchd/transfer/sink.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/xattr.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "fake_file_system.hpp"
#include "fetchd/transfer/publish_fence.hpp"
#include "test_support.hpp"

namespace fetchd::transfer {
namespace {

using testutil::exists;
using testutil::FakeFileSystem;
using testutil::read_file;
using testutil::write_file;

class SinkTest : public testutil::TempDirTest {};

bool write_str(Sink& sink, const std::string& s) {
  return sink.write(s.data(), s.size());
}

TEST_F(SinkTest, HashesAndCountsKnownVectors) {
  {
    Sink sink(path("empty"));
    ASSERT_TRUE(sink.open()) << sink.error();
    EXPECT_EQ(sink.bytes(), 0u);
    EXPECT_EQ(sink.sha256_hex(), testutil::kSha256Empty);
    ASSERT_TRUE(sink.commit({.fsync = true, .replace = false})) << sink.error();
    EXPECT_EQ(read_file(path("empty")), "");
  }
  {
    Sink sink(path("abc"));
    ASSERT_TRUE(sink.open());
    ASSERT_TRUE(write_str(sink, "a"));
    ASSERT_TRUE(write_str(sink, "bc"));
    EXPECT_EQ(sink.bytes(), 3u);
    EXPECT_EQ(sink.sha256_hex(), testutil::kSha256Abc);
    EXPECT_EQ(sink.sha256_hex(), testutil::kSha256Abc) << "reading the hash must not end the stream";
  }
  {
    // One million 'a' in uneven chunks.
    Sink sink(path("million"));
    ASSERT_TRUE(sink.open());
    const std::string chunk(7919, 'a');
    std::size_t left = 1000000;
    while (left > 0) {
      std::size_t n = std::min(left, chunk.size());
      ASSERT_TRUE(sink.write(chunk.data(), n));
      left -= n;
    }
    EXPECT_EQ(sink.bytes(), 1000000u);
    EXPECT_EQ(sink.sha256_hex(), testutil::kSha256MillionA);
    ASSERT_TRUE(sink.commit({.fsync = false, .replace = false}));
    EXPECT_EQ(read_file(path("million")), std::string(1000000, 'a'));
  }
}

TEST_F(SinkTest, CommitPublishesAtomicallyAndCreatesParents) {
  const std::string dest = path("a/b/c/file.bin");
  Sink sink(dest);
  ASSERT_TRUE(sink.open()) << sink.error();
  EXPECT_EQ(sink.part_path(), dest + ".part");
  struct stat st {};
  ASSERT_EQ(::stat(sink.part_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  ASSERT_TRUE(write_str(sink, "hello"));
  EXPECT_FALSE(exists(dest)) << "the final name must not appear before commit";
  ASSERT_TRUE(sink.commit({.fsync = true, .replace = false})) << sink.error();
  EXPECT_TRUE(sink.committed());
  EXPECT_EQ(read_file(dest), "hello");
  EXPECT_FALSE(exists(dest + ".part"));
  EXPECT_TRUE(sink.discard()) << "discard after commit is a no-op";
  EXPECT_EQ(read_file(dest), "hello");
}

// A fleet node's .part carries its name, and its rename waits on nothing but is refused once its publish
// fence passed (the lease on the job may be another node's now); a sink that is not fenced publishes
// regardless.
TEST_F(SinkTest, AFencedCommitIsRefusedOnceThePublishFencePassed) {
  struct ResetFence {
    ~ResetFence() { set_publish_deadline(std::chrono::steady_clock::time_point::max()); }
  } reset;
  const std::string dest = path("fenced.bin");
  Sink sink(dest, posix_file_system(), false, "node-a");
  ASSERT_TRUE(sink.open()) << sink.error();
  EXPECT_EQ(sink.part_path(), dest + ".node-a.part");
  ASSERT_TRUE(write_str(sink, "late"));
  set_publish_deadline(std::chrono::steady_clock::now() - std::chrono::seconds(1));
  EXPECT_FALSE(sink.commit({.fsync = false, .replace = true, .fenced = true}));
  EXPECT_EQ(sink.error_code(), ENOLCK);
  EXPECT_NE(sink.error().find("lease"), std::string::npos) << sink.error();
  EXPECT_FALSE(exists(dest));
  EXPECT_TRUE(sink.discard());
  EXPECT_FALSE(exists(dest + ".node-a.part"));

  Sink unfenced(dest);
  ASSERT_TRUE(unfenced.open());
  ASSERT_TRUE(write_str(unfenced, "x"));
  EXPECT_TRUE(unfenced.commit({.fsync = false, .replace = true})) << unfenced.error();

  set_publish_deadline(std::chrono::steady_clock::now() + std::chrono::hours(1));
  Sink in_time(dest, posix_file_system(), false, "node-a");
  ASSERT_TRUE(in_time.open());
  ASSERT_TRUE(write_str(in_time, "in time"));
  EXPECT_TRUE(in_time.commit({.fsync = false, .replace = true, .fenced = true})) << in_time.error();
  EXPECT_EQ(read_file(dest), "in time");
}

TEST_F(SinkTest, DiscardLeavesNothing) {
  const std::string dest = path("d.bin");
  Sink sink(dest);
  ASSERT_TRUE(sink.open());
  ASSERT_TRUE(write_str(sink, "partial"));
  EXPECT_TRUE(exists(dest + ".part"));
  EXPECT_TRUE(sink.discard());
  EXPECT_FALSE(exists(dest + ".part"));
  EXPECT_FALSE(exists(dest));
}

TEST_F(SinkTest, DestructorKeepsThePartForResume) {
  const std::string dest = path("keep.bin");
  {
    Sink sink(dest);
    ASSERT_TRUE(sink.open());
    ASSERT_TRUE(write_str(sink, "so far"));
  }
  EXPECT_EQ(read_file(dest + ".part"), "so far");
  EXPECT_FALSE(exists(dest));
}

TEST_F(SinkTest, ShortWritesAndEintrAreRetried) {
  FakeFileSystem fs;
  fs.max_write = 7;
  fs.eintr_before_each_write = true;
  Sink sink(path("short"), fs);
  ASSERT_TRUE(sink.open());
  ASSERT_TRUE(write_str(sink, "abc"));
  std::string big(10000, 'x');
  ASSERT_TRUE(write_str(sink, big)) << sink.error();
  ASSERT_TRUE(sink.commit({.fsync = true, .replace = false}));
  EXPECT_EQ(read_file(path("short")), "abc" + big);
}

TEST_F(SinkTest, EveryDescriptorIsCloexecAndClosed) {
  FakeFileSystem fs;
  {
    Sink sink(path("x/y.bin"), fs);
    ASSERT_TRUE(sink.open());
    ASSERT_TRUE(write_str(sink, "data"));
    ASSERT_TRUE(sink.commit({.fsync = true, .replace = false}));
  }
  ASSERT_FALSE(fs.open_flags.empty());
  for (int flags : fs.open_flags) EXPECT_NE(flags & O_CLOEXEC, 0) << "flags " << flags;
  EXPECT_GE(fs.opened, 3) << "the .part, its directory and the parent of the created directory";
  EXPECT_EQ(fs.opened, fs.closed);
}

TEST_F(SinkTest, WriteEioFailsAndLeavesNoFile) {
  FakeFileSystem fs;
  fs.write_errno = EIO;
  fs.fail_write_after = 5;
  const std::string dest = path("eio.bin");
  Sink sink(dest, fs);
  ASSERT_TRUE(sink.open());
  EXPECT_FALSE(write_str(sink, "0123456789"));
  EXPECT_EQ(sink.error_code(), EIO);
  EXPECT_NE(sink.error().find("Input/output error"), std::string::npos) << sink.error();
  EXPECT_NE(sink.error().find(dest + ".part"), std::string::npos) << sink.error();
  EXPECT_FALSE(write_str(sink, "x")) << "the first error sticks";
  EXPECT_FALSE(sink.commit({.fsync = true, .replace = false}));
  EXPECT_EQ(sink.error_code(), EIO) << "the first error is the one reported";
  EXPECT_FALSE(exists(dest));
  sink.discard();
  EXPECT_FALSE(exists(dest + ".part"));
  EXPECT_EQ(fs.opened, fs.closed);
}

TEST_F(SinkTest, DiskFullFailsWithItsText) {
  FakeFileSystem fs;
  fs.write_errno = ENOSPC;
  const std::string dest = path("full.bin");
  Sink sink(dest, fs);
  ASSERT_TRUE(sink.open());
  EXPECT_FALSE(write_str(sink, "data"));
  EXPECT_EQ(sink.error_code(), ENOSPC);
  EXPECT_EQ(sink.error(), "write " + dest + ".part: No space left on device");
  sink.discard();
  EXPECT_FALSE(exists(dest));
  EXPECT_FALSE(exists(dest + ".part"));
}

TEST_F(SinkTest, FsyncEioFailsCommitAndNoFinalFile) {
  FakeFileSystem fs;
  fs.fsync_file_errno = EIO;
  const std::string dest = path("fsync.bin");
  Sink sink(dest, fs);
  ASSERT_TRUE(sink.open());
  ASSERT_TRUE(write_str(sink, "data"));
  EXPECT_FALSE(sink.commit({.fsync = true, .replace = false}));
  EXPECT_EQ(sink.error_code(), EIO);
  EXPECT_NE(sink.error().find("fsync " + dest + ".part"), std::string::npos) << sink.error();
  EXPECT_FALSE(exists(dest));
  sink.discard();
  EXPECT_FALSE(exists(dest + ".part"));
  EXPECT_EQ(fs.opened, fs.closed);
}

TEST_F(SinkTest, DirectoryFsyncEioRollsTheRenameBack) {
  FakeFileSystem fs;
  fs.fsync_dir_errno = EIO;
  const std::string dest = path("dirsync.bin");
  Sink sink(dest, fs);
  ASSERT_TRUE(sink.open());
  ASSERT_TRUE(write_str(sink, "data"));
  EXPECT_FALSE(sink.commit({.fsync = true, .replace = false}));
  EXPECT_EQ(sink.error_code(), EIO);
  EXPECT_NE(sink.error().find("fsync directory"), std::string::npos) << sink.error();
  EXPECT_FALSE(exists(dest));
  sink.discard();
  EXPECT_FALSE(exists(dest + ".part"));
  EXPECT_EQ(fs.opened, fs.closed);
}

TEST_F(SinkTest, NoFsyncSkipsEveryFsync) {
  FakeFileSystem fs;
  fs.fsync_file_errno = EIO;
  fs.fsync_dir_errno = EIO;
  Sink sink(path("nofsync.bin"), fs);
  ASSERT_TRUE(sink.open());
  ASSERT_TRUE(write_str(sink, "data"));
  ASSERT_TRUE(sink.commit({.fsync = false, .replace = false})) << sink.error();
  EXPECT_EQ(fs.fsyncs, 0);
  EXPECT_EQ(read_file(path("nofsync.bin")), "data");
}

TEST_F(SinkTest, NoReplaceRefusesToClobber) {
  const std::string dest = path("exists.bin");
  Sink sink(dest);
  ASSERT_TRUE(sink.open());
  ASSERT_TRUE(write_str(sink, "new"));
  write_file(dest, "old");  // appears while the download runs
  EXPECT_FALSE(sink.commit({.fsync = true, .replace = false}));
  EXPECT_EQ(sink.error_code(), EEXIST);
  EXPECT_EQ(read_file(dest), "old");
  sink.discard();
  EXPECT_FALSE(exists(dest + ".part"));
  EXPECT_EQ(read_file(dest), "old");
}

TEST_F(SinkTest, NoReplaceWithoutRenameSupportFallsBackToLink) {
  FakeFileSystem fs;
  fs.rename_noreplace_unsupported = true;
  const std::string taken = path("taken.bin");
  write_file(taken, "old");
  Sink refused(taken, fs);
  ASSERT_TRUE(refused.open());
  ASSERT_TRUE(write_str(refused, "new"));
  EXPECT_FALSE(refused.commit({.fsync = true, .replace = false}));
  EXPECT_EQ(refused.error_code(), EEXIST);
  EXPECT_EQ(read_file(taken), "old");

  const std::string free_name = path("free.bin");
  Sink published(free_name, fs);
  ASSERT_TRUE(published.open());
  ASSERT_TRUE(write_str(published, "new"));
  ASSERT_TRUE(published.commit({.fsync = true, .replace = false})) << published.error();
  EXPECT_EQ(read_file(free_name), "new");
  EXPECT_FALSE(exists(free_name + ".part"));
}

TEST_F(SinkTest, ReplaceOverwrites) {
  const std::string dest = path("replace.bin");
  write_file(dest, "old");
  Sink sink(dest);
  ASSERT_TRUE(sink.open());
  ASSERT_TRUE(write_str(sink, "new"));
  ASSERT_TRUE(sink.commit({.fsync = true, .replace = true})) << sink.error();
  EXPECT_EQ(read_file(dest), "new");
}

TEST_F(SinkTest, NeverWritesThroughASymlinkedPart) {
  const std::string canary = path("canary");
  write_file(canary, "canary");
  const std::string dest = path("link.bin");
  ASSERT_EQ(::symlink(canary.c_str(), (dest + ".part").c_str()), 0);
  Sink sink(dest);
  EXPECT_FALSE(sink.open());
  EXPECT_EQ(sink.error_code(), ELOOP);
  EXPECT_EQ(sink.error(), dest + ".part is a symbolic link; fetchd never follows one: remove it");
  EXPECT_TRUE(sink.discard());
  EXPECT_EQ(read_file(canary), "canary");
  EXPECT_TRUE(exists(dest + ".part")) << "a .part this sink did not create is not its to remove";
}

TEST_F(SinkTest, LongNamesGetABoundedDeterministicPartName) {
  EXPECT_EQ(part_path_for("/d/a.bin"), "/d/a.bin.part");
  EXPECT_EQ(part_path_for(std::string(250, 'n')), std::string(250, 'n') + ".part");
  const std::string long_a = std::string(254, 'n') + "a";
  const std::string long_b = std::string(254, 'n') + "b";
  const std::string part_a = part_path_for(path(long_a));
  EXPECT_EQ(part_a, part_path_for(path(long_a))) << "a later attempt must find the same .part";
  EXPECT_NE(part_a, part_path_for(path(long_b)));
  const std::string base = part_a.substr(part_a.rfind('/') + 1);
  EXPECT_LE(base.size(), 255u);
  EXPECT_EQ(base.substr(base.size() - 5), ".part");
  // Multi-byte UTF-8 characters are never cut in half.
  std::string accents;
  while (accents.size() < 254) accents += "\xc3\xa9";  // é
  const std::string part_u = part_path_for(accents);
  const std::string kept = part_u.substr(0, part_u.size() - 22);  // minus "-<16 hex>.part"
  EXPECT_EQ(kept.size() % 2, 0u) << part_u;

  Sink sink(path(long_a));
  ASSERT_TRUE(sink.open()) << sink.error();
  ASSERT_TRUE(write_str(sink, "long"));
  ASSERT_TRUE(sink.commit({.fsync = true, .replace = false})) << sink.error();
  EXPECT_EQ(read_file(path(long_a)), "long");
  EXPECT_FALSE(exists(part_a));
}

TEST_F(SinkTest, DirectoryCreationFailureNamesTheDirectory) {
  FakeFileSystem fs;
  fs.mkdir_errno = EACCES;
  Sink sink(path("sub/dir/f.bin"), fs);
  EXPECT_FALSE(sink.open());
  EXPECT_EQ(sink.error_code(), EACCES);
  EXPECT_NE(sink.error().find("Permission denied"), std::string::npos) << sink.error();
  EXPECT_NE(sink.error().find(path("sub")), std::string::npos) << sink.error();
}


// The resume record: a later Sink for the same identity keeps the bytes and hashes them again, so the final
// hash covers the whole file; any other identity, a missing record or a file system without xattrs starts over.
TEST_F(SinkTest, ResumeKeepsBytesOnlyForTheSameIdentityAndValidator) {
  const std::string dest = path("r.bin");
  {
    Sink sink(dest);
    ASSERT_TRUE(sink.open("id-1"));
    EXPECT_EQ(sink.resumed_from(), 0u);
    ASSERT_TRUE(write_str(sink, "hello "));
    ASSERT_TRUE(sink.record_resume("\"etag-1\"", 11));
    EXPECT_TRUE(sink.resumable());
    sink.keep();
  }
  {
    Sink sink(dest);
    ASSERT_TRUE(sink.open("id-1"));
    EXPECT_EQ(sink.resumed_from(), 6u);
    EXPECT_EQ(sink.resume_validator(), "\"etag-1\"");
    EXPECT_EQ(sink.resume_total(), std::optional<std::uint64_t>(11));
    ASSERT_TRUE(write_str(sink, "world"));
    EXPECT_EQ(sink.bytes(), 11u);
    // sha256("hello world")
    EXPECT_EQ(sink.sha256_hex(), "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
    sink.keep();
  }
  {
    Sink other(dest);
    ASSERT_TRUE(other.open("id-2"));  // another URL now writes this dest: never spliced
    EXPECT_EQ(other.resumed_from(), 0u);
    EXPECT_EQ(other.bytes(), 0u);
    ASSERT_TRUE(other.commit({.fsync = false}));
  }
  EXPECT_EQ(read_file(dest), "");
}

TEST_F(SinkTest, RestartTruncatesAndForgetsTheRecord) {
  const std::string dest = path("t.bin");
  {
    Sink sink(dest);
    ASSERT_TRUE(sink.open("id"));
    ASSERT_TRUE(write_str(sink, "stale bytes"));
    ASSERT_TRUE(sink.record_resume("Wed, 21 Oct 2015 07:28:00 GMT", std::nullopt));
    sink.keep();
  }
  Sink sink(dest);
  ASSERT_TRUE(sink.open("id"));
  EXPECT_EQ(sink.resumed_from(), 11u);
  ASSERT_TRUE(sink.restart());
  EXPECT_EQ(sink.resumed_from(), 0u);
  ASSERT_TRUE(write_str(sink, "new"));
  ASSERT_TRUE(sink.commit({.fsync = false}));
  EXPECT_EQ(read_file(dest), "new");
  char buf[8];
  EXPECT_LT(::getxattr(dest.c_str(), "user.fetchd.resume", buf, sizeof buf), 0);  // the published file has none
}

TEST_F(SinkTest, NoValidatorOrNoXattrsMeansNoResume) {
  const std::string dest = path("n.bin");
  {
    Sink sink(dest);
    ASSERT_TRUE(sink.open("id"));
    ASSERT_TRUE(write_str(sink, "abc"));
    EXPECT_FALSE(sink.record_resume("", 3));  // weak ETag only: nothing to put in If-Range
    EXPECT_FALSE(sink.resumable());
    sink.keep();
    EXPECT_FALSE(exists(dest + ".part")) << "a .part nobody can resume is not kept";
  }
  {
    testutil::FakeFileSystem none;
    none.xattr_unsupported = true;
    Sink fresh(dest, none);
    ASSERT_TRUE(fresh.open("id"));
    ASSERT_TRUE(write_str(fresh, "abc"));
    fresh.record_resume("\"e\"", 3);
    fresh.keep();
    EXPECT_FALSE(exists(dest + ".part")) << "without extended attributes there is no record to resume by";
    Sink again(dest, none);
    ASSERT_TRUE(again.open("id"));
    EXPECT_EQ(again.resumed_from(), 0u);
    again.discard();
  }
}

TEST_F(SinkTest, Sha512WhenAsked) {
  Sink sink(path("s.bin"), posix_file_system(), /*sha512=*/true);
  ASSERT_TRUE(sink.open());
  ASSERT_TRUE(write_str(sink, "abc"));
  EXPECT_EQ(sink.sha512_hex(),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd"
            "454d4423643ce80e2a9ac94fa54ca49f");
  sink.discard();
  Sink plain(path("p.bin"));
  EXPECT_EQ(plain.sha512_hex(), "");
}

}  // namespace
}  // namespace fetchd::transfer

namespace fetchd::transfer {
namespace {

// A .part planted as a hard link to another file (or as a FIFO) is never written through, truncated or removed.
TEST_F(SinkTest, PlantedHardLinkOrFifoPartIsRefusedUntouched) {
  const std::string canary = path("canary");
  testutil::write_file(canary, "canary");
  const std::string dest = path("linked.bin");
  ASSERT_EQ(::link(canary.c_str(), (dest + ".part").c_str()), 0);
  for (std::string_view identity : {"", "0123"}) {
    Sink sink(dest);
    EXPECT_FALSE(sink.open(identity));
    EXPECT_EQ(sink.error_code(), EEXIST);
    EXPECT_NE(sink.error().find("hard link or not a regular file"), std::string::npos) << sink.error();
    EXPECT_TRUE(sink.discard());
  }
  EXPECT_EQ(testutil::read_file(canary), "canary");
  EXPECT_TRUE(testutil::exists(dest + ".part"));

  const std::string fifo_dest = path("fifo.bin");
  ASSERT_EQ(::mkfifo((fifo_dest + ".part").c_str(), 0600), 0);
  Sink sink(fifo_dest);
  EXPECT_FALSE(sink.open());  // and it returned: the open did not wait for a reader
  EXPECT_EQ(sink.error_code(), EEXIST);
  EXPECT_FALSE(testutil::exists(fifo_dest));
}

// Only the inode this sink wrote and hashed is ever published: a .part replaced by another file, swapped for a
// symlink or removed mid-transfer fails the commit (ESTALE), publishes nothing, and the stranger's file is left.
TEST_F(SinkTest, CommitRefusesAPartReplacedMeanwhile) {
  const std::string canary = path("canary");
  write_file(canary, "canary");
  for (const std::string how : {"file", "symlink", "unlink"}) {
    SCOPED_TRACE(how);
    const std::string dest = path("swapped-" + how + ".bin");
    Sink sink(dest);
    ASSERT_TRUE(sink.open("id"));
    ASSERT_TRUE(write_str(sink, "the real bytes"));
    ASSERT_EQ(::unlink(sink.part_path().c_str()), 0);
    if (how == "file") write_file(sink.part_path(), "planted");
    if (how == "symlink") {
      ASSERT_EQ(::symlink(canary.c_str(), sink.part_path().c_str()), 0);
    }
    EXPECT_FALSE(sink.commit({.fsync = true, .replace = false}));
    EXPECT_EQ(sink.error_code(), ESTALE);
    EXPECT_NE(sink.error().find("was replaced or removed during the download"), std::string::npos) << sink.error();
    EXPECT_FALSE(exists(dest)) << "an unchecked file was published";
    EXPECT_TRUE(sink.discard());
    if (how == "file") {
      EXPECT_EQ(read_file(sink.part_path()), "planted") << "not ours to remove";
    }
    if (how == "symlink") {
      struct stat st {};
      EXPECT_EQ(::lstat(sink.part_path().c_str(), &st), 0);
    }
  }
  EXPECT_EQ(read_file(canary), "canary");
}

// A folder of the destination swapped for a symlink after open() cannot redirect the publish: the sink works
// on the folder it opened.
TEST_F(SinkTest, AFolderSwappedForASymlinkCannotRedirectThePublish) {
  const std::string outside = path("outside");
  ASSERT_EQ(::mkdir(outside.c_str(), 0755), 0);
  const std::string dest = path("sub/f.bin");
  Sink sink(dest);
  ASSERT_TRUE(sink.open());
  ASSERT_TRUE(write_str(sink, "bytes"));
  ASSERT_EQ(::rename(path("sub").c_str(), path("moved").c_str()), 0);
  ASSERT_EQ(::symlink(outside.c_str(), path("sub").c_str()), 0);
  ASSERT_TRUE(sink.commit({.fsync = true, .replace = false})) << sink.error();
  EXPECT_FALSE(exists(outside + "/f.bin")) << "published through the symlink";
  EXPECT_EQ(read_file(path("moved/f.bin")), "bytes");
}

// The resume record reaches the disk only when it can save something: at once for a large declared size,
// after kResumeRecordAfter bytes otherwise, and when the attempt keeps the .part.
TEST_F(SinkTest, ResumeRecordIsWrittenOnlyWhenItCouldMatter) {
  auto has_record = [](const std::string& file) {
    char buf[8];
    return ::getxattr(file.c_str(), "user.fetchd.resume", buf, 0) > 0 || errno == ERANGE;
  };
  {
    Sink small(path("small.bin"));
    ASSERT_TRUE(small.open("id"));
    ASSERT_TRUE(small.record_resume("\"e\"", 4096));
    ASSERT_TRUE(write_str(small, std::string(4096, 'x')));
    EXPECT_FALSE(has_record(small.part_path())) << "a small file pays for no record";
    ASSERT_TRUE(small.commit({.fsync = false}));
    EXPECT_FALSE(has_record(path("small.bin")));
  }
  {
    Sink large(path("large.bin"));
    ASSERT_TRUE(large.open("id"));
    ASSERT_TRUE(large.record_resume("\"e\"", 100 * kResumeRecordAfter));
    EXPECT_TRUE(has_record(large.part_path())) << "a crash at any point of a large file can resume";
    large.discard();
  }
  {
    Sink unknown(path("chunked.bin"));
    ASSERT_TRUE(unknown.open("id"));
    ASSERT_TRUE(unknown.record_resume("\"e\"", std::nullopt));
    ASSERT_TRUE(write_str(unknown, std::string(kResumeRecordAfter, 'x')));
    EXPECT_FALSE(has_record(unknown.part_path()));
    ASSERT_TRUE(write_str(unknown, "y"));
    EXPECT_TRUE(has_record(unknown.part_path()));
    unknown.discard();
  }
  {
    Sink kept(path("kept.bin"));
    ASSERT_TRUE(kept.open("id"));
    ASSERT_TRUE(kept.record_resume("\"e\"", 8));
    ASSERT_TRUE(write_str(kept, "half"));
    kept.keep();
    EXPECT_TRUE(has_record(kept.part_path()));
  }
  Sink again(path("kept.bin"));
  ASSERT_TRUE(again.open("id"));
  EXPECT_EQ(again.resumed_from(), 4u);
  again.discard();
}

TEST_F(SinkTest, PublishRecordNamesTheJobAndTheBytes) {
  const std::string dest = path("p.bin");
  Sink sink(dest);
  ASSERT_TRUE(sink.open());
  ASSERT_TRUE(write_str(sink, "hello world"));
  ASSERT_TRUE(sink.commit({.fsync = false, .replace = false, .publish_job = 0x0102030405060708ULL}));
  auto record = read_publish_record(posix_file_system(), dest);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->job, 0x0102030405060708ULL);
  EXPECT_EQ(record->sha256, "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
  EXPECT_EQ(file_sha256_hex(posix_file_system(), dest), record->sha256);

  Sink plain(path("plain.bin"));
  ASSERT_TRUE(plain.open());
  ASSERT_TRUE(plain.commit({.fsync = false}));
  EXPECT_FALSE(read_publish_record(posix_file_system(), path("plain.bin")).has_value());
  EXPECT_FALSE(read_publish_record(posix_file_system(), path("missing.bin")).has_value());
  ASSERT_EQ(::symlink(dest.c_str(), path("link.bin").c_str()), 0);
  EXPECT_FALSE(read_publish_record(posix_file_system(), path("link.bin")).has_value()) << "never followed";
}

// Sinks writing into one folder at the same time share one descriptor of it; it is closed with the last one.
TEST_F(SinkTest, SinksInOneFolderShareItsDescriptor) {
  FakeFileSystem fs;
  auto directory_opens = [&fs] {
    int n = 0;
    for (int flags : fs.open_flags) n += (flags & O_DIRECTORY) != 0;
    return n;
  };
  {
    Sink a(path("shared/a.bin"), fs);
    Sink b(path("shared/b.bin"), fs);
    ASSERT_TRUE(a.open()) << a.error();
    ASSERT_TRUE(b.open()) << b.error();
    EXPECT_EQ(directory_opens(), 2) << "the first open finds no folder, creates it and opens it; the second shares it";
    ASSERT_TRUE(write_str(a, "a"));
    ASSERT_TRUE(write_str(b, "b"));
    ASSERT_TRUE(a.commit({.fsync = true, .replace = false})) << a.error();
    ASSERT_TRUE(b.commit({.fsync = true, .replace = false})) << b.error();
  }
  EXPECT_EQ(fs.opened, fs.closed) << "a descriptor leaked";
  EXPECT_EQ(read_file(path("shared/a.bin")), "a");
  EXPECT_EQ(read_file(path("shared/b.bin")), "b");
  const int before = directory_opens();  // a's commit also opened the parent of the folder it created, to fsync it
  Sink c(path("shared/c.bin"), fs);
  ASSERT_TRUE(c.open());
  EXPECT_EQ(directory_opens(), before + 1) << "nobody held the folder open any more: opened again";
  c.discard();
}

}  // namespace
}  // namespace fetchd::transfer
