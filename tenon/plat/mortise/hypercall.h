// Issues a Mortise hypercall: the argument struct's guest-physical address goes to the
// hypercall's I/O port (see tenon/abi.h). Guest memory is identity-mapped.
#pragma once

#include <stdint.h>

#include "tenon/abi.h"

namespace tenon::plat {

template <typename Args>
inline void hypercall(abi::Hypercall number, Args* args) {
  const uint16_t port = abi::kHypercallPortBase + static_cast<uint16_t>(number);
  const uint32_t address = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(args));
  asm volatile("outl %0, %1" : : "a"(address), "Nd"(port) : "memory");
}

}  // namespace tenon::plat
