// Reads a running guest's telemetry page (tenon/abi.h) without stopping it: a seqlock read of
// untrusted guest memory, turned into per-task statistics in nanoseconds.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "guest_memory.h"
#include "tenon/abi.h"

namespace mortise {

struct HistogramSummary {
  uint64_t count = 0;
  double min_ns = 0, mean_ns = 0, max_ns = 0;
  // From the log2 buckets: the upper edge of the bucket holding the quantile, capped at max.
  double p50_ns = 0, p99_ns = 0, p999_ns = 0;
};

struct TaskSummary {
  std::string name;
  double period_ns = 0;
  double deadline_ns = 0;
  uint32_t priority = 0;
  uint64_t jobs = 0;
  uint64_t deadline_misses = 0;
  uint64_t gap_jobs = 0;
  HistogramSummary release_latency;
  HistogramSummary response_time;
  tenon::abi::Histogram raw_release_latency{};  // ticks, for merging and exact re-analysis
  tenon::abi::Histogram raw_response_time{};
};

// One inter-VM channel's counters as the guest publishes them (not under the seqlock).
struct ChannelSummary {
  std::string name;
  uint64_t messages_sent = 0;
  uint64_t messages_received = 0;
  uint64_t send_full = 0;
  uint64_t peer_errors = 0;
  uint64_t doorbells_sent = 0;
  uint64_t doorbells_received = 0;
};

struct TelemetrySnapshot {
  tenon::abi::SchedulerKind scheduler = tenon::abi::SchedulerKind::kNone;
  uint64_t gaps = 0;
  std::vector<TaskSummary> tasks;
  std::vector<ChannelSummary> channels;
};

// Boot timing from the guest's telemetry page, in host TSC ticks where the guest TSC is
// synchronized with the host's (tsc_synchronized), else unavailable.
struct BootTiming {
  bool tsc_synchronized = false;
  uint64_t tsc_khz = 0;
  uint64_t host_start_tsc = 0;
  uint64_t guest_entry_tsc = 0;  // 0 when the guest never got there
  uint64_t main_entry_tsc = 0;
};

// The boot timing the guest wrote in its telemetry page; `tsc_synchronized` and `tsc_khz` are
// the engine's to say.
BootTiming read_boot_timing(const GuestMemory& memory, bool tsc_synchronized, uint64_t tsc_khz);

// Tells the guest it was paused: boot info resume_count + 1, last_resume_tsc as given (in guest
// TSC ticks; 0 where the guest's clock stood still through the pause).
void note_resume(const GuestMemory& memory, uint64_t last_resume_tsc);

// The guest is in the middle of a telemetry update (its seqlock is odd).
bool telemetry_mid_update(const GuestMemory& memory);

// UNAVAILABLE when the page has no valid header yet or the guest keeps it busy past a bounded
// number of retries.
absl::StatusOr<TelemetrySnapshot> read_telemetry(const GuestMemory& memory, uint64_t tsc_khz);

HistogramSummary summarize_histogram(const tenon::abi::Histogram& histogram, uint64_t tsc_khz);

const char* scheduler_name(tenon::abi::SchedulerKind kind);

}  // namespace mortise
