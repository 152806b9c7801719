// Guest memory planning: the layout's regions are ordered and disjoint; too-small guests are
// refused with the minimum that would fit.
#include "memory_layout.h"

#include "gtest/gtest.h"
#include "page_tables.h"

namespace mortise {
namespace {

TEST(MemoryLayoutTest, RegionsAreOrderedAndDisjoint) {
  absl::StatusOr<MemoryLayout> layout = plan_memory_layout(1 << 20, 0xa123, 16 << 10);
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_EQ(layout->image_end, 0xb000u);
  EXPECT_EQ(layout->heap_start, layout->image_end);
  EXPECT_EQ(layout->heap_end, layout->guard_page);
  EXPECT_EQ(layout->guard_page + 4096, layout->stack_bottom);
  EXPECT_EQ(layout->stack_bottom + (16 << 10), layout->stack_top);
  EXPECT_EQ(layout->stack_top, layout->page_tables);
  EXPECT_EQ(layout->page_tables + page_table_bytes(1 << 20), 1u << 20);
}

TEST(MemoryLayoutTest, TooSmallNamesTheMinimum) {
  absl::StatusOr<MemoryLayout> layout = plan_memory_layout(64 << 10, 0xc000, 16 << 10);
  ASSERT_FALSE(layout.ok());
  EXPECT_EQ(layout.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(layout.status().message().find("need at least 84 KiB"), std::string::npos)
      << layout.status();
}

TEST(MemoryLayoutTest, RejectsBadSizes) {
  EXPECT_FALSE(plan_memory_layout(1000, 0x9000, 4096).ok());
  EXPECT_FALSE(plan_memory_layout(2ull << 30, 0x9000, 4096).ok());
  EXPECT_FALSE(plan_memory_layout(1 << 20, 0x9000, 0).ok());
}

}  // namespace
}  // namespace mortise
