// Guest memory planning; see memory_layout.h.
#include "memory_layout.h"

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "page_tables.h"
#include "tenon/abi.h"

namespace mortise {
namespace {
constexpr uint64_t kPage = tenon::abi::kPageSize;
uint64_t round_up(uint64_t value) { return (value + kPage - 1) / kPage * kPage; }
}  // namespace

absl::StatusOr<MemoryLayout> plan_memory_layout(uint64_t memory_size, uint64_t image_end,
                                                uint64_t stack_size,
                                                const MachineConstraints& machine) {
  if (memory_size % kPage != 0 || memory_size == 0 || memory_size > kMaxGuestMemory) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "guest memory must be a multiple of 4 KiB between 4 KiB and %d MiB, got %d bytes",
        kMaxGuestMemory >> 20, memory_size));
  }
  if (stack_size == 0 || stack_size % kPage != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("stack size must be a non-zero multiple of 4 KiB, got %d", stack_size));
  }
  MemoryLayout layout;
  layout.memory_size = memory_size;
  layout.image_end = round_up(image_end);
  const uint64_t tables = page_table_bytes(memory_size, machine.device_window);
  const uint64_t top_block = kPage + stack_size + tables;  // guard page, stack, page tables
  const bool hole_inside =
      machine.hole_end > machine.hole_start && machine.hole_start < memory_size;
  if (hole_inside && layout.image_end > machine.hole_start) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "the image ends at %d KiB, inside the range [%d KiB, %d KiB) this engine's machine keeps",
        layout.image_end / 1024, machine.hole_start / 1024, machine.hole_end / 1024));
  }
  // The top block goes at the end of memory, or below the hole when it does not fit above it.
  uint64_t top = memory_size;
  if (hole_inside && (memory_size < machine.hole_end + top_block)) top = machine.hole_start;
  const uint64_t needed = layout.image_end + top_block;
  if (layout.image_end < tenon::abi::kImageBase || needed > top) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "guest memory of %d KiB is too small: the image ends at %d KiB, then a guard page, "
        "%d KiB of stack and %d KiB of page tables need at least %d KiB%s",
        memory_size / 1024, layout.image_end / 1024, stack_size / 1024, tables / 1024,
        needed / 1024,
        top != memory_size ? absl::StrFormat(" below this engine's reserved range at %d KiB",
                                             machine.hole_start / 1024)
                           : ""));
  }
  layout.page_tables = top - tables;
  layout.stack_top = layout.page_tables;
  layout.stack_bottom = layout.stack_top - stack_size;
  layout.guard_page = layout.stack_bottom - kPage;
  layout.heap_start = layout.image_end;
  layout.heap_end = layout.guard_page;
  if (hole_inside && top == memory_size) {
    // The hole splits the free memory: the heap is one range, the larger side.
    if (machine.hole_start - layout.image_end >= layout.guard_page - machine.hole_end) {
      layout.heap_end = machine.hole_start;
    } else {
      layout.heap_start = machine.hole_end;
    }
  }
  return layout;
}

}  // namespace mortise
