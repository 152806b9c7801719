// The checked accessor: every range outside guest memory, including wrapping ones, is refused.
#include "guest_memory.h"

#include "gtest/gtest.h"

namespace mortise {
namespace {

TEST(GuestMemoryTest, RejectsBadSizes) {
  EXPECT_FALSE(GuestMemory::create(0).ok());
  EXPECT_FALSE(GuestMemory::create(4095).ok());
}

TEST(GuestMemoryTest, CheckedAcceptsRangesInside) {
  absl::StatusOr<GuestMemory> memory = GuestMemory::create(8192);
  ASSERT_TRUE(memory.ok());
  EXPECT_TRUE(memory->checked(0, 8192).ok());
  EXPECT_TRUE(memory->checked(8191, 1).ok());
  EXPECT_TRUE(memory->checked(8192, 0).ok());
  EXPECT_EQ(memory->checked(100, 8)->data(), memory->host_base() + 100);
}

TEST(GuestMemoryTest, CheckedRefusesRangesOutsideOrWrapping) {
  absl::StatusOr<GuestMemory> memory = GuestMemory::create(8192);
  ASSERT_TRUE(memory.ok());
  EXPECT_EQ(memory->checked(8192, 1).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_FALSE(memory->checked(8000, 193).ok());
  EXPECT_FALSE(memory->checked(8193, 0).ok());
  EXPECT_FALSE(memory->checked(~0ull, 2).ok());
  EXPECT_FALSE(memory->checked(16, ~0ull - 8).ok());
  EXPECT_FALSE(memory->read<uint64_t>(8188).ok());
}

TEST(GuestMemoryTest, ReadWriteRoundTrip) {
  absl::StatusOr<GuestMemory> memory = GuestMemory::create(4096);
  ASSERT_TRUE(memory.ok());
  ASSERT_TRUE(memory->write<uint64_t>(64, 0x1122334455667788ull).ok());
  EXPECT_EQ(*memory->read<uint64_t>(64), 0x1122334455667788ull);
}

}  // namespace
}  // namespace mortise
