// mortised's per-VM console ring: offsets stay absolute, old bytes give way to new ones, and a
// gap left by dropped bytes shows as a jump in offsets.
#include "console_ring.h"

#include <gtest/gtest.h>

#include <string>

namespace mortise {
namespace {

const absl::Time kEpoch = absl::UnixEpoch();

TEST(ConsoleRing, ReadsFromAnyOffsetAndRefusesNothingWithinTheRing) {
  ConsoleRing ring(64);
  ring.append(0, "hello ", kEpoch);
  ring.append(6, "world", kEpoch + absl::Seconds(1));
  EXPECT_EQ(ring.end_offset(), 11u);
  ConsoleRing::Chunk chunk = ring.read(0, 100);
  EXPECT_EQ(chunk.offset, 0u);
  EXPECT_EQ(chunk.data, "hello world");
  EXPECT_EQ(chunk.received, kEpoch);
  chunk = ring.read(6, 3);
  EXPECT_EQ(chunk.data, "wor");
  EXPECT_EQ(chunk.received, kEpoch + absl::Seconds(1));
  EXPECT_TRUE(ring.read(11, 10).data.empty());
}

TEST(ConsoleRing, KeepsAtLeastItsCapacityOfTheNewestBytes) {
  ConsoleRing ring(16);
  std::string all;
  for (int i = 0; i < 100; ++i) {
    const std::string piece = std::to_string(i) + ",";
    ring.append(all.size(), piece, kEpoch);
    all += piece;
  }
  EXPECT_EQ(ring.end_offset(), all.size());
  EXPECT_GE(ring.end_offset() - ring.begin_offset(), 16u);
  EXPECT_LE(ring.end_offset() - ring.begin_offset(), 32u);
  // An offset older than what is held starts at the oldest byte held.
  const ConsoleRing::Chunk chunk = ring.read(0, 1000);
  EXPECT_EQ(chunk.offset, ring.begin_offset());
  EXPECT_EQ(chunk.data, all.substr(chunk.offset));
}

TEST(ConsoleRing, RepeatedBytesAreSkippedAndAGapRestartsTheRing) {
  ConsoleRing ring(64);
  ring.append(0, "abcdef", kEpoch);
  ring.append(3, "defgh", kEpoch);  // overlaps: only "gh" is new
  EXPECT_EQ(ring.read(0, 100).data, "abcdefgh");
  ring.append(20, "after", kEpoch);  // bytes 8..19 were dropped upstream
  const ConsoleRing::Chunk chunk = ring.read(0, 100);
  EXPECT_EQ(chunk.offset, 20u);
  EXPECT_EQ(chunk.data, "after");
  ring.append(UINT64_MAX - 2, "overflowing", kEpoch);  // hostile offset: ignored
  EXPECT_EQ(ring.end_offset(), 25u);
}

}  // namespace
}  // namespace mortise
