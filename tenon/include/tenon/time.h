// Tenon time: the guest's monotonic clock, read from the invariant TSC.
#pragma once

#include <stdint.h>

extern "C" {
// Nanoseconds since the instance booted.
uint64_t tenon_time_now_ns(void);
// TSC frequency the platform reported at boot.
uint64_t tenon_time_tsc_khz(void);
}

namespace tenon::time {
inline uint64_t read_tsc() {
  uint32_t low, high;
  asm volatile("rdtsc" : "=a"(low), "=d"(high));
  return (static_cast<uint64_t>(high) << 32) | low;
}
inline uint64_t now_ns() { return tenon_time_now_ns(); }
}  // namespace tenon::time
