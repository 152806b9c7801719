// Hostile: reads from an I/O port instead of writing a hypercall.
#include <stdint.h>

#include "tenon/app.h"

extern "C" int64_t tenon_main(void) {
  uint32_t value;
  asm volatile("inl %1, %0" : "=a"(value) : "Nd"(static_cast<uint16_t>(0x60)));
  return value;
}
