// The platform interface: what a platform micro-library (plat-mortise, later plat-qemu) provides
// to the other micro-libraries. Not part of the application API.
#pragma once

#include <stdint.h>

#include "tenon/abi.h"

extern "C" {
// Console primitive used by the console library.
uint64_t tenon_platform_console_write(const char* data, uint64_t length);
// An unrecoverable CPU exception; reported to the hypervisor, never returns.
[[noreturn]] void tenon_platform_fault(uint64_t vector, uint64_t error_code, uint64_t rip,
                                       uint64_t rsp, uint64_t cr2);
// A failed invariant; reported to the hypervisor with its message, never returns.
[[noreturn]] void tenon_platform_panic(const char* message, uint64_t length);
// The boot info block and the telemetry page (see tenon/abi.h).
const tenon::abi::BootInfo* tenon_platform_boot_info(void);
tenon::abi::TelemetryPage* tenon_platform_telemetry(void);
}
