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
constexpr uint64_t kCacheDisable = 1ull << 4;
constexpr uint64_t kLargePageFlag = 1ull << 7;
constexpr uint64_t kNoExecute = 1ull << 63;
constexpr uint64_t kAddressMask = 0x000ffffffffff000ull;
constexpr uint64_t kBytesPerDirectory = kEntriesPerTable * kBytesPerPageTable;  // 1 GiB

uint64_t page_table_count(uint64_t memory_size) {
  return (memory_size + kBytesPerPageTable - 1) / kBytesPerPageTable;
}

bool has(uint8_t permissions, GuestPermission permission) {
  return (permissions & static_cast<uint8_t>(permission)) != 0;
}

}  // namespace

uint64_t page_table_bytes(uint64_t memory_size, DeviceWindow window) {
  // PML4 + PDPT + one page directory + the page tables [+ the device window's directory].
  return (3 + page_table_count(memory_size) + (window == DeviceWindow::kPresent ? 1 : 0)) * kPage;
}

absl::StatusOr<uint64_t> build_page_tables(const GuestMemory& memory, uint64_t tables_address,
                                           std::span<const PageMapping> mappings,
                                           DeviceWindow window) {
  const uint64_t memory_size = memory.size();
  if (memory_size > kMaxGuestMemory) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "guest memory of %d bytes exceeds the supported %d", memory_size, kMaxGuestMemory));
  }
  const uint64_t tables_size = page_table_bytes(memory_size, window);
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
  if (window == DeviceWindow::kPresent) {
    // Last, so that the page tables of guest memory sit where they do without a window.
    const uint64_t window_directory = tables_address + tables_size - kPage;
    entry(1, kDeviceWindowBase / kBytesPerDirectory) = window_directory | kPresent | kWritable;
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
                            uint8_t permissions, MemoryType type) {
  constexpr uint64_t kLargePage = kBytesPerPageTable;
  const bool in_window = address >= kDeviceWindowBase && address < kDeviceWindowEnd;
  if (address % kLargePage != 0 || (address >= kMaxGuestMemory && !in_window)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "large page %#x is not 2 MiB aligned below %#x or in the device window [%#x, %#x)", address,
        kMaxGuestMemory, kDeviceWindowBase, kDeviceWindowEnd));
  }
  uint64_t directory = tables_address + 2 * kPage;
  if (in_window) {
    absl::StatusOr<uint64_t> pointer = memory.read<uint64_t>(
        tables_address + kPage + (kDeviceWindowBase / kBytesPerDirectory) * sizeof(uint64_t));
    if (!pointer.ok()) return pointer.status();
    if ((*pointer & kPresent) == 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "large page %#x lies in the device window, but the tables have none", address));
    }
    directory = *pointer & kAddressMask;
  } else if (address < page_table_count(memory.size()) * kBytesPerPageTable) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "large page %#x overlaps guest memory of %#x bytes", address, memory.size()));
  }
  const uint64_t slot =
      directory + ((address % kBytesPerDirectory) / kLargePage) * sizeof(uint64_t);
  absl::StatusOr<uint64_t> current = memory.read<uint64_t>(slot);
  if (!current.ok()) return current.status();
  if (*current != 0) {
    return absl::InvalidArgumentError(absl::StrFormat("large page %#x is mapped twice", address));
  }
  uint64_t entry = address | kPresent | kLargePageFlag;
  if (has(permissions, GuestPermission::kWrite)) entry |= kWritable;
  if (!has(permissions, GuestPermission::kExecute)) entry |= kNoExecute;
  if (type == MemoryType::kUncached) entry |= kCacheDisable;
  return memory.write(slot, entry);
}

}  // namespace mortise
