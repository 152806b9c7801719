// Tenon periodic tasks (micro-library `sched` with a policy, `sched-fp` or `sched-edf`).
//
//   void control(void*) {
//     for (;;) { do_one_job(); tenon_task_wait_next_period(); }
//   }
//   tenon_task_params params = {"control", 1'000'000, 1'000'000, 10, control, nullptr};
//   tenon_task_create(&params);
//   tenon_sched_run();  // returns after the configured run time, if any
#pragma once

#include <stdint.h>

extern "C" {

struct tenon_task_params {
  const char* name;  // up to 15 characters are kept in telemetry
  uint64_t period_ns;
  uint64_t relative_deadline_ns;  // 0: equal to the period
  uint32_t priority;              // fixed-priority scheduling: larger runs first
  void (*body)(void* argument);   // loops over jobs, calling tenon_task_wait_next_period
  void* argument;
};

// Adds a task before tenon_sched_run. Returns its index, or a negative value when there are too
// many tasks, the period is 0, the deadline exceeds the period, or memory for its stack is out.
int32_t tenon_task_create(const struct tenon_task_params* params);

// Ends the calling task's current job and sleeps until its next release.
void tenon_task_wait_next_period(void);

// Spin on the TSC for the last `lead_ns` before each release instead of taking the timer
// interrupt exactly at it (0, the default, disables polling). Call before tenon_sched_run.
void tenon_sched_set_poll_lead_ns(uint64_t lead_ns);

// Releases every task at a common start instant and schedules them. Returns once the run time
// the hypervisor configured (boot info app_run_ns) has passed; never returns when that is 0.
void tenon_sched_run(void);
}
