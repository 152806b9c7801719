// The archive footprint parser against real archives and against hostile bytes.
#include <fstream>
#include <iterator>
#include <vector>

#include "archive.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tenon::controller {
namespace {

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream stream(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(stream)),
                              std::istreambuf_iterator<char>());
}

const std::string kSchedArchive = std::string(TENON_ARCHIVE_ROOT) + "/lib/x86_64/libsched.a";

TEST(ArchiveTest, MeasuresARealArchive) {
  absl::StatusOr<Footprint> footprint = measure_archive_file(kSchedArchive);
  ASSERT_TRUE(footprint.ok()) << footprint.status();
  EXPECT_EQ(footprint->members, 1u);  // tenon_library archives one partially linked object
  EXPECT_GT(footprint->text_bytes, 500u);
  EXPECT_GT(footprint->bss_bytes, 0u);  // the task table
  EXPECT_GE(footprint->text_bound, footprint->text_bytes);
  EXPECT_GE(footprint->data_bound, footprint->data_bytes + footprint->bss_bytes);
}

TEST(ArchiveTest, RefusesBadMagicTruncationAndOverruns) {
  std::vector<uint8_t> bytes = read_bytes(kSchedArchive);
  ASSERT_GT(bytes.size(), 200u);
  std::vector<uint8_t> bad_magic = bytes;
  bad_magic[1] = 'X';
  EXPECT_FALSE(measure_archive(bad_magic, "a").ok());
  for (size_t cut : {size_t{8}, size_t{30}, size_t{68}, bytes.size() / 2, bytes.size() - 1}) {
    std::vector<uint8_t> truncated(bytes.begin(), bytes.begin() + cut);
    EXPECT_FALSE(measure_archive(truncated, "a").ok()) << "cut at " << cut;
  }
  // A member size far past the end.
  std::vector<uint8_t> huge = bytes;
  for (size_t i = 0; i < 10; ++i) huge[8 + 48 + i] = '9';
  EXPECT_FALSE(measure_archive(huge, "a").ok());
}

TEST(ArchiveTest, RefusesAnObjectWhoseSectionTableIsOutside) {
  std::vector<uint8_t> bytes = read_bytes(kSchedArchive);
  // Find the first ELF member and point its e_shoff past the end.
  for (size_t i = 0; i + 4 < bytes.size(); ++i) {
    if (bytes[i] == 0x7f && bytes[i + 1] == 'E' && bytes[i + 2] == 'L' && bytes[i + 3] == 'F') {
      for (int b = 0; b < 8; ++b) bytes[i + 40 + b] = 0xff;
      absl::StatusOr<Footprint> footprint = measure_archive(bytes, "a");
      ASSERT_FALSE(footprint.ok());
      EXPECT_NE(footprint.status().message().find("section header table"), std::string::npos);
      return;
    }
  }
  FAIL() << "no ELF member found";
}

}  // namespace
}  // namespace tenon::controller
