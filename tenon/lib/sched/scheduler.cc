// sched: periodic tasks on one CPU. Releases happen at exact TSC instants programmed into the
// one-shot timer (no tick); the linked policy picks which ready job runs; every job's release ->
// start latency and release -> completion time go into the telemetry page under its seqlock.
// All scheduler state is touched with interrupts disabled.
#include "tenon/task.h"

#include <stdint.h>

#include "tenon/abi.h"
#include "tenon/arch.h"
#include "tenon/platform.h"
#include "tenon/sched_policy.h"
#include "tenon/time.h"
#include "tenon/timer.h"

namespace {

// The composition engine's configuration object defines the stack size a composition chose
// (option task_stack_bytes of library.yaml); images linked without one, like the CMake-built
// examples, leave the weak reference at address 0 and get the manifest's default.
extern "C" __attribute__((weak)) const uint64_t tenon_config_sched_task_stack_bytes;
constexpr uint64_t kDefaultTaskStackBytes = 4096;

uint64_t task_stack_bytes() {
  const uint64_t* configured = &tenon_config_sched_task_stack_bytes;
  const uint64_t bytes = configured != nullptr ? *configured : kDefaultTaskStackBytes;
  return bytes & ~uint64_t{15};  // the x86_64 ABI wants 16-byte aligned stacks
}
constexpr uint64_t kStartDelayNs = 200'000;  // first release, after every task is set up

enum class TaskStatus : uint8_t { kWaiting, kReady, kFinished };

struct Task {
  tenon_ready_job job;  // deadline, priority, index as the policy sees them
  TaskStatus status;
  bool job_spans_gap;  // the current job saw a pause: do not count its timing
  uint64_t period_ticks;
  uint64_t deadline_ticks;
  uint64_t release_tsc;       // current job
  uint64_t next_release_tsc;  // while waiting
  uint64_t stack_pointer;     // saved while not running
  void (*body)(void*);
  void* argument;
};

Task tasks[tenon::abi::kMaxTasks];
uint32_t task_count = 0;
Task* current = nullptr;  // nullptr: the idle context
uint64_t idle_stack_pointer = 0;
uint64_t heap_next = 0;
uint64_t poll_lead_ticks = 0;
uint64_t run_end_tsc = 0;  // 0: forever
uint64_t seen_resume_count = 0;
uint64_t last_resumed_at = 0;  // TSC of the last resume accounted for
uint64_t armed_deadline = 0;   // what the timer holds; it clears itself when it fires
bool running = false;

tenon::abi::TelemetryPage* telemetry() { return tenon_platform_telemetry(); }

uint64_t ns_to_ticks(uint64_t ns) { return ns * tenon_time_tsc_khz() / 1'000'000; }

// Seqlock writer side: the page is only ever written here, with interrupts off.
void begin_update() {
  telemetry()->sequence++;
  asm volatile("" ::: "memory");
}
void end_update() {
  asm volatile("" ::: "memory");
  telemetry()->sequence++;
}

void record(tenon::abi::Histogram& histogram, uint64_t value) {
  if (histogram.count == 0 || value < histogram.min) histogram.min = value;
  if (value > histogram.max) histogram.max = value;
  histogram.count++;
  histogram.sum += value;
  uint32_t bucket = value == 0 ? 0 : 63 - static_cast<uint32_t>(__builtin_clzll(value));
  if (bucket >= tenon::abi::kHistogramBuckets) bucket = tenon::abi::kHistogramBuckets - 1;
  histogram.buckets[bucket]++;
}

uint32_t index_of(const Task* task) { return static_cast<uint32_t>(task - tasks); }

// After the hypervisor paused and resumed us, releases that fell into the pause are skipped and
// counted as gap jobs, and jobs in flight are not timed: a pause is not latency.
void account_for_pause() {
  const tenon::abi::BootInfo* boot_info = tenon_platform_boot_info();
  const uint64_t resume_count = *static_cast<volatile const uint64_t*>(&boot_info->resume_count);
  if (resume_count == seen_resume_count) return;
  seen_resume_count = resume_count;
  const uint64_t resumed_at = *static_cast<volatile const uint64_t*>(&boot_info->last_resume_tsc);
  last_resumed_at = resumed_at;
  begin_update();
  telemetry()->gaps++;
  for (uint32_t i = 0; i < task_count; ++i) {
    Task& task = tasks[i];
    if (task.status == TaskStatus::kReady) task.job_spans_gap = true;
    if (task.status == TaskStatus::kWaiting && task.next_release_tsc < resumed_at) {
      const uint64_t skipped = (resumed_at - task.next_release_tsc) / task.period_ticks + 1;
      task.next_release_tsc += skipped * task.period_ticks;
      telemetry()->tasks[i].gap_jobs += skipped;
    }
  }
  end_update();
}

void record_job_start(Task* task, uint64_t now) {
  account_for_pause();
  tenon::abi::TaskTelemetry& entry = telemetry()->tasks[index_of(task)];
  begin_update();
  entry.jobs++;
  if (!task->job_spans_gap) record(entry.release_latency, now - task->release_tsc);
  end_update();
}

void record_job_completion(Task* task, uint64_t now) {
  account_for_pause();
  tenon::abi::TaskTelemetry& entry = telemetry()->tasks[index_of(task)];
  begin_update();
  if (!task->job_spans_gap) {
    record(entry.response_time, now - task->release_tsc);
    if (now > task->job.absolute_deadline_tsc) entry.deadline_misses++;
  }
  end_update();
  task->job_spans_gap = false;
}

void release_due_jobs(uint64_t now) {
  for (uint32_t i = 0; i < task_count; ++i) {
    Task& task = tasks[i];
    if (task.status != TaskStatus::kWaiting || task.next_release_tsc > now) continue;
    if (task.next_release_tsc < last_resumed_at) {
      const uint64_t skipped = (last_resumed_at - task.next_release_tsc) / task.period_ticks + 1;
      task.next_release_tsc += skipped * task.period_ticks;
      begin_update();
      telemetry()->tasks[i].gap_jobs += skipped;
      end_update();
      if (task.next_release_tsc > now) continue;
    }
    task.status = TaskStatus::kReady;
    task.release_tsc = task.next_release_tsc;
    task.job.absolute_deadline_tsc = task.release_tsc + task.deadline_ticks;
  }
}

uint64_t earliest_release() {
  uint64_t earliest = ~0ull;
  for (uint32_t i = 0; i < task_count; ++i) {
    if (tasks[i].status == TaskStatus::kWaiting && tasks[i].next_release_tsc < earliest) {
      earliest = tasks[i].next_release_tsc;
    }
  }
  return earliest;
}

Task* pick_next() {
  Task* best = nullptr;
  for (uint32_t i = 0; i < task_count; ++i) {
    Task* task = &tasks[i];
    if (task->status != TaskStatus::kReady) continue;
    if (best == nullptr || tenon_sched_policy_precedes(&task->job, &best->job)) best = task;
  }
  return best;
}

// The heart: release what is due, arm the timer for the next release, run the best job.
void reschedule() {
  uint64_t now = tenon::time::read_tsc();
  account_for_pause();
  release_due_jobs(now);
  uint64_t next_release = earliest_release();
  // Polling mode: when the next release is closer than the lead, spin for it rather than pay
  // for an interrupt.
  while (poll_lead_ticks != 0 && next_release != ~0ull && next_release - now <= poll_lead_ticks &&
         pick_next() == nullptr) {
    while (tenon::time::read_tsc() < next_release) asm volatile("pause");
    now = tenon::time::read_tsc();
    release_due_jobs(now);
    next_release = earliest_release();
  }
  if (run_end_tsc != 0 && now >= run_end_tsc) running = false;
  uint64_t wake = next_release == ~0ull ? 0 : next_release - poll_lead_ticks;
  if (run_end_tsc != 0 && (wake == 0 || wake > run_end_tsc)) wake = run_end_tsc;
  if (!running) wake = 0;
  // Every timer write is a trap to the hypervisor: skip the ones that change nothing.
  if (wake != armed_deadline) {
    tenon_timer_arm(wake);
    armed_deadline = wake;
  }

  Task* next = running ? pick_next() : nullptr;
  if (next == current) return;
  uint64_t* save = current != nullptr ? &current->stack_pointer : &idle_stack_pointer;
  const uint64_t resume = next != nullptr ? next->stack_pointer : idle_stack_pointer;
  current = next;
  tenon_arch_context_switch(save, resume);
}

void on_timer_expiry() {
  armed_deadline = 0;
  reschedule();
}

[[noreturn]] void task_entry(void* argument) {
  Task* task = static_cast<Task*>(argument);
  tenon_arch_interrupts_disable();
  record_job_start(task, tenon::time::read_tsc());
  tenon_arch_interrupts_enable();
  task->body(task->argument);
  // A body that returns ends its task.
  tenon_arch_interrupts_disable();
  task->status = TaskStatus::kFinished;
  reschedule();
  tenon_arch_halt();  // not reached: a finished task is never picked again
}

void copy_name(char* destination, const char* source) {
  uint32_t i = 0;
  for (; source != nullptr && source[i] != '\0' && i < tenon::abi::kTaskNameMax; ++i) {
    destination[i] = source[i];
  }
  for (; i < tenon::abi::kTaskNameMax; ++i) destination[i] = '\0';
}

}  // namespace

