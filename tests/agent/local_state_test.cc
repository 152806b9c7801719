// agent.db (agent/local_state.h) on a real SQLite file, and the image store's chunk assembly on
// a real directory.
#include "local_state.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "crypto/sha256.h"
#include "image_store.h"

namespace tenon::agent {
namespace {

class TempDirectory {
 public:
  TempDirectory() {
    char path[] = "/tmp/agent-test-XXXXXX";
    path_ = mkdtemp(path);
  }
  ~TempDirectory() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

tenon::v1::DesiredState desired_state(uint64_t version) {
  tenon::v1::DesiredState desired;
  desired.set_version(version);
  tenon::v1::DesiredInstance* instance = desired.add_instances();
  instance->set_name("a");
  instance->set_uid("u1");
  return desired;
}

TEST(LocalStateTest, EverythingSurvivesReopening) {
  TempDirectory directory;
  const std::string path = directory.path() + "/agent.db";
  {
    absl::StatusOr<std::unique_ptr<LocalState>> state = LocalState::open(path);
    ASSERT_TRUE(state.ok()) << state.status();
    ASSERT_TRUE((*state)->store_identity({"edge-1", "uid-1", "secret"}).ok());
    ASSERT_TRUE((*state)->store_desired_state(desired_state(4)).ok());
    InstanceRecord record;
    record.name = "a";
    record.instance_uid = "u1";
    record.vm_uid = "vm1";
    record.restart_count = 3;
    record.restart_at = absl::FromUnixMillis(1234567);
    tenon::v1::ExitReason exit;
    exit.set_kind(tenon::v1::EXIT_KIND_GUEST_PANIC);
    exit.set_message("boom");
    record.last_exit = exit;
    ASSERT_TRUE((*state)->put_instance_record(record).ok());
    ASSERT_TRUE((*state)->put_image(crypto::sha256_digest("x"), 1).ok());
  }
  struct stat info;
  ASSERT_EQ(stat(path.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u) << "agent.db holds the credential";

  absl::StatusOr<std::unique_ptr<LocalState>> state = LocalState::open(path);
  ASSERT_TRUE(state.ok()) << state.status();
  absl::StatusOr<std::optional<Identity>> identity = (*state)->identity();
  ASSERT_TRUE(identity.ok() && identity->has_value());
  EXPECT_EQ((*identity)->device_name, "edge-1");
  EXPECT_EQ((*identity)->credential, "secret");
  absl::StatusOr<std::optional<tenon::v1::DesiredState>> desired = (*state)->desired_state();
  ASSERT_TRUE(desired.ok() && desired->has_value());
  EXPECT_EQ((*desired)->version(), 4u);
  EXPECT_EQ((*desired)->instances(0).uid(), "u1");
  absl::StatusOr<std::map<std::string, InstanceRecord>> records = (*state)->instance_records();
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->count("a"), 1u);
  const InstanceRecord& record = records->at("a");
  EXPECT_EQ(record.vm_uid, "vm1");
  EXPECT_EQ(record.restart_count, 3u);
  EXPECT_EQ(record.restart_at, absl::FromUnixMillis(1234567));
  ASSERT_TRUE(record.last_exit.has_value());
  EXPECT_EQ(record.last_exit->message(), "boom");
  absl::StatusOr<std::map<std::string, uint64_t>> images = (*state)->images();
  ASSERT_TRUE(images.ok());
  EXPECT_EQ(images->count(crypto::sha256_digest("x")), 1u);

  ASSERT_TRUE((*state)->forget_identity().ok());
  identity = (*state)->identity();
  ASSERT_TRUE(identity.ok());
  EXPECT_FALSE(identity->has_value());
}

TEST(LocalStateTest, DesiredStateVersionsOnlyIncrease) {
  TempDirectory directory;
  absl::StatusOr<std::unique_ptr<LocalState>> state =
      LocalState::open(directory.path() + "/agent.db");
  ASSERT_TRUE(state.ok()) << state.status();
  ASSERT_TRUE((*state)->store_desired_state(desired_state(5)).ok());
  EXPECT_TRUE(absl::IsFailedPrecondition((*state)->store_desired_state(desired_state(5))));
  EXPECT_TRUE(absl::IsFailedPrecondition((*state)->store_desired_state(desired_state(2))));
  ASSERT_TRUE((*state)->store_desired_state(desired_state(6)).ok());
  EXPECT_EQ((*(*state)->desired_state())->version(), 6u);
}

tenon::v1::ImageChunk chunk(const std::string& digest, const std::string& blob, size_t offset,
                            size_t length) {
  tenon::v1::ImageChunk result;
  result.set_digest(digest);
  result.set_offset(offset);
  result.set_data(blob.substr(offset, length));
  result.set_total_size_bytes(blob.size());
  result.set_last(offset + length >= blob.size());
  result.set_chunk_sha256(crypto::sha256_hex(result.data()));
  return result;
}

TEST(ImageStoreTest, AssemblesVerifiesAndRereadsAnImage) {
  TempDirectory directory;
  ImageStore store(directory.path() + "/images");
  ASSERT_TRUE(store.init().ok());
  const std::string blob(10000, 'x');
  const std::string digest = crypto::sha256_digest(blob);
  for (size_t offset = 0; offset < blob.size(); offset += 4096) {
    absl::StatusOr<bool> added = store.add_chunk(chunk(digest, blob, offset, 4096));
    ASSERT_TRUE(added.ok()) << added.status();
    EXPECT_EQ(*added, offset + 4096 >= blob.size());
  }
  absl::StatusOr<std::string> read = store.read_verified(digest);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, blob);

