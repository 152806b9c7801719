// GDT with a TSS (whose IST1 gives exceptions their own stack, so a stack overflow into the guard
// page is still reported) and an IDT with handlers for the 32 architectural exceptions.
#include <stdint.h>

#include "descriptors.h"
#include "tenon/arch.h"

extern "C" uint64_t tenon_arch_exception_stubs[32];  // exception_entry.S

namespace {

constexpr uint16_t kKernelCodeSelector = 0x08;
constexpr uint16_t kKernelDataSelector = 0x10;
constexpr uint16_t kTssSelector = 0x18;

struct [[gnu::packed]] TaskStateSegment {
  uint32_t reserved0;
  uint64_t rsp[3];
  uint64_t reserved1;
  uint64_t ist[7];
  uint64_t reserved2;
  uint16_t reserved3;
  uint16_t io_map_base;
};

struct [[gnu::packed]] InterruptGate {
  uint16_t offset_low;
  uint16_t selector;
  uint8_t ist;
  uint8_t type_attributes;
  uint16_t offset_middle;
  uint32_t offset_high;
  uint32_t reserved;
};

struct [[gnu::packed]] DescriptorPointer {
  uint16_t limit;
  uint64_t base;
};

constexpr uint64_t kExceptionStackSize = 4096;
alignas(16) uint8_t exception_stack[kExceptionStackSize];
TaskStateSegment task_state_segment;
// null, 64-bit code, data, TSS (two slots).
uint64_t global_descriptors[5];
InterruptGate interrupt_descriptors[48];

uint64_t tss_descriptor_low(uint64_t base, uint32_t limit) {
  return (limit & 0xffffULL) | ((base & 0xffffffULL) << 16) | (0x89ULL << 40) |
         ((static_cast<uint64_t>(limit) & 0xf0000ULL) << 32) | ((base & 0xff000000ULL) << 32);
}

void load_global_descriptors() {
  global_descriptors[0] = 0;
  global_descriptors[1] = 0x00af9a000000ffffULL;  // code: present, ring 0, long mode
  global_descriptors[2] = 0x00cf92000000ffffULL;  // data: present, ring 0, writable
  task_state_segment.ist[0] = reinterpret_cast<uint64_t>(exception_stack + kExceptionStackSize);
  task_state_segment.io_map_base = sizeof(TaskStateSegment);
  const uint64_t tss_base = reinterpret_cast<uint64_t>(&task_state_segment);
  global_descriptors[3] = tss_descriptor_low(tss_base, sizeof(TaskStateSegment) - 1);
  global_descriptors[4] = tss_base >> 32;

  const DescriptorPointer pointer{sizeof(global_descriptors) - 1,
                                  reinterpret_cast<uint64_t>(global_descriptors)};
  asm volatile(
      "lgdt %[pointer]\n"
      "mov %[data], %%ds\n"
      "mov %[data], %%es\n"
      "mov %[data], %%ss\n"
      "mov %[data], %%fs\n"
      "mov %[data], %%gs\n"
      "pushq %[code]\n"
      "leaq 1f(%%rip), %%rax\n"
      "pushq %%rax\n"
      "lretq\n"
      "1:\n"
      "ltr %w[tss]\n"
      :
      : [pointer] "m"(pointer), [data] "r"(static_cast<uint64_t>(kKernelDataSelector)),
        [code] "i"(kKernelCodeSelector), [tss] "r"(kTssSelector)
      : "rax", "memory");
}

}  // namespace

void tenon_arch_install_gate(uint32_t vector, uint64_t handler, uint8_t ist) {
  InterruptGate& gate = interrupt_descriptors[vector];
  gate.offset_low = handler & 0xffff;
  gate.selector = kKernelCodeSelector;
  gate.ist = ist;
  gate.type_attributes = 0x8e;  // present, ring 0, 64-bit interrupt gate
  gate.offset_middle = (handler >> 16) & 0xffff;
  gate.offset_high = static_cast<uint32_t>(handler >> 32);
  gate.reserved = 0;
}

namespace {

void load_interrupt_descriptors() {
  // Exceptions run on IST1 so that a stack overflow into the guard page is still reported.
  for (uint32_t vector = 0; vector < 32; ++vector) {
    tenon_arch_install_gate(vector, tenon_arch_exception_stubs[vector], /*ist=*/1);
  }
  const DescriptorPointer pointer{sizeof(interrupt_descriptors) - 1,
                                  reinterpret_cast<uint64_t>(interrupt_descriptors)};
  asm volatile("lidt %0" : : "m"(pointer) : "memory");
}

}  // namespace

extern "C" void tenon_arch_init(void) {
  load_global_descriptors();
  load_interrupt_descriptors();
}

extern "C" [[noreturn]] void tenon_arch_halt(void) {
  for (;;) asm volatile("cli; hlt");
}
