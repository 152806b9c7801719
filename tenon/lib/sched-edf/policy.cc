// sched-edf: the nearest absolute deadline first; equal deadlines in task order.
#include "tenon/abi.h"
#include "tenon/sched_policy.h"

extern "C" bool tenon_sched_policy_precedes(const tenon_ready_job* a, const tenon_ready_job* b) {
  if (a->absolute_deadline_tsc != b->absolute_deadline_tsc) {
    return a->absolute_deadline_tsc < b->absolute_deadline_tsc;
  }
  return a->task_index < b->task_index;
}

extern "C" uint32_t tenon_sched_policy_kind(void) {
  return static_cast<uint32_t>(tenon::abi::SchedulerKind::kEarliestDeadlineFirst);
}
