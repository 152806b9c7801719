// overrun: a 1 kHz task whose declared WCET (100 us, app.yaml) passes the schedulability analysis
// but whose real work (1.5 ms of spinning on the TSC) misses every deadline. It stands for a bad
// revision: what rollout health gates exist to catch, since the analysis cannot.
#include <stdint.h>

#include "tenon/app.h"
#include "tenon/console.h"
#include "tenon/task.h"
#include "tenon/time.h"

namespace {
void work(void*) {
  for (;;) {
    const uint64_t end = tenon::time::read_tsc() + 1'500'000 * tenon_time_tsc_khz() / 1'000'000;
    while (tenon::time::read_tsc() < end) asm volatile("pause");
    tenon_task_wait_next_period();
  }
}
}  // namespace

extern "C" int64_t tenon_main(void) {
  tenon_task_params params{"work", 1'000'000, 1'000'000, 30, work, nullptr};
  if (tenon_task_create(&params) < 0) return 1;
  tenon::console::println("overrun: 1 kHz task, 1.5 ms of work per 1 ms period");
  tenon_sched_run();
  return 0;
}
