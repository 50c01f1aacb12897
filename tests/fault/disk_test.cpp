// SPDX-License-Identifier: Apache-2.0
// Fault cases 21-24 (disk and file system), and a .part replaced behind fetchd's back. A full disk and a read-only directory are real: small tmpfs
// mounts (the tests run as root; without the privilege to mount they skip with the reason). ENOSPC and an
// fsync EIO are also injected through the Sink's FileSystem (tests/transfer/fake_file_system.hpp), which only
// a Transfer takes, so those run once, not per strategy.

#include <fmt/format.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <set>

#include "fake_file_system.hpp"
#include "fault_support.hpp"
#include "fetchd/origin/body.hpp"
#include "fetchd/transfer/transfer.hpp"

namespace fetchd::fault {
namespace {

using core::ErrorCategory;
using core::OnExists;

// A tmpfs mounted at `where` for the test's lifetime (lazily unmounted at the end). ok() is false, with
// error() saying why, when the mount was refused (no CAP_SYS_ADMIN, a sandbox).
class TmpfsMount {
 public:
  TmpfsMount(const fs::path& where, const std::string& size, bool read_only = false) : where_(where) {
    fs::create_directories(where);
    const std::string data = "size=" + size + ",mode=0755";
    if (::mount("tmpfs", where.c_str(), "tmpfs", read_only ? MS_RDONLY : 0, data.c_str()) == 0) {
      mounted_ = true;
    } else {
      error_ = fmt::format("mount -t tmpfs -o {}{} {}: {}", read_only ? "ro," : "", data, where.string(),
                           std::strerror(errno));
    }
  }
  ~TmpfsMount() {
    if (mounted_) ::umount2(where_.c_str(), MNT_DETACH);
  }
  bool ok() const { return mounted_; }
  const std::string& error() const { return error_; }

