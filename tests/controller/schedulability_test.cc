// The analyses against task sets worked by hand (numbers in the comments).
#include "schedulability.h"
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

}  // namespace
}  // namespace tenon::controller
