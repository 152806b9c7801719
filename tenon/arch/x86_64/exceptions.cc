// Turns a CPU exception frame into a fault report to the platform. Tenon does not recover from
// exceptions: a fault ends the instance with its vector, RIP and error code.
#include <stdint.h>

#include "tenon/platform.h"

namespace {
struct ExceptionFrame {
  uint64_t vector;
  uint64_t error_code;
  uint64_t rip;
  uint64_t cs;
  uint64_t rflags;
  uint64_t rsp;
  uint64_t ss;
};
constexpr uint64_t kPageFaultVector = 14;
}  // namespace

extern "C" [[noreturn]] void tenon_arch_exception(const ExceptionFrame* frame) {
  uint64_t faulting_address = 0;
  if (frame->vector == kPageFaultVector) asm volatile("mov %%cr2, %0" : "=r"(faulting_address));
  tenon_platform_fault(frame->vector, frame->error_code, frame->rip, frame->rsp, faulting_address);
}
