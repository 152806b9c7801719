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

// Bytes of page tables build_page_tables needs for a guest of `memory_size` bytes.
uint64_t page_table_bytes(uint64_t memory_size);

// Writes page tables at [tables_address, tables_address + page_table_bytes(memory.size())) and
// returns the value for CR3. Mappings must be page aligned, inside guest memory, disjoint, and
// must not cover the tables.
absl::StatusOr<uint64_t> build_page_tables(const GuestMemory& memory, uint64_t tables_address,
                                           std::span<const PageMapping> mappings);

// Maps the 2 MiB of guest-physical space at `address` (2 MiB aligned, below kMaxGuestMemory,
// above every byte of guest memory) as one large page in the tables build_page_tables wrote at
// `tables_address`: for ranges backed by other memory slots, like inter-VM channel regions.
// Accesses inside the page but outside any slot exit to Mortise as MMIO.
absl::Status map_large_page(const GuestMemory& memory, uint64_t tables_address, uint64_t address,
                            uint8_t permissions);

}  // namespace mortise