extern "C" int32_t tenon_task_create(const tenon_task_params* params) {
  if (running || task_count >= tenon::abi::kMaxTasks || params->period_ns == 0 ||
      params->relative_deadline_ns > params->period_ns || params->body == nullptr) {
    return -1;
  }
  const tenon::abi::BootInfo* boot_info = tenon_platform_boot_info();
  if (heap_next == 0) heap_next = boot_info->heap_start;
  const uint64_t stack_bytes = task_stack_bytes();
  if (heap_next + stack_bytes > boot_info->heap_end) return -2;
  const uint64_t stack_top = heap_next + stack_bytes;
  heap_next = stack_top;

  const uint32_t index = task_count++;
  Task& task = tasks[index];
  task.job = {0, params->priority, index};
  task.status = TaskStatus::kWaiting;
  task.job_spans_gap = false;
  task.period_ticks = ns_to_ticks(params->period_ns);
  task.deadline_ticks = ns_to_ticks(params->relative_deadline_ns != 0 ? params->relative_deadline_ns
                                                                      : params->period_ns);
  task.body = params->body;
  task.argument = params->argument;
  task.stack_pointer = tenon_arch_context_init(stack_top, task_entry, &task);

  begin_update();
  tenon::abi::TaskTelemetry& entry = telemetry()->tasks[index];
  copy_name(entry.name, params->name);
  entry.period_ticks = task.period_ticks;
  entry.deadline_ticks = task.deadline_ticks;
  entry.priority = params->priority;
  telemetry()->task_count = task_count;
  end_update();
  return static_cast<int32_t>(index);
}

