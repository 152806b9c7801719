// Helpers for the hostile test guests: raw hypercalls that bypass plat-mortise's well-behaved
// wrappers, so each guest can break the ABI in exactly one way.
#pragma once

#include <stdint.h>

#include "tenon/abi.h"

namespace hostile {
inline void raw_hypercall(uint16_t number, uint32_t argument_address) {
  const uint16_t port = tenon::abi::kHypercallPortBase + number;
  asm volatile("outl %0, %1" : : "a"(argument_address), "Nd"(port) : "memory");
}
inline void raw_hypercall(tenon::abi::Hypercall number, const void* arguments) {
  raw_hypercall(static_cast<uint16_t>(number),
                static_cast<uint32_t>(reinterpret_cast<uintptr_t>(arguments)));
}
}  // namespace hostile
