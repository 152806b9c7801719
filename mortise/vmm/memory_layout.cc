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
                                                uint64_t stack_size) {
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
  const uint64_t tables = page_table_bytes(memory_size);
  const uint64_t needed = layout.image_end + kPage + stack_size + tables;
  if (layout.image_end < tenon::abi::kImageBase || needed > memory_size) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "guest memory of %d KiB is too small: the image ends at %d KiB, then a guard page, "
        "%d KiB of stack and %d KiB of page tables need at least %d KiB",
        memory_size / 1024, layout.image_end / 1024, stack_size / 1024, tables / 1024,
        needed / 1024));
  }
  layout.page_tables = memory_size - tables;
  layout.stack_top = layout.page_tables;
  layout.stack_bottom = layout.stack_top - stack_size;
  layout.guard_page = layout.stack_bottom - kPage;
  layout.heap_start = layout.image_end;
  layout.heap_end = layout.guard_page;
  return layout;
}

}  // namespace mortise
