// The analyses against task sets worked by hand (numbers in the comments).
#include "schedulability.h"

#include <algorithm>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tenon::controller {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kMs = 1'000'000;

TaskSpec task(const char* name, uint64_t wcet, uint64_t period, uint64_t deadline,
              uint32_t priority) {
  return TaskSpec{name, period, deadline, wcet, priority, 0};
}

TEST(SchedulabilityTest, ResponseTimeAnalysisTextbookSet) {
  // C/T = 3/7, 3/12, 5/20 by rate. R1 = 3. R2: 3 + ceil(6/7)3 = 6. R3: 5 -> 11 -> 14 -> 17 ->
  // 5 + ceil(17/7)3 + ceil(17/12)3 = 20 -> 20: exactly the deadline.
  SchedulabilityVerdict verdict = analyse_fixed_priority(
      {task("a", 3 * kMs, 7 * kMs, 7 * kMs, 3), task("b", 3 * kMs, 12 * kMs, 12 * kMs, 2),
       task("c", 5 * kMs, 20 * kMs, 20 * kMs, 1)},
      0);
  ASSERT_TRUE(verdict.schedulable) << verdict.failure;
  EXPECT_EQ(verdict.tasks[0].worst_case_response_time_ns, 3 * kMs);
  EXPECT_EQ(verdict.tasks[1].worst_case_response_time_ns, 6 * kMs);
  EXPECT_EQ(verdict.tasks[2].worst_case_response_time_ns, 20 * kMs);
  // One more ns of overhead per job pushes c past its deadline.
  SchedulabilityVerdict tighter = analyse_fixed_priority(
      {task("a", 3 * kMs, 7 * kMs, 7 * kMs, 3), task("b", 3 * kMs, 12 * kMs, 12 * kMs, 2),
       task("c", 5 * kMs, 20 * kMs, 20 * kMs, 1)},
      1);
  EXPECT_FALSE(tighter.schedulable);
  EXPECT_FALSE(tighter.tasks[2].meets_deadline);
  EXPECT_THAT(tighter.failure, HasSubstr("task 'c'"));
}

TEST(SchedulabilityTest, UtilisationOneIsEdfSchedulableButNotFixedPriority) {
  // C/T = 2/4 and 5/10: U = 1 exactly. Rate-monotonic: R2 = 5 -> 5 + ceil(5/4)2 = 9 ->
  // 5 + ceil(9/4)2 = 11 > 10. EDF with implicit deadlines: U <= 1 suffices.
  const std::vector<TaskSpec> tasks = {task("fast", 2 * kMs, 4 * kMs, 4 * kMs, 2),
                                       task("slow", 5 * kMs, 10 * kMs, 10 * kMs, 1)};
  SchedulabilityVerdict fixed_priority = analyse_fixed_priority(tasks, 0);
  EXPECT_FALSE(fixed_priority.schedulable);
  EXPECT_TRUE(fixed_priority.tasks[0].meets_deadline);
  EXPECT_FALSE(fixed_priority.tasks[1].meets_deadline);
  EXPECT_EQ(fixed_priority.tasks[1].worst_case_response_time_ns, 11 * kMs);
  EXPECT_EQ(fixed_priority.failure,
            "under fixed-priority task 'slow' has a worst-case response time of at least "
            "11000000 ns, beyond its deadline of 10000000 ns");
  SchedulabilityVerdict edf = analyse_edf(tasks, 0);
  EXPECT_TRUE(edf.schedulable) << edf.failure;
  EXPECT_DOUBLE_EQ(edf.utilisation, 1.0);
  // One ns more and EDF is overloaded too.
  EXPECT_FALSE(analyse_edf(tasks, 1).schedulable);
  EXPECT_THAT(analyse_edf(tasks, 1).failure, HasSubstr("exceeds 1"));
}

TEST(SchedulabilityTest, ProcessorDemandWithConstrainedDeadlines) {
  // (C, D, T) = (1, 2, 4) and (1, 3, 4): busy period 2, h(2) = 1 <= 2: schedulable.
  SchedulabilityVerdict ok = analyse_edf(
      {task("a", 1 * kMs, 4 * kMs, 2 * kMs, 1), task("b", 1 * kMs, 4 * kMs, 3 * kMs, 1)}, 0);
  EXPECT_TRUE(ok.schedulable) << ok.failure;
  EXPECT_EQ(ok.demand_horizon_ns, 2 * kMs);
  EXPECT_EQ(ok.demand_points_checked, 1u);
  // (2, 3, 4) twice: U = 1 but h(3) = 4 > 3: the job of the first task due at 3 can miss.
  SchedulabilityVerdict bad = analyse_edf(
      {task("a", 2 * kMs, 4 * kMs, 3 * kMs, 1), task("b", 2 * kMs, 4 * kMs, 3 * kMs, 1)}, 0);
  EXPECT_FALSE(bad.schedulable);
  EXPECT_EQ(bad.failure,
            "under edf the processor demand in [0, 3000000 ns] is 4000000 ns, more than the "
            "interval: the job of task 'a' with absolute deadline 3000000 ns can miss it");
}