  // A file changed on disk after verification must not be used.
  std::ofstream(*store.path_of(digest), std::ios::app) << "tampered";
  EXPECT_TRUE(absl::IsDataLoss(store.read_verified(digest).status()));
}

TEST(ImageStoreTest, RejectsACorruptChunkAndDiscardsThePartialFile) {
  TempDirectory directory;
  ImageStore store(directory.path() + "/images");
  ASSERT_TRUE(store.init().ok());
  const std::string blob(8192, 'y');
  const std::string digest = crypto::sha256_digest(blob);
  ASSERT_TRUE(store.add_chunk(chunk(digest, blob, 0, 4096)).ok());
  tenon::v1::ImageChunk bad = chunk(digest, blob, 4096, 4096);
  (*bad.mutable_data())[10] ^= 1;
  EXPECT_FALSE(store.add_chunk(bad).ok());
  EXPECT_EQ(store.partial_size(digest), 0u);

  // Without chunk hashes, the whole-blob check catches it.
  ASSERT_TRUE(store.add_chunk(chunk(digest, blob, 0, 4096)).ok());
  bad.clear_chunk_sha256();
  absl::StatusOr<bool> last = store.add_chunk(bad);
  ASSERT_FALSE(last.ok());
  EXPECT_NE(last.status().message().find("hash to"), std::string::npos) << last.status();
  EXPECT_FALSE(std::filesystem::exists(*store.path_of(digest)));
  EXPECT_FALSE(std::filesystem::exists(*store.partial_path_of(digest)));
}

TEST(ImageStoreTest, RefusesOutOfOrderChunksAndHostileDigests) {
  TempDirectory directory;
  ImageStore store(directory.path() + "/images");
  ASSERT_TRUE(store.init().ok());
  const std::string blob(8192, 'z');
  const std::string digest = crypto::sha256_digest(blob);
  EXPECT_FALSE(store.add_chunk(chunk(digest, blob, 4096, 4096)).ok());
  tenon::v1::ImageChunk hostile = chunk(digest, blob, 0, 4096);
  hostile.set_digest("sha256:../../../../etc/passwd");
  EXPECT_TRUE(absl::IsInvalidArgument(store.add_chunk(hostile).status()));
}

}  // namespace
}  // namespace tenon::agent