extern "C" void tenon_task_wait_next_period(void) {
  tenon_arch_interrupts_disable();
  Task* task = current;
  const uint64_t now = tenon::time::read_tsc();
  record_job_completion(task, now);
  task->next_release_tsc = task->release_tsc + task->period_ticks;
  task->status = TaskStatus::kWaiting;
  reschedule();
  // Running again: the next job has been released.
  record_job_start(task, tenon::time::read_tsc());
  tenon_arch_interrupts_enable();
}

extern "C" void tenon_sched_set_poll_lead_ns(uint64_t lead_ns) {
  poll_lead_ticks = ns_to_ticks(lead_ns);
}

extern "C" void tenon_sched_run(void) {
  tenon_arch_interrupts_disable();
  begin_update();
  telemetry()->scheduler = tenon_sched_policy_kind();
  end_update();
  seen_resume_count = tenon_platform_boot_info()->resume_count;
  tenon_timer_init(on_timer_expiry);
  const uint64_t start = tenon::time::read_tsc() + ns_to_ticks(kStartDelayNs);
  for (uint32_t i = 0; i < task_count; ++i) tasks[i].next_release_tsc = start;
  const uint64_t run_ns = tenon_platform_boot_info()->app_run_ns;
  run_end_tsc = run_ns != 0 ? start + ns_to_ticks(run_ns) : 0;
  running = true;
  // The idle context: everything else happens in reschedule, from the timer or from tasks,
  // which come back here (into the interrupted wait) when nothing is ready.
  reschedule();
  while (running) tenon_arch_wait_for_interrupt();
  tenon_timer_arm(0);
  armed_deadline = 0;
  tenon_arch_interrupts_enable();
}
