// External interrupts, model-specific registers and task contexts for x86_64.
#include <stdint.h>

#include "descriptors.h"
#include "tenon/arch.h"

extern "C" uint64_t tenon_arch_interrupt_stubs[tenon::arch::kInterruptVectorCount];
extern "C" void tenon_arch_context_start(void);

namespace {
tenon_interrupt_handler handlers[tenon::arch::kInterruptVectorCount];
}  // namespace

extern "C" void tenon_arch_interrupt(uint64_t vector) {
  const uint64_t index = vector - tenon::arch::kFirstInterruptVector;
  if (index < tenon::arch::kInterruptVectorCount && handlers[index] != nullptr) {
    handlers[index](static_cast<uint32_t>(vector));
  }
}

extern "C" void tenon_arch_set_interrupt_handler(uint32_t vector, tenon_interrupt_handler handler) {
  const uint32_t index = vector - tenon::arch::kFirstInterruptVector;
  if (index >= tenon::arch::kInterruptVectorCount) return;
  handlers[index] = handler;
  tenon_arch_install_gate(vector, tenon_arch_interrupt_stubs[index], /*ist=*/0);
}

extern "C" void tenon_arch_interrupts_enable(void) { asm volatile("sti" ::: "memory"); }
extern "C" void tenon_arch_interrupts_disable(void) { asm volatile("cli" ::: "memory"); }

extern "C" void tenon_arch_wait_for_interrupt(void) {
  // sti takes effect after the next instruction, so no interrupt slips in before the hlt.
  asm volatile("sti; hlt; cli" ::: "memory");
}

extern "C" uint64_t tenon_arch_read_msr(uint32_t msr) {
  uint32_t low, high;
  asm volatile("rdmsr" : "=a"(low), "=d"(high) : "c"(msr));
  return (static_cast<uint64_t>(high) << 32) | low;
}

extern "C" void tenon_arch_write_msr(uint32_t msr, uint64_t value) {
  asm volatile("wrmsr"
               :
               : "c"(msr), "a"(static_cast<uint32_t>(value)),
                 "d"(static_cast<uint32_t>(value >> 32))
               : "memory");
}

extern "C" uint64_t tenon_arch_context_init(uint64_t stack_top, void (*entry)(void*),
                                            void* argument) {
  // Frame popped by tenon_arch_context_switch: r15 r14 r13 r12 rbx rbp, then the return address.
  auto* slot = reinterpret_cast<uint64_t*>(stack_top & ~0xfull);
  *--slot = reinterpret_cast<uint64_t>(&tenon_arch_context_start);
  *--slot = 0;                                     // rbp
  *--slot = 0;                                     // rbx
  *--slot = reinterpret_cast<uint64_t>(entry);     // r12
  *--slot = reinterpret_cast<uint64_t>(argument);  // r13
  *--slot = 0;                                     // r14
  *--slot = 0;                                     // r15
  return reinterpret_cast<uint64_t>(slot);
}
