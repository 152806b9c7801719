// Helpers for the QEMU-platform hostile guests: raw writes to the exit record and the exit port
// that bypass plat-qemu's well-behaved wrappers, so each guest can break the protocol in one way.
#pragma once

#include <stdint.h>

#include "tenon/abi.h"

namespace hostile {
inline tenon::abi::ExitRecord* exit_record() {
  return reinterpret_cast<tenon::abi::ExitRecord*>(tenon::abi::kExitRecordAddress);
}
[[noreturn]] inline void write_exit_port(uint32_t value) {
  asm volatile("outl %0, %1" : : "a"(value), "Nd"(tenon::abi::kQemuExitPort) : "memory");
  for (;;) asm volatile("cli; hlt");
}
}  // namespace hostile
