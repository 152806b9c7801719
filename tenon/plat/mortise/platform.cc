// plat-mortise: Tenon as a guest of Mortise's native KVM engine. Console output, exits, faults
// and panics are hypercalls (tenon/abi.h); boot and time are shared with every platform.
#include <stdint.h>

#include "hypercall.h"
#include "plat/common/boot.h"

namespace {
TENON_PLATFORM_NOTES(tenon::abi::Platform::kMortise);
}  // namespace

extern "C" [[noreturn]] void tenon_plat_mortise_start(const tenon::abi::BootInfo* boot_info) {
  tenon::plat::boot(boot_info, "plat-mortise");
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