 private:
  fs::path where_;
  bool mounted_ = false;
  std::string error_;
};

class DiskFault : public FaultTest {};

TEST_P(DiskFault, Case21_DiskFullFailsTheJobAndTheNextJobStillRuns) {
  TmpfsMount full(out("full"), "1m");
  if (!full.ok()) GTEST_SKIP() << "cannot mount a small tmpfs: " << full.error();
  config_.defaults.retry.retries = 2;  // a full disk is not a transient network fault
  Runner r(config_);
  core::JobId small = 0;
  // Once the big job failed (its .part removed), a small one on the same file system must work.
  r.on_finished = [&](Runner& run, const scheduler::JobRecord& job) {
    if (small == 0 && job.request.dest == out("full/big.bin").string()) {
      run.add_later(request("/bytes/10000/small.bin?seed=2", "full/small.bin"), 0ms,
                    [&](core::JobId id) { small = id; });
    }
  };
  auto big = r.add(request("/bytes/3MiB/big.bin?seed=1", "full/big.bin"));
  ASSERT_TRUE(r.run());
  EXPECT_TRUE(failed_with(r.outcome(big), ErrorCategory::kFilesystem,
                          {"No space left on device", "big.bin.part"}, 1));
  expect_no_file("full/big.bin");
  ASSERT_NE(small, 0u);
  ASSERT_TRUE(done_after(r.outcome(small), 1));
  EXPECT_EQ(file_sha256(out("full/small.bin")), origin::body_sha256_hex(10000, 2));
}

TEST_P(DiskFault, Case23_ReadOnlyDestinationIsAClearErrorWithoutRetries) {
  // Root ignores permission bits (chmod 0555 would not stop it): a read-only mount does.
  TmpfsMount ro(out("ro"), "64k", /*read_only=*/true);
  if (!ro.ok()) GTEST_SKIP() << "cannot mount a read-only tmpfs: " << ro.error();
  config_.defaults.retry.retries = 3;
  Runner r(config_);
  auto in_dir = r.add(request("/bytes/1000/x.bin", "ro/x.bin"));
  auto in_subdir = r.add(request("/bytes/1000/y.bin", "ro/sub/y.bin"));
  ASSERT_TRUE(r.run());
  EXPECT_TRUE(failed_with(r.outcome(in_dir), ErrorCategory::kFilesystem,
                          {"Read-only file system", out("ro/x.bin").string()}, 1));
  EXPECT_TRUE(failed_with(r.outcome(in_subdir), ErrorCategory::kFilesystem,
                          {"Read-only file system", out("ro/sub").string()}, 1));
  EXPECT_EQ(requests_.count("/bytes/1000/x.bin") + requests_.count("/bytes/1000/y.bin"), 0u)
      << "nothing is downloaded when the .part cannot be opened";
}

TEST_P(DiskFault, Case24_OnExistsPoliciesKeepOrReplaceTheExistingBytes) {
  for (const char* name : {"skip.bin", "fail.bin", "overwrite.bin"}) std::ofstream(out(name)) << "original";
  Runner r(config_);
  auto with = [&](const std::string& path, const std::string& dest, OnExists policy) {
    auto req = request(path, dest);
    req.on_exists = policy;
    return r.add(req);
  };
  auto skip = with("/bytes/100/skip.bin?seed=1", "skip.bin", OnExists::kSkip);
  auto fail = with("/bytes/100/fail.bin?seed=1", "fail.bin", OnExists::kFail);
  auto overwrite = with("/bytes/100/overwrite.bin?seed=1", "overwrite.bin", OnExists::kOverwrite);
  ASSERT_TRUE(r.run());
  ASSERT_TRUE(done_after(r.outcome(skip), 1));
  EXPECT_TRUE(r.outcome(skip).last.skipped);
  EXPECT_TRUE(failed_with(r.outcome(fail), ErrorCategory::kDestExists, {"exists", "on_exists=fail"}, 1));
  ASSERT_TRUE(done_after(r.outcome(overwrite), 1));
  EXPECT_EQ(read_file(out("skip.bin")), "original");
  EXPECT_EQ(read_file(out("fail.bin")), "original");
  EXPECT_EQ(file_sha256(out("overwrite.bin")), origin::body_sha256_hex(100, 1));
  EXPECT_EQ(requests_.count("/bytes/100/skip.bin"), 0u);
  EXPECT_EQ(requests_.count("/bytes/100/fail.bin"), 0u);
  EXPECT_EQ(count_regular_files(out()), 3u) << list_tree(out());
}

TEST_P(DiskFault, Case24_DestinationAppearingDuringTheDownloadIsKept) {
  Runner r(config_);
  auto add = [&](const std::string& name, OnExists policy) {
    auto req = request(fmt::format("/bytes/5000/{}?seed=1&latency=300ms", name), name);
    req.on_exists = policy;
    return r.add(req);
  };
  auto skip = add("late-skip.bin", OnExists::kSkip);
  auto fail = add("late-fail.bin", OnExists::kFail);
  bool planted = false;
  // Once both requests are at the origin (past the on_exists check), someone else writes the files.
  r.on_tick = [&](Runner&) {
    if (planted || requests_.count("/bytes/5000/late-") < 2) return;
    planted = true;
    std::ofstream(out("late-skip.bin")) << "theirs";
    std::ofstream(out("late-fail.bin")) << "theirs";
  };
  ASSERT_TRUE(r.run());
  ASSERT_TRUE(planted);
  ASSERT_TRUE(done_after(r.outcome(skip), 1));
  EXPECT_TRUE(r.outcome(skip).last.skipped);
  EXPECT_TRUE(failed_with(r.outcome(fail), ErrorCategory::kDestExists, {"appeared meanwhile"}, 1));
  EXPECT_EQ(read_file(out("late-skip.bin")), "theirs");
  EXPECT_EQ(read_file(out("late-fail.bin")), "theirs");
  EXPECT_EQ(count_regular_files(out()), 2u) << "no .part left:\n" << list_tree(out());
}

// The .part is replaced by another file, swapped for a symlink pointing outside the output folder, or removed
// while the body still arrives. fetchd publishes only the inode it wrote and hashed: each job fails naming the
// .part, nothing appears under its name, and the stranger's file and the canary are left as they are.
TEST_P(DiskFault, PartReplacedMidTransferIsNeverPublished) {
  constexpr std::uint64_t kBody = 200000;
  const fs::path canary = dir_ / "canary-file";
  std::ofstream(canary) << "canary";
  Runner r(config_);
  std::map<std::string, core::JobId> ids;
  for (const std::string how : {"file", "symlink", "unlink"}) {
    const std::string name = "swap-" + how + ".bin";
    auto req = request(fmt::format("/bytes/{}/{}?seed=21&trickle=20KiB/20ms", kBody, name), name);
    req.sha256 = origin::body_sha256_hex(kBody, 21);
    ids[how] = r.add(req);
  }
  std::set<std::string> done;
  r.on_tick = [&](Runner&) {
    for (const auto& [how, id] : ids) {
      const std::string p = part("swap-" + how + ".bin");
      std::error_code ec;
      if (done.count(how) != 0 || fs::file_size(p, ec) < 40000 || ec) continue;
      done.insert(how);
      fs::remove(p);
      if (how == "file") std::ofstream(p) << "planted";
      if (how == "symlink") fs::create_symlink(canary, p);
    }
  };
  ASSERT_TRUE(r.run());
  ASSERT_EQ(done.size(), 3u) << "the .part files were never seen";
  for (const auto& [how, id] : ids) {
    SCOPED_TRACE(how);
    EXPECT_TRUE(failed_with(r.outcome(id), ErrorCategory::kFilesystem, {"was replaced or removed", ".part"}, 1));
    EXPECT_FALSE(exists_nofollow(out("swap-" + how + ".bin"))) << "an unchecked file was published";
  }
  EXPECT_EQ(read_file(part("swap-file.bin")), "planted");
  EXPECT_TRUE(fs::is_symlink(part("swap-symlink.bin")));
  EXPECT_FALSE(exists_nofollow(part("swap-unlink.bin")));
  EXPECT_EQ(read_file(canary), "canary");
}

INSTANTIATE_TEST_SUITE_P(AllStrategies, DiskFault, ::testing::ValuesIn(all_strategies()), param_name);

// ------------------------------------------------------------- injected through the Sink's FileSystem

class InjectedDiskFault : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / fmt::format("fetchd-fault-fs-{:x}", std::random_device{}());
    fs::create_directories(dir_);
    baseline_ = count_fds();
  }
  void TearDown() override {
    EXPECT_TRUE(origin_.wait_for([](const origin::OriginStats& s) { return s.connections == 0; }, 10s));
    EXPECT_TRUE(fds_back(baseline_)) << describe_fds();
    fs::remove_all(dir_);
  }

