// timer-tscdeadline: the local APIC in x2APIC mode, its timer in TSC-deadline mode. Arming is one
// MSR write; there is no periodic tick.
#include "tenon/timer.h"

#include "tenon/arch.h"

namespace {

constexpr uint32_t kApicBaseMsr = 0x1b;
constexpr uint64_t kApicGlobalEnable = 1ull << 11;
constexpr uint64_t kApicX2Mode = 1ull << 10;
constexpr uint32_t kTaskPriorityMsr = 0x808;
constexpr uint32_t kEndOfInterruptMsr = 0x80b;
constexpr uint32_t kSpuriousVectorMsr = 0x80f;
constexpr uint32_t kTimerVectorMsr = 0x832;
constexpr uint32_t kTscDeadlineMsr = 0x6e0;
constexpr uint64_t kApicSoftwareEnable = 1ull << 8;
constexpr uint64_t kTimerModeTscDeadline = 2ull << 17;

constexpr uint32_t kTimerVector = tenon::arch::kFirstInterruptVector;
constexpr uint32_t kSpuriousVector =
    tenon::arch::kFirstInterruptVector + tenon::arch::kInterruptVectorCount - 1;

tenon_timer_callback expiry_callback = nullptr;

void on_timer_interrupt(uint32_t) {
  tenon_arch_write_msr(kEndOfInterruptMsr, 0);
  if (expiry_callback != nullptr) expiry_callback();
}

void on_spurious_interrupt(uint32_t) {}

}  // namespace

extern "C" void tenon_timer_init(tenon_timer_callback on_expiry) {
  expiry_callback = on_expiry;
  tenon_arch_set_interrupt_handler(kTimerVector, on_timer_interrupt);
  tenon_arch_set_interrupt_handler(kSpuriousVector, on_spurious_interrupt);
  tenon_arch_write_msr(kApicBaseMsr,
                       tenon_arch_read_msr(kApicBaseMsr) | kApicGlobalEnable | kApicX2Mode);
  tenon_arch_write_msr(kSpuriousVectorMsr, kApicSoftwareEnable | kSpuriousVector);
  tenon_arch_write_msr(kTaskPriorityMsr, 0);
  tenon_arch_write_msr(kTimerVectorMsr, kTimerModeTscDeadline | kTimerVector);
}

extern "C" void tenon_timer_arm(uint64_t deadline_tsc) {
  tenon_arch_write_msr(kTscDeadlineMsr, deadline_tsc);
}
