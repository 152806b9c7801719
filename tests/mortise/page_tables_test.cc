// Page tables: walks the tables the builder wrote and checks each page's permissions.
#include "page_tables.h"

#include "gtest/gtest.h"

namespace mortise {
namespace {

constexpr uint8_t kRead = static_cast<uint8_t>(GuestPermission::kRead);
constexpr uint8_t kWrite = static_cast<uint8_t>(GuestPermission::kWrite);
constexpr uint8_t kExecute = static_cast<uint8_t>(GuestPermission::kExecute);

// The leaf entry for `address`, found by walking the 4 levels as the CPU would.
uint64_t leaf(const GuestMemory& memory, uint64_t cr3, uint64_t address) {
  uint64_t table = cr3;
  for (int level = 3; level >= 0; --level) {
    const uint64_t index = (address >> (12 + 9 * level)) & 511;
    const uint64_t entry =
        *memory.read<uint64_t>((table & ~0xfffull & ((1ull << 52) - 1)) + index * 8);
    if (level == 0 || !(entry & 1)) return entry;
    table = entry & 0x000ffffffffff000ull;
  }
  return 0;
}

TEST(PageTablesTest, MapsEachPageWithItsPermissions) {
  absl::StatusOr<GuestMemory> memory = GuestMemory::create(4 << 20);  // two page tables
  ASSERT_TRUE(memory.ok());
  const uint64_t tables = memory->size() - page_table_bytes(memory->size());
  const PageMapping mappings[] = {{0x8000, 0x1000, kRead | kExecute},
                                  {0x9000, 0x1000, kRead},
                                  {0x200000, 0x2000, kRead | kWrite}};
  absl::StatusOr<uint64_t> cr3 = build_page_tables(*memory, tables, mappings);
  ASSERT_TRUE(cr3.ok()) << cr3.status();
  const uint64_t code = leaf(*memory, *cr3, 0x8000);
  EXPECT_EQ(code & 0x1, 1u);
  EXPECT_EQ(code & 0x2, 0u);
  EXPECT_EQ(code >> 63, 0u);
  EXPECT_EQ(code & 0x000ffffffffff000ull, 0x8000u);
  const uint64_t rodata = leaf(*memory, *cr3, 0x9000);
  EXPECT_EQ(rodata & 0x2, 0u);
  EXPECT_EQ(rodata >> 63, 1u);
  const uint64_t data = leaf(*memory, *cr3, 0x201000);
  EXPECT_EQ(data & 0x2, 0x2u);
  EXPECT_EQ(data >> 63, 1u);
  EXPECT_EQ(data & 0x000ffffffffff000ull, 0x201000u);
  EXPECT_EQ(leaf(*memory, *cr3, 0x0), 0u) << "the null page must stay unmapped";
  EXPECT_EQ(leaf(*memory, *cr3, 0xa000), 0u);
  EXPECT_EQ(leaf(*memory, *cr3, tables), 0u) << "the tables must not be mapped";
}

TEST(PageTablesTest, RefusesBadMappings) {
  absl::StatusOr<GuestMemory> memory = GuestMemory::create(1 << 20);
  ASSERT_TRUE(memory.ok());
  const uint64_t tables = memory->size() - page_table_bytes(memory->size());
  const PageMapping unaligned[] = {{0x8001, 0x1000, kRead}};
  EXPECT_FALSE(build_page_tables(*memory, tables, unaligned).ok());
  const PageMapping outside[] = {{0xff000, 0x2000, kRead}};
  EXPECT_FALSE(build_page_tables(*memory, tables, outside).ok());
  const PageMapping twice[] = {{0x8000, 0x2000, kRead}, {0x9000, 0x1000, kRead}};
  EXPECT_FALSE(build_page_tables(*memory, tables, twice).ok());
  const PageMapping over_tables[] = {{tables, 0x1000, kRead}};
  EXPECT_FALSE(build_page_tables(*memory, tables, over_tables).ok());
}

}  // namespace
}  // namespace mortise
