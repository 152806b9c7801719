// plat-qemu: Tenon as a guest of Mortise's QEMU engine, where there are no hypercalls. Console
// bytes go to QEMU's debug console port; the instance ends by filling the exit record and
// writing its kind to QEMU's isa-debug-exit port (tenon/abi.h, "QEMU platform"). Boot and time
// are shared with every platform.
#include <stdint.h>

#include "plat/common/boot.h"

namespace {
TENON_PLATFORM_NOTES(tenon::abi::Platform::kQemu);

tenon::abi::ExitRecord* exit_record() {
  return reinterpret_cast<tenon::abi::ExitRecord*>(tenon::abi::kExitRecordAddress);
}

// Fills in the record's header and hands it to the host; QEMU ends at the port write.
[[noreturn]] void end_instance(tenon::abi::Hypercall kind) {
  tenon::abi::ExitRecord* record = exit_record();
  record->magic = tenon::abi::kExitRecordMagic;
  record->kind = static_cast<uint32_t>(kind);
  asm volatile("outl %0, %1"
               :
               : "a"(static_cast<uint32_t>(kind)), "Nd"(tenon::abi::kQemuExitPort)
               : "memory");
  tenon_arch_halt();
}
}  // namespace

extern "C" [[noreturn]] void tenon_plat_qemu_start(const tenon::abi::BootInfo* boot_info) {
  tenon::plat::boot(boot_info, "plat-qemu");
}

extern "C" [[noreturn]] void tenon_exit(int64_t status) {
  exit_record()->exit.status = status;
  end_instance(tenon::abi::Hypercall::kExit);
}

extern "C" uint64_t tenon_platform_console_write(const char* data, uint64_t length) {
  // One string instruction for the whole buffer: a single exit where QEMU runs on KVM.
  const char* cursor = data;
  uint64_t count = length;
  asm volatile("rep outsb"
               : "+S"(cursor), "+c"(count)
               : "d"(tenon::abi::kQemuConsolePort)
               : "memory");
  return length;
}

extern "C" [[noreturn]] void tenon_platform_fault(uint64_t vector, uint64_t error_code,
                                                  uint64_t rip, uint64_t rsp, uint64_t cr2) {
  exit_record()->fault = {vector, error_code, rip, rsp, cr2};
  end_instance(tenon::abi::Hypercall::kFault);
}

extern "C" [[noreturn]] void tenon_platform_panic(const char* message, uint64_t length) {
  tenon::abi::ExitRecord* record = exit_record();
  if (length > sizeof(record->panic_message)) length = sizeof(record->panic_message);
  for (uint64_t i = 0; i < length; ++i) record->panic_message[i] = message[i];
  record->panic_length = length;
  end_instance(tenon::abi::Hypercall::kPanic);
}
