// latency-probe: a 1 kHz task that only wakes up; its release -> start latency histogram is the
// B1 measurement (Mortise reads it from the telemetry page).
#include "tenon/app.h"
#include "tenon/console.h"
#include "tenon/task.h"

namespace {
void probe(void*) {
  for (;;) tenon_task_wait_next_period();
}
}  // namespace

extern "C" int64_t tenon_main(void) {
  tenon_task_params params{"probe", 1'000'000, 1'000'000, 90, probe, nullptr};
  if (tenon_task_create(&params) < 0) return 1;
#ifdef LATENCY_PROBE_POLL_LEAD_NS
  tenon_sched_set_poll_lead_ns(LATENCY_PROBE_POLL_LEAD_NS);
#endif
  tenon::console::println("latency-probe: 1 kHz task released");
  tenon_sched_run();
  return 0;
}