  core::TransferResult run(transfer::testutil::FakeFileSystem& fake, const std::string& path, bool fsync) {
    core::TransferRequest req;
    req.id = 1;
    req.url = origin_.url(path);
    req.dest = (dir_ / "f.bin").string();
    req.fsync = fsync;
    req.on_exists = OnExists::kOverwrite;
    req.options.timeout = 20s;
    core::TransferResult result;
    {
      transfer::Transfer t(req, &fake);
      result = transfer::perform_blocking(t);
    }
    EXPECT_EQ(fake.opened, fake.closed) << "a descriptor opened through the FileSystem leaked";
    return result;
  }

  void expect_nothing() {
    EXPECT_FALSE(exists_nofollow(dir_ / "f.bin")) << list_tree(dir_);
    EXPECT_FALSE(exists_nofollow(dir_ / "f.bin.part")) << list_tree(dir_);
  }

  origin::OriginThread origin_{origin::OriginOptions{}};
  fs::path dir_;
  std::size_t baseline_ = 0;
};

TEST_F(InjectedDiskFault, Case21_EnospcMidBodyFailsWithTheReason) {
  transfer::testutil::FakeFileSystem fake;
  fake.write_errno = ENOSPC;
  fake.fail_write_after = 100000;
  auto r = run(fake, "/bytes/1MiB/f.bin?seed=1", false);
  EXPECT_EQ(r.category, ErrorCategory::kFilesystem) << r.message;
  EXPECT_FALSE(r.retryable);
  EXPECT_NE(r.message.find("No space left on device"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("f.bin.part"), std::string::npos) << r.message;
  EXPECT_LE(fake.written, 100000u);
  expect_nothing();
}

TEST_F(InjectedDiskFault, Case22_FsyncEioNeverPublishes) {
  transfer::testutil::FakeFileSystem fake;
  fake.fsync_file_errno = EIO;
  auto r = run(fake, "/bytes/50000/f.bin?seed=1", true);
  EXPECT_EQ(r.category, ErrorCategory::kFilesystem) << r.message;
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.message.find("fsync"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("Input/output error"), std::string::npos) << r.message;
  EXPECT_TRUE(r.sha256.empty()) << "a failed publish reports no published hash";
  expect_nothing();
}

TEST_F(InjectedDiskFault, Case22_DirectoryFsyncEioRollsTheRenameBack) {
  transfer::testutil::FakeFileSystem fake;
  fake.fsync_dir_errno = EIO;
  auto r = run(fake, "/bytes/50000/f.bin?seed=1", true);
  EXPECT_EQ(r.category, ErrorCategory::kFilesystem) << r.message;
  EXPECT_NE(r.message.find("Input/output error"), std::string::npos) << r.message;
  expect_nothing();
}

}  // namespace
}  // namespace fetchd::fault
