// The scheduling-policy interface: what a policy micro-library (sched-fp, sched-edf) provides to
// the `sched` library. Exactly one policy is linked into an image.
#pragma once

#include <stdint.h>

extern "C" {

struct tenon_ready_job {
  uint64_t absolute_deadline_tsc;
  uint32_t priority;
  uint32_t task_index;  // ties are broken by the lower index
};

// True when job `a` must run before job `b`.
bool tenon_sched_policy_precedes(const struct tenon_ready_job* a, const struct tenon_ready_job* b);
// The policy's tenon::abi::SchedulerKind, reported in telemetry.
uint32_t tenon_sched_policy_kind(void);
}
