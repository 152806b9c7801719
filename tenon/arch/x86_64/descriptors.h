// Shared between the descriptor-table and interrupt code of arch-x86_64 (not exported).
#pragma once

#include <stdint.h>

// Points IDT entry `vector` at `handler`; ist 0 runs it on the interrupted stack.
void tenon_arch_install_gate(uint32_t vector, uint64_t handler, uint8_t ist);
