// timer-lapic: the local APIC's own timer in one-shot mode, for CPUs without the TSC-deadline
// timer (QEMU's TCG offers neither it nor x2APIC). The APIC is reached over MMIO in xAPIC mode.
// The timer counts in APIC bus ticks, not TSC ticks: their ratio is measured once at init against
// the TSC, and each deadline is converted into a count from "now". There is no periodic tick.
#include "tenon/timer.h"

#include "tenon/abi.h"
#include "tenon/arch.h"
#include "tenon/time.h"

namespace {

constexpr uint32_t kTaskPriority = 0x80;
constexpr uint32_t kEndOfInterrupt = 0xb0;
constexpr uint32_t kSpuriousVector = 0xf0;
constexpr uint32_t kTimerVectorEntry = 0x320;
constexpr uint32_t kTimerInitialCount = 0x380;
constexpr uint32_t kTimerCurrentCount = 0x390;
constexpr uint32_t kTimerDivide = 0x3e0;
constexpr uint32_t kApicSoftwareEnable = 1u << 8;
constexpr uint32_t kTimerMasked = 1u << 16;  // one-shot mode is mode 0: no mode bits
constexpr uint32_t kDivideByOne = 0xb;
constexpr uint32_t kMaxCount = 0xffffffffu;
// Long enough that the count difference is precise to a few parts per million, short enough not
// to show in boot time.
constexpr uint64_t kCalibrationNs = 200'000;

constexpr uint32_t kTimerVector = tenon::arch::kFirstInterruptVector;
constexpr uint32_t kSpuriousInterruptVector =
    tenon::arch::kFirstInterruptVector + tenon::arch::kInterruptVectorCount - 1;

tenon_timer_callback expiry_callback = nullptr;
// APIC timer ticks per TSC tick, as a 32.32 fixed-point number.
uint64_t apic_ticks_per_tsc_tick_q32 = 0;

volatile uint32_t& apic_register(uint32_t offset) {
  return *reinterpret_cast<volatile uint32_t*>(tenon::abi::kLocalApicAddress + offset);
}

void on_timer_interrupt(uint32_t) {
  apic_register(kEndOfInterrupt) = 0;
  if (expiry_callback != nullptr) expiry_callback();
}

void on_spurious_interrupt(uint32_t) {}

void calibrate() {
  const uint64_t window_ticks = tenon_time_tsc_khz() * kCalibrationNs / 1'000'000;
  apic_register(kTimerVectorEntry) = kTimerMasked | kTimerVector;
  apic_register(kTimerInitialCount) = kMaxCount;
  const uint32_t count_start = apic_register(kTimerCurrentCount);
  const uint64_t tsc_start = tenon::time::read_tsc();
  uint64_t tsc_end = tsc_start;
  while (tsc_end - tsc_start < window_ticks) tsc_end = tenon::time::read_tsc();
  const uint32_t count_end = apic_register(kTimerCurrentCount);
  apic_register(kTimerInitialCount) = 0;
  const uint64_t elapsed_counts = count_start - count_end;  // < 2^32, so the shift cannot wrap
  apic_ticks_per_tsc_tick_q32 = (elapsed_counts << 32) / (tsc_end - tsc_start);
  if (apic_ticks_per_tsc_tick_q32 == 0) apic_ticks_per_tsc_tick_q32 = 1;
}

}  // namespace

extern "C" void tenon_timer_init(tenon_timer_callback on_expiry) {
  expiry_callback = on_expiry;
  tenon_arch_set_interrupt_handler(kTimerVector, on_timer_interrupt);
  tenon_arch_set_interrupt_handler(kSpuriousInterruptVector, on_spurious_interrupt);
  apic_register(kSpuriousVector) = kApicSoftwareEnable | kSpuriousInterruptVector;
  apic_register(kTaskPriority) = 0;
  apic_register(kTimerDivide) = kDivideByOne;
  calibrate();
  apic_register(kTimerVectorEntry) = kTimerVector;
}

extern "C" void tenon_timer_arm(uint64_t deadline_tsc) {
  if (deadline_tsc == 0) {
    apic_register(kTimerInitialCount) = 0;
    return;
  }
  const uint64_t now = tenon::time::read_tsc();
  uint64_t count = 1;
  if (deadline_tsc > now) {
    const unsigned __int128 product =
        static_cast<unsigned __int128>(deadline_tsc - now) * apic_ticks_per_tsc_tick_q32;
    const unsigned __int128 counts = product >> 32;
    // A deadline beyond the counter's range fires early; the scheduler then arms it again.
    count = counts > kMaxCount ? kMaxCount : static_cast<uint64_t>(counts);
    if (count == 0) count = 1;
  }
  apic_register(kTimerInitialCount) = static_cast<uint32_t>(count);
}
