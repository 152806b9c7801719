// Where everything goes in a Tenon guest's physical memory (see tenon/abi.h for the fixed part):
// the image, the heap, the stack guard page, the boot stack and the page tables at the top.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "page_tables.h"

namespace mortise {

struct MemoryLayout {
  uint64_t memory_size = 0;
  uint64_t image_end = 0;  // page aligned
  uint64_t heap_start = 0;
  uint64_t heap_end = 0;    // == guard_page
  uint64_t guard_page = 0;  // unmapped, catches stack overflow
  uint64_t stack_bottom = 0;
  uint64_t stack_top = 0;  // == page_tables
  uint64_t page_tables = 0;
};

// What the machine an engine emulates takes out of guest memory. The native engine takes nothing;
// QEMU's PC keeps a copy of its firmware just below 1 MiB, which reads as ROM whatever RAM lies
// under it, and needs the device window in the page tables for its local APIC and boot ROM.
struct MachineConstraints {
  uint64_t hole_start = 0;  // [hole_start, hole_end): no part of the layout may land there
  uint64_t hole_end = 0;
  DeviceWindow device_window = DeviceWindow::kAbsent;
};

// Plans a guest of `memory_size` bytes for an image ending at `image_end` with a boot stack of
// `stack_size` bytes. Refuses, with the minimum size that would work, a guest that is too small.
// Where the machine has a hole inside guest memory, the guard page, stack and page tables go above
// it when they fit there and below it otherwise, and the heap is the larger free range beside it.
absl::StatusOr<MemoryLayout> plan_memory_layout(uint64_t memory_size, uint64_t image_end,
                                                uint64_t stack_size,
                                                const MachineConstraints& machine = {});

}  // namespace mortise
