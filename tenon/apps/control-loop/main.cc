// control-loop: a fixed-point PID controller at 1 kHz holding a simulated first-order plant at a
// set point, a 10 ms supervisor that moves the set point and checks the error, and a 100 ms
// logger that does a few milliseconds of work (and so is preempted by the PID task).
#include <stdint.h>

#include "tenon/app.h"
#include "tenon/console.h"
#include "tenon/panic.h"
#include "tenon/task.h"
#include "tenon/time.h"

namespace {

// Fixed point with 16 fractional bits: the LibOS uses general registers only.
constexpr int64_t kOne = 1 << 16;

struct Loop {
  int64_t set_point = 50 * kOne;
  int64_t plant_output = 0;
  int64_t integral = 0;
  int64_t previous_error = 0;
  int64_t worst_error = 0;
  uint64_t supervisor_runs = 0;
} loop;

int64_t multiply(int64_t a, int64_t b) { return (a * b) / kOne; }

void busy_for_ns(uint64_t ns) {
  const uint64_t end = tenon::time::read_tsc() + ns * tenon_time_tsc_khz() / 1'000'000;
  while (tenon::time::read_tsc() < end) asm volatile("pause");
}

void pid(void*) {
  constexpr int64_t kProportional = kOne / 2, kIntegral = kOne / 50, kDerivative = kOne / 10;
  for (;;) {
    const int64_t error = loop.set_point - loop.plant_output;
    loop.integral += error;
    const int64_t control = multiply(kProportional, error) + multiply(kIntegral, loop.integral) +
                            multiply(kDerivative, error - loop.previous_error);
    loop.previous_error = error;
    // Plant: y += (u - y) / 8 per millisecond.
    loop.plant_output += (control - loop.plant_output) / 8;
    tenon_task_wait_next_period();
  }
}

void supervisor(void*) {
  for (;;) {
    busy_for_ns(100'000);
    const int64_t error = loop.set_point - loop.plant_output;
    const int64_t magnitude = error < 0 ? -error : error;
    if (magnitude > loop.worst_error && loop.supervisor_runs > 100) loop.worst_error = magnitude;
    // Alternate the set point every second.
    if (++loop.supervisor_runs % 100 == 0) {
      loop.set_point = loop.set_point == 50 * kOne ? 60 * kOne : 50 * kOne;
    }
    tenon_task_wait_next_period();
  }
}

void logger(void*) {
  for (;;) {
    busy_for_ns(2'000'000);
    tenon_task_wait_next_period();
  }
}

}  // namespace

extern "C" int64_t tenon_main(void) {
  const tenon_task_params tasks[] = {
      {"pid", 1'000'000, 1'000'000, 30, pid, nullptr},
      {"supervisor", 10'000'000, 10'000'000, 20, supervisor, nullptr},
      {"logger", 100'000'000, 100'000'000, 10, logger, nullptr},
  };
  for (const tenon_task_params& task : tasks) TENON_ASSERT(tenon_task_create(&task) >= 0);
  tenon::console::println("control-loop: pid 1 kHz, supervisor 100 Hz, logger 10 Hz");
  tenon_sched_run();
  tenon::console::println("control-loop: plant at ", loop.plant_output / kOne, ", set point ",
                          loop.set_point / kOne, ", supervisor runs ", loop.supervisor_runs);
  return 0;
}
