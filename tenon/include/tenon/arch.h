// The architecture interface: what an arch micro-library (arch-x86_64) provides to the platform,
// timer and scheduler libraries. Not part of the application API.
#pragma once

#include <stdint.h>

extern "C" {
// Installs descriptor tables and exception handlers. Called once by the platform at boot.
void tenon_arch_init(void);
// Stops this CPU for good (interrupts off, halt).
[[noreturn]] void tenon_arch_halt(void);

// External interrupts: vectors kFirstInterruptVector .. +kInterruptVectorCount-1. The handler
// runs with interrupts disabled on the interrupted stack; it may switch contexts.
typedef void (*tenon_interrupt_handler)(uint32_t vector);
void tenon_arch_set_interrupt_handler(uint32_t vector, tenon_interrupt_handler handler);
void tenon_arch_interrupts_enable(void);
void tenon_arch_interrupts_disable(void);
// Enables interrupts and halts until one arrives; returns with interrupts disabled.
void tenon_arch_wait_for_interrupt(void);

uint64_t tenon_arch_read_msr(uint32_t msr);
void tenon_arch_write_msr(uint32_t msr, uint64_t value);

// Saves the callee-saved registers on the current stack, stores its pointer in *save_sp and
// continues on next_sp (a stack saved the same way, or prepared by tenon_arch_context_init).
void tenon_arch_context_switch(uint64_t* save_sp, uint64_t next_sp);
// Prepares a fresh stack so that switching to it enables interrupts and calls entry(argument).
// entry must not return.
uint64_t tenon_arch_context_init(uint64_t stack_top, void (*entry)(void*), void* argument);
}

namespace tenon::arch {
inline constexpr uint32_t kFirstInterruptVector = 32;
inline constexpr uint32_t kInterruptVectorCount = 16;
}  // namespace tenon::arch
