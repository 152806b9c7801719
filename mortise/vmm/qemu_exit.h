// How an instance on the QEMU engine ended, decided from what is left once QEMU has exited: its
// wait status (isa-debug-exit turns the value the guest wrote into the exit code), the exit
// record the guest left in its memory (tenon/abi.h, "QEMU platform"), whether QEMU reported a
// guest reset, and QEMU's own diagnostics. The record is untrusted, like every hypercall.
#pragma once

#include <string_view>

#include "guest_memory.h"
#include "instance.h"
#include "memory_layout.h"

namespace mortise {

ExitReason decode_qemu_exit(int wait_status, const GuestMemory& memory, const MemoryLayout& layout,
                            bool guest_reset, std::string_view qemu_diagnostics);

}  // namespace mortise
