// idle-10ms: one periodic task that wakes every 10 ms and does nothing; the B6 density workload,
// so that what an instance costs the host is Tenon and Mortise, not the application.
#include "tenon/app.h"
#include "tenon/console.h"
#include "tenon/task.h"

namespace {
void idle(void*) {
  for (;;) tenon_task_wait_next_period();
}
}  // namespace

extern "C" int64_t tenon_main(void) {
  tenon_task_params params{"idle", 10'000'000, 10'000'000, 10, idle, nullptr};
  if (tenon_task_create(&params) < 0) return 1;
  tenon::console::println("idle-10ms: 100 Hz task released");
  tenon_sched_run();
  return 0;
}
