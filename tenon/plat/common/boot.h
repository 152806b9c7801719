// What every platform library does the same way: the image's Tenon notes, the boot sequence
// (check the boot info, open the telemetry page, set up the CPU, run constructors and the app)
// and the TSC clock. Included by exactly one source file of each platform library; the platform
// itself supplies how console output, exits, faults and panics reach the host.
#pragma once

#include <stdint.h>

#include "tenon/abi.h"
#include "tenon/app.h"
#include "tenon/arch.h"
#include "tenon/exit.h"
#include "tenon/platform.h"
#include "tenon/time.h"

extern "C" void (*__init_array_start[])(void);
extern "C" void (*__init_array_end[])(void);

namespace tenon::plat {

// One "Tenon" ELF note with a 4-byte payload (tenon/abi.h).
struct TenonNote {
  uint32_t name_size;
  uint32_t descriptor_size;
  uint32_t type;
  char name[8];
  uint32_t value;
};

constexpr TenonNote tenon_note(uint32_t type, uint32_t value) {
  return {
      sizeof(abi::kNoteName), sizeof(uint32_t), type, {'T', 'e', 'n', 'o', 'n', 0, 0, 0}, value};
}

// The notes Mortise reads before boot: the ABI version and the platform this image talks to.
#define TENON_PLATFORM_NOTES(platform)                                                \
  [[gnu::section(".note.tenon"), gnu::used,                                           \
    gnu::aligned(4)]] const tenon::plat::TenonNote tenon_image_notes[] = {            \
      tenon::plat::tenon_note(tenon::abi::kNoteTypeAbiVersion, tenon::abi::kVersion), \
      tenon::plat::tenon_note(tenon::abi::kNoteTypePlatform, static_cast<uint32_t>(platform))}

namespace boot_state {
static uint64_t tsc_khz = 0;  // internal: this header is one platform file's
static uint64_t boot_tsc = 0;
static const abi::BootInfo* boot_info = nullptr;
}  // namespace boot_state

// Entered from the image's _start with the boot info Mortise prepared (both engines enter the
// same way: long mode, paging on, interrupts off, RSP at stack_top).
[[noreturn]] inline void boot(const abi::BootInfo* boot_info, const char* platform_name) {
  boot_state::boot_tsc = time::read_tsc();
  if (boot_info->magic != abi::kBootInfoMagic || boot_info->abi_version != abi::kVersion) {
    char message[96];
    uint64_t length = 0;
    const char* const parts[] = {platform_name, ": boot info magic or ABI version mismatch"};
    for (const char* part : parts) {
      for (; *part != '\0' && length < sizeof(message); ++part) message[length++] = *part;
    }
    tenon_platform_panic(message, length);
  }
  boot_state::tsc_khz = boot_info->tsc_khz;
  boot_state::boot_info = boot_info;
  abi::TelemetryPage* telemetry = tenon_platform_telemetry();
  telemetry->magic = abi::kTelemetryMagic;
  telemetry->abi_version = abi::kVersion;
  telemetry->entry_tsc = boot_state::boot_tsc;

  tenon_arch_init();
  for (auto** constructor = __init_array_start; constructor != __init_array_end; ++constructor) {
    (*constructor)();
  }
  telemetry->main_entry_tsc = time::read_tsc();
  tenon_exit(tenon_main());
}

}  // namespace tenon::plat

extern "C" uint64_t tenon_time_tsc_khz(void) { return tenon::plat::boot_state::tsc_khz; }

extern "C" uint64_t tenon_time_now_ns(void) {
  const uint64_t tsc_khz = tenon::plat::boot_state::tsc_khz;
  const uint64_t ticks = tenon::time::read_tsc() - tenon::plat::boot_state::boot_tsc;
  // ticks * 1e6 / khz without overflowing for centuries of uptime.
  const uint64_t seconds = ticks / (tsc_khz * 1000);
  const uint64_t remainder = ticks % (tsc_khz * 1000);
  return seconds * 1000000000ULL + remainder * 1000000ULL / tsc_khz;
}

extern "C" const tenon::abi::BootInfo* tenon_platform_boot_info(void) {
  return tenon::plat::boot_state::boot_info;
}

extern "C" tenon::abi::TelemetryPage* tenon_platform_telemetry(void) {
  return reinterpret_cast<tenon::abi::TelemetryPage*>(tenon::abi::kTelemetryAddress);
}
