// Hostile: loads an empty interrupt descriptor table and traps, so the CPU cannot deliver the
// exception, nor the double fault after it: a triple fault, which resets the machine.
#include <stdint.h>

#include "tenon/app.h"

namespace {
struct [[gnu::packed]] TableRegister {
  uint16_t limit;
  uint64_t base;
};
}  // namespace

extern "C" int64_t tenon_main(void) {
  const TableRegister empty{0, 0};
  asm volatile("lidt %0; int3" : : "m"(empty) : "memory");
  return 0;
}
