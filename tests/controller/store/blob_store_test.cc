// BlobStore on a real directory: content addressing, idempotence, hostile digests, verification.
#include "blob_store.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "crypto/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "temporary_directory.h"

namespace tenon::controller {
namespace {

using test_support::TemporaryDirectory;
using ::testing::HasSubstr;

// sha256("hello"), a published test vector.
constexpr char kHelloDigest[] =
    "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

std::vector<std::string> files_in(const std::string& directory) {
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(directory)) {
    files.push_back(entry.path().filename().string());
  }
  return files;
}

BlobStore open_store(const std::string& directory) {
  absl::StatusOr<BlobStore> store = BlobStore::open(directory);
  EXPECT_TRUE(store.ok()) << store.status();
  return *std::move(store);
}

TEST(BlobStoreTest, PutThenHasReadSizeAndPath) {
  TemporaryDirectory directory;
  BlobStore store = open_store(directory.file("blobs"));
  absl::StatusOr<std::string> digest = store.put("hello");
  ASSERT_TRUE(digest.ok()) << digest.status();
  EXPECT_EQ(*digest, kHelloDigest);
  EXPECT_TRUE(store.has(*digest));
  EXPECT_EQ(*store.read(*digest), "hello");
  EXPECT_EQ(*store.size(*digest), 5u);
  EXPECT_EQ(store.path(*digest),
            directory.file("blobs/sha256-"
                           "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"));
  EXPECT_TRUE(std::filesystem::is_regular_file(store.path(*digest)));

  // Idempotent: the same bytes give the same single file.
  absl::StatusOr<std::string> again = store.put("hello");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *digest);
  EXPECT_EQ(files_in(store.directory()).size(), 1u);
}

TEST(BlobStoreTest, BinaryAndEmptyBlobs) {
  TemporaryDirectory directory;
  BlobStore store = open_store(directory.path());
  std::string binary;
  for (int i = 0; i < 200000; ++i) binary.push_back(static_cast<char>(i * 7));
  absl::StatusOr<std::string> digest = store.put(binary);
  ASSERT_TRUE(digest.ok()) << digest.status();
  EXPECT_EQ(*digest, crypto::sha256_digest(binary));
  EXPECT_EQ(*store.read(*digest), binary);
  EXPECT_EQ(*store.size(*digest), binary.size());

  absl::StatusOr<std::string> empty = store.put("");
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(store.has(*empty));
  EXPECT_EQ(*store.read(*empty), "");
  EXPECT_EQ(*store.size(*empty), 0u);
}

TEST(BlobStoreTest, AbsentBlobIsNotFound) {
  TemporaryDirectory directory;
  BlobStore store = open_store(directory.path());
  EXPECT_FALSE(store.has(kHelloDigest));
  EXPECT_EQ(store.read(kHelloDigest).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store.size(kHelloDigest).status().code(), absl::StatusCode::kNotFound);
}

TEST(BlobStoreTest, MalformedDigestsAreRefusedBeforeAnyPathIsBuilt) {
  TemporaryDirectory directory;
  BlobStore store = open_store(directory.file("blobs"));
  const std::string hex(kHelloDigest + 7);
  const std::vector<std::string> hostile = {
      "",
      "sha256:",
      "sha256:../../../../etc/passwd",
      "sha256:../" + hex.substr(3),
      "../sha256:" + hex,
      "sha256:" + hex + "/../x",
      "sha256:" + hex.substr(0, 63),
      "sha256:" + hex + "0",
      "SHA256:" + hex,
      "sha512:" + hex,
      "sha256-" + hex,
      "sha256:" + std::string(64, 'A'),
      "sha256:" + std::string(63, '0') + "g",
      std::string("sha256:") + std::string(63, '0') + std::string(1, '\0'),
      "sha256: " + hex.substr(1),
      hex,
  };
  for (const std::string& digest : hostile) {
    SCOPED_TRACE(digest);
    EXPECT_EQ(BlobStore::check_digest(digest).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_FALSE(store.has(digest));
    EXPECT_EQ(store.path(digest), "");
    EXPECT_EQ(store.read(digest).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(store.size(digest).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(store.put_verified(digest, "hello").code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_TRUE(files_in(store.directory()).empty());
  EXPECT_TRUE(BlobStore::check_digest(kHelloDigest).ok());
}

TEST(BlobStoreTest, PutVerifiedStoresMatchingBytesAndRefusesOthers) {
  TemporaryDirectory directory;
  BlobStore store = open_store(directory.path());
  const std::string other_digest = crypto::sha256_digest("goodbye");
  absl::Status mismatch = store.put_verified(other_digest, "hello");
  EXPECT_EQ(mismatch.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(mismatch.message(), HasSubstr(other_digest));
  EXPECT_THAT(mismatch.message(), HasSubstr(kHelloDigest));
  EXPECT_FALSE(store.has(other_digest));
  EXPECT_FALSE(store.has(kHelloDigest));
  EXPECT_TRUE(files_in(directory.path()).empty()) << "nothing left behind, not even a temporary";

  absl::Status stored = store.put_verified(kHelloDigest, "hello");
  ASSERT_TRUE(stored.ok()) << stored;
  EXPECT_EQ(*store.read(kHelloDigest), "hello");
  EXPECT_TRUE(store.put_verified(kHelloDigest, "hello").ok());  // idempotent
}

TEST(BlobStoreTest, ReadDetectsAlteredFiles) {
  TemporaryDirectory directory;
  BlobStore store = open_store(directory.path());
  ASSERT_TRUE(store.put("hello").ok());
  const std::string file = store.path(kHelloDigest);
  // Blobs are written read-only; a careless hand makes it writable and changes it.
  ASSERT_EQ(::chmod(file.c_str(), 0644), 0);
  std::ofstream(file, std::ios::binary | std::ios::trunc) << "jello";
  absl::StatusOr<std::string> read = store.read(kHelloDigest);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(read.status().message(), HasSubstr(file));
}

TEST(BlobStoreTest, BlobsAreReadOnlyFiles) {
  TemporaryDirectory directory;
  BlobStore store = open_store(directory.path());
  ASSERT_TRUE(store.put("hello").ok());
  struct stat status;
  ASSERT_EQ(::stat(store.path(kHelloDigest).c_str(), &status), 0);
  EXPECT_EQ(status.st_mode & 0777, 0444u);
}

TEST(BlobStoreTest, OpenCreatesDirectoriesAndRemovesStrayTemporaries) {
  TemporaryDirectory directory;
  const std::string blobs = directory.file("var/lib/tenon/blobs");
  {
    BlobStore store = open_store(blobs);
    ASSERT_TRUE(store.put("hello").ok());
  }
  std::ofstream(blobs + "/.incoming-abc123") << "half a blob from a crash";
  BlobStore store = open_store(blobs);
  EXPECT_THAT(files_in(blobs),
              ::testing::ElementsAre(
                  "sha256-2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"));
  EXPECT_TRUE(store.has(kHelloDigest));
}

TEST(BlobStoreTest, OpenRefusesAFileWhereTheDirectoryShouldBe) {
  TemporaryDirectory directory;
  std::ofstream(directory.file("blobs")) << "not a directory";
  absl::StatusOr<BlobStore> store = BlobStore::open(directory.file("blobs"));
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(store.status().message(), HasSubstr(directory.file("blobs")));
}

}  // namespace
}  // namespace tenon::controller
