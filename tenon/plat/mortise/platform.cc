// plat-mortise: boot from Mortise's boot info, run the app, and turn exits, faults, panics and
// console output into hypercalls.
#include <stdint.h>

#include "hypercall.h"
#include "tenon/abi.h"
#include "tenon/app.h"
#include "tenon/arch.h"
#include "tenon/exit.h"
#include "tenon/platform.h"
#include "tenon/time.h"

namespace {

struct AbiNote {
  uint32_t name_size;
  uint32_t descriptor_size;
  uint32_t type;
  char name[8];
  uint32_t abi_version;
};

// The ABI version this image was built against, read by Mortise's loader before boot.
[[gnu::section(".note.tenon"), gnu::used, gnu::aligned(4)]] const AbiNote abi_note = {
    sizeof(tenon::abi::kNoteName),
    sizeof(uint32_t),
    tenon::abi::kNoteTypeAbiVersion,
    {'T', 'e', 'n', 'o', 'n', 0, 0, 0},
    tenon::abi::kVersion};

uint64_t tsc_khz = 0;
uint64_t boot_tsc = 0;
const tenon::abi::BootInfo* boot_info_block = nullptr;

}  // namespace

extern "C" void (*__init_array_start[])(void);
extern "C" void (*__init_array_end[])(void);

extern "C" [[noreturn]] void tenon_plat_mortise_start(const tenon::abi::BootInfo* boot_info) {
  boot_tsc = tenon::time::read_tsc();
  if (boot_info->magic != tenon::abi::kBootInfoMagic ||
      boot_info->abi_version != tenon::abi::kVersion) {
    static const char kMessage[] = "plat-mortise: boot info magic or ABI version mismatch";
    tenon_platform_panic(kMessage, sizeof(kMessage) - 1);
  }
  tsc_khz = boot_info->tsc_khz;
  boot_info_block = boot_info;
  tenon::abi::TelemetryPage* telemetry = tenon_platform_telemetry();
  telemetry->magic = tenon::abi::kTelemetryMagic;
  telemetry->abi_version = tenon::abi::kVersion;
  telemetry->entry_tsc = boot_tsc;

  tenon_arch_init();
  for (auto** constructor = __init_array_start; constructor != __init_array_end; ++constructor) {
    (*constructor)();
  }
  telemetry->main_entry_tsc = tenon::time::read_tsc();
  tenon_exit(tenon_main());
}

extern "C" [[noreturn]] void tenon_exit(int64_t status) {
  tenon::abi::ExitArgs args{status};
  tenon::plat::hypercall(tenon::abi::Hypercall::kExit, &args);
  tenon_arch_halt();
}

extern "C" uint64_t tenon_platform_console_write(const char* data, uint64_t length) {
  uint64_t total = 0;
  while (total < length) {
    uint64_t chunk = length - total;
    if (chunk > tenon::abi::kConsoleWriteMax) chunk = tenon::abi::kConsoleWriteMax;
    tenon::abi::ConsoleWriteArgs args{reinterpret_cast<uint64_t>(data + total), chunk, 0};
    tenon::plat::hypercall(tenon::abi::Hypercall::kConsoleWrite, &args);
    if (args.written == 0) break;
    total += args.written;
  }
  return total;
}

extern "C" [[noreturn]] void tenon_platform_fault(uint64_t vector, uint64_t error_code,
                                                  uint64_t rip, uint64_t rsp, uint64_t cr2) {
  tenon::abi::FaultArgs args{vector, error_code, rip, rsp, cr2};
  tenon::plat::hypercall(tenon::abi::Hypercall::kFault, &args);
  tenon_arch_halt();
}

extern "C" [[noreturn]] void tenon_platform_panic(const char* message, uint64_t length) {
  if (length > tenon::abi::kPanicMessageMax) length = tenon::abi::kPanicMessageMax;
  tenon::abi::PanicArgs args{reinterpret_cast<uint64_t>(message), length};
  tenon::plat::hypercall(tenon::abi::Hypercall::kPanic, &args);
  tenon_arch_halt();
}

extern "C" uint64_t tenon_time_tsc_khz(void) { return tsc_khz; }

extern "C" uint64_t tenon_time_now_ns(void) {
  const uint64_t ticks = tenon::time::read_tsc() - boot_tsc;
  // ticks * 1e6 / khz without overflowing for centuries of uptime.
  const uint64_t seconds = ticks / (tsc_khz * 1000);
  const uint64_t remainder = ticks % (tsc_khz * 1000);
  return seconds * 1000000000ULL + remainder * 1000000ULL / tsc_khz;
}

extern "C" const tenon::abi::BootInfo* tenon_platform_boot_info(void) { return boot_info_block; }

extern "C" tenon::abi::TelemetryPage* tenon_platform_telemetry(void) {
  return reinterpret_cast<tenon::abi::TelemetryPage*>(tenon::abi::kTelemetryAddress);
}
