// Response-time analysis and the processor-demand test; see schedulability.h.
#include "schedulability.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace tenon::controller {
namespace {

using Wide = unsigned __int128;

uint64_t ceil_div(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

// std::gcd rejects __int128 in strict C++20 mode.
Wide gcd(Wide a, Wide b) {
  while (b != 0) {
    const Wide remainder = a % b;
    a = b;
    b = remainder;
  }
  return a;
}

// Why the analysis cannot vouch for these numbers, or empty: every time must lie within
// kMaxTaskTimeNs (so that no sum or product below overflows), the WCET with its overhead too.
std::string out_of_bounds(const std::vector<TaskSpec>& tasks, uint64_t overhead) {
  if (overhead > kMaxTaskTimeNs) {
    return absl::StrCat("the per-job overhead of ", overhead, " ns exceeds the analysis' bound of ",
                        kMaxTaskTimeNs, " ns");
  }
  auto in_range = [](uint64_t ns) { return ns >= 1 && ns <= kMaxTaskTimeNs; };
  for (const TaskSpec& task : tasks) {
    // Both terms are at most kMaxTaskTimeNs here, so their sum cannot wrap.
    if (!in_range(task.period_ns) || !in_range(task.relative_deadline_ns) ||
        !in_range(task.wcet_ns) || !in_range(task.wcet_ns + overhead)) {
      return absl::StrCat("task '", task.name, "': its period, deadline or worst-case execution ",
                          "time with overhead is outside 1 ns to ", kMaxTaskTimeNs,
                          " ns, the range the analysis can vouch for");
    }
  }
  return "";
}

// A verdict of "not schedulable" for numbers the analysis refuses to reason about.
SchedulabilityVerdict refused(SchedulerKind scheduler, const char* analysis, uint64_t overhead,
                              std::string why) {
  SchedulabilityVerdict verdict;
  verdict.scheduler = scheduler;
  verdict.analysis = analysis;
  verdict.per_job_overhead_ns = overhead;
  verdict.analysed = true;
  verdict.schedulable = false;
  verdict.failure = std::move(why);
  return verdict;
}

std::vector<TaskVerdict> verdict_tasks(const std::vector<TaskSpec>& tasks, uint64_t overhead) {
  std::vector<TaskVerdict> verdicts;
  for (const TaskSpec& task : tasks) {
    TaskVerdict verdict;
    verdict.name = task.name;
    verdict.period_ns = task.period_ns;
    verdict.relative_deadline_ns = task.relative_deadline_ns;
    verdict.wcet_ns = task.wcet_ns + overhead;
    verdict.priority = task.priority;
    verdicts.push_back(verdict);
  }
  return verdicts;
}

double utilisation_of(const std::vector<TaskVerdict>& tasks) {
  double total = 0;
  for (const TaskVerdict& task : tasks) total += double(task.wcet_ns) / double(task.period_ns);
  return total;
}

// Exact comparison of sum(C/T) with 1: -1 below, 0 equal, +1 above. The running sum is kept as
// a reduced fraction; if its denominator would overflow, falls back to long double.
int compare_utilisation_with_one(const std::vector<TaskVerdict>& tasks) {
  Wide numerator = 0, denominator = 1;
  for (const TaskVerdict& task : tasks) {
    const Wide period = task.period_ns;
    const Wide divisor = gcd(denominator, period);
    const Wide scale_existing = period / divisor;
    const Wide scale_new = denominator / divisor;
    // Bounded operands: denominators stay below 2^80 or we bail out; C, T < 2^42.
    if (denominator > (Wide(1) << 80) / scale_existing) {
      long double total = 0;
      for (const TaskVerdict& t : tasks) total += (long double)t.wcet_ns / t.period_ns;
      return total < 1.0L ? -1 : (total > 1.0L ? 1 : 0);
    }
    numerator = numerator * scale_existing + Wide(task.wcet_ns) * scale_new;
    denominator *= scale_existing;
    const Wide common = gcd(numerator, denominator);
    if (common > 1) {
      numerator /= common;
      denominator /= common;
    }
  }
  return numerator < denominator ? -1 : (numerator > denominator ? 1 : 0);
}

}  // namespace

SchedulabilityVerdict analyse_fixed_priority(const std::vector<TaskSpec>& tasks,
                                             uint64_t per_job_overhead_ns) {
  if (std::string why = out_of_bounds(tasks, per_job_overhead_ns); !why.empty()) {
    return refused(SchedulerKind::kFixedPriority, "response-time", per_job_overhead_ns,
                   std::move(why));
  }
  SchedulabilityVerdict verdict;
  verdict.scheduler = SchedulerKind::kFixedPriority;
  verdict.analysis = "response-time";
  verdict.per_job_overhead_ns = per_job_overhead_ns;
  verdict.tasks = verdict_tasks(tasks, per_job_overhead_ns);
  verdict.utilisation = utilisation_of(verdict.tasks);
  verdict.analysed = !tasks.empty();
  verdict.schedulable = true;
  for (size_t i = 0; i < verdict.tasks.size(); ++i) {
    TaskVerdict& task = verdict.tasks[i];
    std::vector<const TaskVerdict*> interfering;
    for (size_t j = 0; j < verdict.tasks.size(); ++j) {
      if (j != i && verdict.tasks[j].priority >= task.priority) {
        interfering.push_back(&verdict.tasks[j]);
      }
    }
    // R(n+1) = C_i + sum over higher priority j of ceil(R(n) / T_j) * C_j, from R(0) = C_i; it
    // grows monotonically, so it either settles (the exact worst case, deadlines being
    // constrained) or passes the deadline. Every iterate stays below deadline + sum C <= 2^46.
    // Sums are taken in 128 bits: with a WCET (overhead included) above a short period, one
    // term alone can pass 2^64 before the iterate is compared with the deadline.
    uint64_t response = task.wcet_ns;
    for (;;) {
      if (response > task.relative_deadline_ns) break;
      Wide next = task.wcet_ns;
      for (const TaskVerdict* other : interfering) {
        next += Wide(ceil_div(response, other->period_ns)) * other->wcet_ns;
      }
      if (next == response) break;
      response = next > Wide(~0ull) ? ~0ull : static_cast<uint64_t>(next);
    }
    task.worst_case_response_time_ns = response;
    task.meets_deadline = response <= task.relative_deadline_ns;
    if (!task.meets_deadline && verdict.schedulable) {
      verdict.schedulable = false;
      verdict.failure = absl::StrCat(
          "under fixed-priority task '", task.name, "' has a worst-case response time of at least ",
          response, " ns, beyond its deadline of ", task.relative_deadline_ns, " ns");
    }
  }
  return verdict;
}

SchedulabilityVerdict analyse_edf(const std::vector<TaskSpec>& tasks,
                                  uint64_t per_job_overhead_ns) {
  if (std::string why = out_of_bounds(tasks, per_job_overhead_ns); !why.empty()) {
    return refused(SchedulerKind::kEarliestDeadlineFirst, "processor-demand", per_job_overhead_ns,
                   std::move(why));
  }
  SchedulabilityVerdict verdict;
  verdict.scheduler = SchedulerKind::kEarliestDeadlineFirst;
  verdict.analysis = "processor-demand";
  verdict.per_job_overhead_ns = per_job_overhead_ns;
  verdict.tasks = verdict_tasks(tasks, per_job_overhead_ns);
  verdict.utilisation = utilisation_of(verdict.tasks);
  verdict.analysed = !tasks.empty();
  if (tasks.empty()) {
    verdict.schedulable = true;
    return verdict;
  }
  auto finish = [&](bool schedulable) {
    verdict.schedulable = schedulable;
    for (TaskVerdict& task : verdict.tasks) task.meets_deadline = schedulable;
    return verdict;
  };
  const int versus_one = compare_utilisation_with_one(verdict.tasks);
  if (versus_one > 0) {
    verdict.failure = absl::StrCat("under edf the utilisation ", verdict.utilisation,
                                   " exceeds 1: the processor is overloaded");
    return finish(false);
  }
  const bool implicit =
      std::all_of(verdict.tasks.begin(), verdict.tasks.end(),
                  [](const TaskVerdict& t) { return t.relative_deadline_ns == t.period_ns; });
  // With deadlines equal to periods, U <= 1 is exact for EDF (Liu and Layland).
  if (implicit) return finish(true);

  // Otherwise check h(t) <= t at every absolute deadline t up to the synchronous busy period
  // (which ends where the processor first idles; no deadline miss can first occur later).
  uint64_t busy = 0;  // the tasks' WCETs are bounded (out_of_bounds): their sum cannot wrap
  for (const TaskVerdict& task : verdict.tasks) busy += task.wcet_ns;
  constexpr uint64_t kMaxHorizonNs = 1ull << 60;
  constexpr int kMaxIterations = 1'000'000;
  bool settled = false;
  for (int iteration = 0; iteration < kMaxIterations && busy <= kMaxHorizonNs; ++iteration) {
    Wide next = 0;
    for (const TaskVerdict& task : verdict.tasks) {
      next += Wide(ceil_div(busy, task.period_ns)) * task.wcet_ns;
    }
    if (next == busy) {
      settled = true;
      break;
    }
    busy = next > kMaxHorizonNs ? kMaxHorizonNs + 1 : static_cast<uint64_t>(next);
  }
  constexpr uint64_t kMaxPoints = 2'000'000;
  uint64_t points = 0;
  for (const TaskVerdict& task : verdict.tasks) {
    if (busy >= task.relative_deadline_ns) {
      points += (busy - task.relative_deadline_ns) / task.period_ns + 1;
    }
  }
  if (!settled || points > kMaxPoints) {
    verdict.failure = absl::StrCat("under edf the processor-demand test would need more than ",
                                   kMaxPoints, " deadlines checked (busy period ",
                                   settled ? absl::StrCat(busy, " ns") : "unbounded",
                                   "); refusing rather than guessing");
    return finish(false);
  }
  verdict.demand_horizon_ns = busy;
  uint64_t tightest_slack = ~0ull;
  for (size_t owner = 0; owner < verdict.tasks.size(); ++owner) {
    const TaskVerdict& deadline_task = verdict.tasks[owner];
    for (uint64_t t = deadline_task.relative_deadline_ns; t <= busy; t += deadline_task.period_ns) {
      Wide wide_demand = 0;
      for (const TaskVerdict& task : verdict.tasks) {
        if (t >= task.relative_deadline_ns) {
          wide_demand += Wide((t - task.relative_deadline_ns) / task.period_ns + 1) * task.wcet_ns;
        }
      }
      const uint64_t demand =
          wide_demand > Wide(~0ull) ? ~0ull : static_cast<uint64_t>(wide_demand);
      verdict.demand_points_checked++;
      if (demand > t) {
        verdict.tightest_demand_ns = demand;
        verdict.tightest_demand_at_ns = t;
        verdict.failure =
            absl::StrCat("under edf the processor demand in [0, ", t, " ns] is ", demand,
                         " ns, more than the interval: the job of task '", deadline_task.name,
                         "' with absolute deadline ", t, " ns can miss it");
        return finish(false);
      }
      if (t - demand < tightest_slack) {
        tightest_slack = t - demand;
        verdict.tightest_demand_ns = demand;
        verdict.tightest_demand_at_ns = t;
      }
    }
  }
  return finish(true);
}

SchedulabilityVerdict analyse(SchedulerKind kind, const std::vector<TaskSpec>& tasks,
                              uint64_t per_job_overhead_ns) {
  if (kind == SchedulerKind::kEarliestDeadlineFirst) return analyse_edf(tasks, per_job_overhead_ns);
  return analyse_fixed_priority(tasks, per_job_overhead_ns);
}

}  // namespace tenon::controller
