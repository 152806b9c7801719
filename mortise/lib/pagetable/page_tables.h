// Builds the guest's identity-mapped x86_64 page tables (4-level, 4 KiB pages) in guest memory,
// so that each page carries exactly the permissions of what lives there and everything else
// (the null page, reserved pages, the stack guard page, the tables themselves) is not mapped.
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "guest_memory.h"

namespace mortise {

struct PageMapping {
  uint64_t address = 0;     // page aligned
  uint64_t length = 0;      // page aligned
  uint8_t permissions = 0;  // GuestPermission bits; kRead is implied for any mapped page
};

// Largest guest memory the builder supports (one page directory pointer table entry range).
inline constexpr uint64_t kMaxGuestMemory = 1ull << 30;

// The fourth GiB of guest-physical space, where an emulated PC puts its local APIC and firmware.
// Tables built with DeviceWindow::kPresent hold one more page directory covering it, empty until
// map_large_page places a device page there; the native engine needs none.
inline constexpr uint64_t kDeviceWindowBase = 3ull << 30;
inline constexpr uint64_t kDeviceWindowEnd = 4ull << 30;
enum class DeviceWindow { kAbsent, kPresent };

// How the guest's accesses to a page reach what backs it.
enum class MemoryType { kWriteBack, kUncached };

// Bytes of page tables build_page_tables needs for a guest of `memory_size` bytes.
uint64_t page_table_bytes(uint64_t memory_size, DeviceWindow window = DeviceWindow::kAbsent);

// Writes page tables at [tables_address, tables_address + page_table_bytes(memory.size(),
// window)) and returns the value for CR3. Mappings must be page aligned, inside guest memory,
// disjoint, and must not cover the tables.
absl::StatusOr<uint64_t> build_page_tables(const GuestMemory& memory, uint64_t tables_address,
                                           std::span<const PageMapping> mappings,
                                           DeviceWindow window = DeviceWindow::kAbsent);

// Maps the 2 MiB of guest-physical space at `address` (2 MiB aligned) as one large page in the
// tables build_page_tables wrote at `tables_address`: either below kMaxGuestMemory and above
// every byte of guest memory, for ranges backed by other memory slots like inter-VM channel
// regions (accesses inside the page but outside any slot exit to Mortise as MMIO); or inside the
// device window of tables built with one.
absl::Status map_large_page(const GuestMemory& memory, uint64_t tables_address, uint64_t address,
                            uint8_t permissions, MemoryType type = MemoryType::kWriteBack);

}  // namespace mortise
