// The timer interface: what a timer micro-library (timer-tscdeadline) provides to the scheduler.
// One-shot deadlines on the TSC time base; not part of the application API.
#pragma once

#include <stdint.h>

extern "C" {
typedef void (*tenon_timer_callback)(void);
// Sets up the timer hardware; on_expiry runs in interrupt context, interrupts disabled.
void tenon_timer_init(tenon_timer_callback on_expiry);
// Fires once when the TSC reaches deadline_tsc (at once if it already has); 0 disarms.
void tenon_timer_arm(uint64_t deadline_tsc);
}