TEST(SchedulabilityTest, EqualPrioritiesInterfereBothWays) {
  // Two equal-priority tasks 1/4 each: each may wait for the other, R = 2.
  SchedulabilityVerdict verdict = analyse_fixed_priority(
      {task("a", 1 * kMs, 4 * kMs, 4 * kMs, 5), task("b", 1 * kMs, 4 * kMs, 4 * kMs, 5)}, 0);
  EXPECT_EQ(verdict.tasks[0].worst_case_response_time_ns, 2 * kMs);
  EXPECT_EQ(verdict.tasks[1].worst_case_response_time_ns, 2 * kMs);
}

TEST(SchedulabilityTest, OverheadIsChargedToEveryJob) {
  SchedulabilityVerdict verdict = analyse_fixed_priority({task("a", 1000, 10000, 10000, 1)}, 500);
  EXPECT_EQ(verdict.tasks[0].wcet_ns, 1500u);
  EXPECT_EQ(verdict.tasks[0].worst_case_response_time_ns, 1500u);
}

TEST(SchedulabilityTest, NoTasksIsNotAnalysed) {
  EXPECT_FALSE(analyse_fixed_priority({}, 0).analysed);
  EXPECT_FALSE(analyse_edf({}, 0).analysed);
}

TEST(SchedulabilityTest, TimesBeyondTheBoundAreRefusedNotWrapped) {
  // period = wcet = 2^64 - 1 with 2 us of overhead: the WCET plus its overhead used to wrap to
  // 1999 ns and the set was "schedulable" at a utilisation of ~1e-16.
  constexpr uint64_t kMax = ~0ull;
  for (const SchedulerKind kind :
       {SchedulerKind::kFixedPriority, SchedulerKind::kEarliestDeadlineFirst}) {
    const SchedulabilityVerdict verdict = analyse(kind, {task("huge", kMax, kMax, kMax, 1)}, 2'000);
    EXPECT_FALSE(verdict.schedulable);
    EXPECT_THAT(verdict.failure, HasSubstr("task 'huge'"));
    EXPECT_THAT(verdict.failure, HasSubstr("the analysis can vouch for"));
  }
  // Just inside the bound is analysed as usual; just beyond it is refused.
  EXPECT_TRUE(analyse_fixed_priority(
                  {task("hour", kMaxTaskTimeNs / 2, kMaxTaskTimeNs, kMaxTaskTimeNs, 1)}, 0)
                  .schedulable);
  EXPECT_FALSE(
      analyse_fixed_priority({task("beyond", 1, kMaxTaskTimeNs + 1, kMaxTaskTimeNs + 1, 1)}, 0)
          .schedulable);
  EXPECT_FALSE(analyse_edf({task("slow", 1, kMs, kMs, 1)}, kMaxTaskTimeNs + 1).schedulable);
}

// The reference: response-time analysis and processor demand in 128-bit arithmetic, straight
// from the definitions, for sets whose numbers sit near the bound.
using Wide = unsigned __int128;

bool reference_fixed_priority(const std::vector<TaskSpec>& tasks, uint64_t overhead) {
  for (size_t i = 0; i < tasks.size(); ++i) {
    const Wide wcet = Wide(tasks[i].wcet_ns) + overhead;
    Wide response = wcet;
    while (response <= tasks[i].relative_deadline_ns) {
      Wide next = wcet;
      for (size_t j = 0; j < tasks.size(); ++j) {
        if (j == i || tasks[j].priority < tasks[i].priority) continue;
        next += (response + tasks[j].period_ns - 1) / tasks[j].period_ns *
                (Wide(tasks[j].wcet_ns) + overhead);
      }
      if (next == response) break;
      response = next;
    }
    if (response > tasks[i].relative_deadline_ns) return false;
  }
  return true;
}

TEST(SchedulabilityTest, FixedPriorityMatchesAWideReferenceNearTheBound) {
  // A fixed seed: the same sets on every run.
  uint64_t state = 0x9e3779b97f4a7c15ull;
  auto next = [&] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  auto near = [&](uint64_t limit) {
    // Half the draws within 2^20 of the bound, half anywhere in [1, limit].
    const uint64_t offset = next() % (1ull << 20);
    return next() % 2 == 0 ? std::max<uint64_t>(1, limit - std::min(limit - 1, offset))
                           : 1 + next() % limit;
  };
  int schedulable = 0;
  for (int round = 0; round < 2000; ++round) {
    std::vector<TaskSpec> tasks;
    const int count = 1 + static_cast<int>(next() % 4);
    for (int i = 0; i < count; ++i) {
      const uint64_t period = round % 3 == 0 ? 1 + next() % 1000 : near(kMaxTaskTimeNs);
      const uint64_t deadline = 1 + next() % period;
      const uint64_t wcet = 1 + next() % deadline;
      tasks.push_back(task("t", wcet, period, deadline, static_cast<uint32_t>(next() % 3)));
    }
    const uint64_t overhead = next() % 2 == 0 ? 0 : near(kMaxTaskTimeNs) % 5000;
    const SchedulabilityVerdict verdict = analyse_fixed_priority(tasks, overhead);
    const bool expected = reference_fixed_priority(tasks, overhead);
    ASSERT_EQ(verdict.schedulable, expected) << "round " << round << ": " << verdict.failure;
    schedulable += expected;
  }
  // Both answers occur, or the comparison proves little.
  EXPECT_GT(schedulable, 100);
  EXPECT_LT(schedulable, 1900);
}

}  // namespace
}  // namespace tenon::controller
