// Schedulability analysis for Tenon's one-CPU periodic task sets with constrained deadlines
// (deadline <= period): exact response-time analysis for fixed priority and the processor-demand
// test for EDF. Every number is in nanoseconds; integer arithmetic throughout, so a verdict never
// depends on rounding. Times beyond kMaxTaskTimeNs (manifest.h) are refused as not schedulable
// before any arithmetic, and sums that could pass 64 bits are taken in 128.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "manifest.h"

namespace tenon::controller {

struct TaskVerdict {
  std::string name;
  uint64_t period_ns = 0;
  uint64_t relative_deadline_ns = 0;
  uint64_t wcet_ns = 0;  // as declared plus the per-job overhead
  uint32_t priority = 0;
  // Fixed priority: the proven worst-case response time, or when the task misses, the first
  // iterate of the analysis beyond the deadline (a lower bound of it). EDF: 0 (the demand test
  // proves deadlines without computing response times).
  uint64_t worst_case_response_time_ns = 0;
  bool meets_deadline = false;
};

struct SchedulabilityVerdict {
  SchedulerKind scheduler = SchedulerKind::kNone;
  bool analysed = false;  // false: no tasks
  bool schedulable = false;
  std::string analysis;    // "response-time" or "processor-demand"
  double utilisation = 0;  // for display only; decisions use integers
  uint64_t per_job_overhead_ns = 0;
  std::vector<TaskVerdict> tasks;  // in the app's task order
  // EDF: how many absolute deadlines were checked, up to which instant, and the tightest one.
  uint64_t demand_points_checked = 0;
  uint64_t demand_horizon_ns = 0;
  uint64_t tightest_demand_ns = 0;
  uint64_t tightest_demand_at_ns = 0;
  std::string failure;  // one sentence naming the task and its numbers when not schedulable
};

// Ties in priority are analysed pessimistically: an equal-priority task may run first.
SchedulabilityVerdict analyse_fixed_priority(const std::vector<TaskSpec>& tasks,
                                             uint64_t per_job_overhead_ns);
SchedulabilityVerdict analyse_edf(const std::vector<TaskSpec>& tasks, uint64_t per_job_overhead_ns);
SchedulabilityVerdict analyse(SchedulerKind kind, const std::vector<TaskSpec>& tasks,
                              uint64_t per_job_overhead_ns);

}  // namespace tenon::controller
