// Hostile: installs its own page tables mapping guest-physical memory Mortise never gave it
// (2 MiB pages at 0 and at 2 MiB) and writes past the end of its memory.
#include <stdint.h>

#include "tenon/app.h"

namespace {
alignas(4096) uint64_t level4[512];
alignas(4096) uint64_t level3[512];
alignas(4096) uint64_t level2[512];
constexpr uint64_t kPresentWritable = 0x3;
constexpr uint64_t kLargePage = 0x80;
}  // namespace

extern "C" int64_t tenon_main(void) {
  level4[0] = reinterpret_cast<uint64_t>(level3) | kPresentWritable;
  level3[0] = reinterpret_cast<uint64_t>(level2) | kPresentWritable;
  level2[0] = 0x000000 | kPresentWritable | kLargePage;
  level2[1] = 0x200000 | kPresentWritable | kLargePage;
  asm volatile("mov %0, %%cr3" : : "r"(reinterpret_cast<uint64_t>(level4)) : "memory");
  *reinterpret_cast<volatile uint64_t*>(0x300000) = 0xbad;
  return 0;
}
