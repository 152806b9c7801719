// tenon::crypto (common/crypto): published vectors, the length-prefixed fields the catalog,
// composition and build-key digests are made of, reading a hash without ending it, the strict
// parsing of "sha256:<hex>" digests and files hashed in pieces.
#include "crypto/sha256.h"

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "temporary_directory.h"

namespace tenon::crypto {
namespace {

using test_support::TemporaryDirectory;
using ::testing::HasSubstr;

constexpr char kEmptyHex[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr char kAbcHex[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

TEST(Sha256, PublishedVectors) {
  EXPECT_EQ(sha256_hex(""), kEmptyHex);
  EXPECT_EQ(sha256_hex("abc"), kAbcHex);
  EXPECT_EQ(sha256_digest("abc"), std::string("sha256:") + kAbcHex);
  const std::vector<uint8_t> abc = {'a', 'b', 'c'};
  EXPECT_EQ(sha256_digest(std::span<const uint8_t>(abc)), std::string("sha256:") + kAbcHex);
}

TEST(Sha256, PiecesHashLikeTheWhole) {
  Sha256 hash;
  hash.add("a");
  hash.add(std::string_view());
  const uint8_t bc[] = {'b', 'c'};
  hash.add(std::span<const uint8_t>(bc));
  EXPECT_EQ(hash.hex_digest(), kAbcHex);
}

// Pinned: catalog digests, composition input digests and image build keys are made of fields,
// and stored and compared across releases. The values are sha256 of each field's length as
// 8 little-endian bytes followed by the field.
TEST(Sha256, FieldsAreLengthPrefixedAndPinned) {
  Sha256 first;
  first.add_field("ab");
  first.add_field("c");
  Sha256 second;
  second.add_field("a");
  second.add_field("bc");
  EXPECT_EQ(first.hex_digest(), "43ee655579de01ca739b3f95c1c2d3f46d353b2c0df818064ea594506cdb2617");
  EXPECT_EQ(second.hex_digest(),
            "9a8acca1b6c6c0befd3fbc756aed625da998c998f7252e738c4ef061906b9b21");
}

TEST(Sha256, PeekReadsTheHashSoFarAndHashingGoesOn) {
  Sha256 hash;
  hash.add("hello ");
  EXPECT_EQ(to_hex(hash.peek()), sha256_hex("hello "));
  EXPECT_EQ(to_hex(hash.peek()), sha256_hex("hello "));
  hash.add("world");
  EXPECT_EQ(hash.digest(), sha256_digest("hello world"));
}

TEST(Sha256, FinishGivesTheBytesOfTheHexDigest) {
  Sha256 hash;
  hash.add("abc");
  EXPECT_EQ(to_hex(hash.finish()), kAbcHex);
  EXPECT_EQ(to_hex(std::vector<uint8_t>{0x00, 0x0f, 0xa0, 0xff}), "000fa0ff");
}

TEST(DigestHex, AcceptsOnlySha256AndSixtyFourLowercaseHexDigits) {
  const std::string hex = sha256_hex("x");
  absl::StatusOr<std::string> parsed = digest_hex("sha256:" + hex);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, hex);

  const std::vector<std::string> refused = {
      "",
      hex,
      "sha256:",
      "sha512:" + hex,
      "SHA256:" + hex,
      "sha256-" + hex,
      "sha256:" + hex.substr(1),
      "sha256:" + hex + "0",
      "sha256:" + std::string(64, 'A'),
      "sha256:" + std::string(63, '0') + "g",
      "sha256: " + hex.substr(1),
      "sha256:../" + hex.substr(3),
      std::string("sha256:") + std::string(63, '0') + std::string(1, '\0'),
  };
  for (const std::string& digest : refused) {
    absl::StatusOr<std::string> result = digest_hex(digest);
    EXPECT_TRUE(absl::IsInvalidArgument(result.status())) << "accepted \"" << digest << "\"";
  }
  EXPECT_THAT(digest_hex("md5:00").status().message(), HasSubstr("does not start with sha256:"));
  EXPECT_THAT(digest_hex("sha256:00").status().message(), HasSubstr("64 hex digits"));
  EXPECT_THAT(digest_hex("sha256:" + std::string(64, 'A')).status().message(),
              HasSubstr("lowercase hex"));
}

TEST(DigestHex, QuotesALongDigestOnlyInPart) {
  const std::string message(digest_hex("sha256:" + std::string(10000, 'z')).status().message());
  EXPECT_THAT(message, HasSubstr("...\""));
  EXPECT_LT(message.size(), 200u);
}

TEST(Sha256File, HashesTheWholeFileInPieces) {
  TemporaryDirectory directory;
  // Larger than one read, and not a multiple of it.
  std::string bytes;
  for (int i = 0; i < 200000; ++i) bytes.push_back(static_cast<char>((i * 7 + 3) % 251));
  {
    std::ofstream file(directory.file("blob"), std::ios::binary);
    file << bytes;
  }
  absl::StatusOr<std::string> hex = sha256_file_hex(directory.file("blob"));
  ASSERT_TRUE(hex.ok()) << hex.status();
  EXPECT_EQ(*hex, "d2979f63fc353288130be1837d34f088e378e76c5baa67b8a6077c950db3c286");
  EXPECT_EQ(*hex, sha256_hex(bytes));

  { std::ofstream empty(directory.file("empty"), std::ios::binary); }
  absl::StatusOr<std::string> empty = sha256_file_hex(directory.file("empty"));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(*empty, kEmptyHex);
}

TEST(Sha256File, AMissingFileIsNotFoundNamingIt) {
  TemporaryDirectory directory;
  absl::StatusOr<std::string> hex = sha256_file_hex(directory.file("missing"));
  EXPECT_TRUE(absl::IsNotFound(hex.status())) << hex.status();
  EXPECT_THAT(hex.status().message(), HasSubstr(directory.file("missing")));
}

}  // namespace
}  // namespace tenon::crypto
