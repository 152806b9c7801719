// Identity page tables for a Tenon guest; see page_tables.h.
#include "page_tables.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace mortise {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kEntriesPerTable = 512;
constexpr uint64_t kBytesPerPageTable = kEntriesPerTable * kPage;  // 2 MiB per page table
constexpr uint64_t kPresent = 1ull << 0;
constexpr uint64_t kWritable = 1ull << 1;
constexpr uint64_t kNoExecute = 1ull << 63;

uint64_t page_table_count(uint64_t memory_size) {
  return (memory_size + kBytesPerPageTable - 1) / kBytesPerPageTable;
}

bool has(uint8_t permissions, GuestPermission permission) {
  return (permissions & static_cast<uint8_t>(permission)) != 0;
}

}  // namespace

uint64_t page_table_bytes(uint64_t memory_size) {
  // PML4 + PDPT + one page directory + the page tables.
  return (3 + page_table_count(memory_size)) * kPage;
}

absl::StatusOr<uint64_t> build_page_tables(const GuestMemory& memory, uint64_t tables_address,
                                           std::span<const PageMapping> mappings) {
  const uint64_t memory_size = memory.size();
  if (memory_size > kMaxGuestMemory) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "guest memory of %d bytes exceeds the supported %d", memory_size, kMaxGuestMemory));
  }
  const uint64_t tables_size = page_table_bytes(memory_size);
  absl::StatusOr<std::span<uint8_t>> tables = memory.checked(tables_address, tables_size);
  if (!tables.ok()) return tables.status();
  if (tables_address % kPage != 0) {
    return absl::InvalidArgumentError("page tables must be page aligned");
  }
  std::fill(tables->begin(), tables->end(), 0);

  auto entry = [&](uint64_t table_index, uint64_t slot) -> uint64_t& {
    return reinterpret_cast<uint64_t*>(tables->data())[table_index * kEntriesPerTable + slot];
  };
  const uint64_t pml4 = tables_address;
  const uint64_t pdpt = tables_address + kPage;
  const uint64_t page_directory = tables_address + 2 * kPage;
  // Upper levels allow everything; the leaf entries decide.
  entry(0, 0) = pdpt | kPresent | kWritable;
  entry(1, 0) = page_directory | kPresent | kWritable;
  for (uint64_t i = 0; i < page_table_count(memory_size); ++i) {
    entry(2, i) = (tables_address + (3 + i) * kPage) | kPresent | kWritable;
  }

  for (const PageMapping& mapping : mappings) {
    if (mapping.address % kPage != 0 || mapping.length % kPage != 0) {
      return absl::InvalidArgumentError(absl::StrFormat("mapping [%#x, +%#x) is not page aligned",
                                                        mapping.address, mapping.length));
    }
    if (!memory.checked(mapping.address, mapping.length).ok()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "mapping [%#x, +%#x) lies outside guest memory", mapping.address, mapping.length));
    }
    const uint64_t end = mapping.address + mapping.length;
    if (mapping.address < tables_address + tables_size && tables_address < end) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "mapping [%#x, +%#x) covers the page tables", mapping.address, mapping.length));
    }
    uint64_t flags = kPresent;
    if (has(mapping.permissions, GuestPermission::kWrite)) flags |= kWritable;
    if (!has(mapping.permissions, GuestPermission::kExecute)) flags |= kNoExecute;
    for (uint64_t page = mapping.address; page < end; page += kPage) {
      uint64_t& leaf = entry(3 + page / kBytesPerPageTable, (page / kPage) % kEntriesPerTable);
      if (leaf != 0) {
        return absl::InvalidArgumentError(absl::StrFormat("page %#x is mapped twice", page));
      }
      leaf = page | flags;
    }
  }
  return pml4;
}

absl::Status map_large_page(const GuestMemory& memory, uint64_t tables_address, uint64_t address,
                            uint8_t permissions) {
  constexpr uint64_t kLargePage = kBytesPerPageTable;
  constexpr uint64_t kLargePageFlag = 1ull << 7;
  if (address % kLargePage != 0 || address >= kMaxGuestMemory) {
    return absl::InvalidArgumentError(
        absl::StrFormat("large page %#x is not 2 MiB aligned below %#x", address, kMaxGuestMemory));
  }
  if (address < page_table_count(memory.size()) * kBytesPerPageTable) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "large page %#x overlaps guest memory of %#x bytes", address, memory.size()));
  }
  const uint64_t index = address / kLargePage;
  absl::StatusOr<uint64_t> current =
      memory.read<uint64_t>(tables_address + 2 * kPage + index * sizeof(uint64_t));
  if (!current.ok()) return current.status();
  if (*current != 0) {
    return absl::InvalidArgumentError(absl::StrFormat("large page %#x is mapped twice", address));
  }
  uint64_t entry = address | kPresent | kLargePageFlag;
  if (has(permissions, GuestPermission::kWrite)) entry |= kWritable;
  if (!has(permissions, GuestPermission::kExecute)) entry |= kNoExecute;
  return memory.write(tables_address + 2 * kPage + index * sizeof(uint64_t), entry);
}

}  // namespace mortise
