// Live telemetry reading; see telemetry.h.
#include "telemetry.h"

#include <atomic>
#include <cstring>

#include "absl/status/status.h"

namespace mortise {
namespace {

constexpr int kMaxSeqlockRetries = 10000;

double ticks_to_ns(double ticks, uint64_t tsc_khz) {
  return tsc_khz == 0 ? 0 : ticks * 1e6 / static_cast<double>(tsc_khz);
}

}  // namespace

const char* scheduler_name(tenon::abi::SchedulerKind kind) {
  switch (kind) {
    case tenon::abi::SchedulerKind::kFixedPriority:
      return "fixed-priority";
    case tenon::abi::SchedulerKind::kEarliestDeadlineFirst:
      return "edf";
    case tenon::abi::SchedulerKind::kNone:
      break;
  }
  return "none";
}

HistogramSummary summarize_histogram(const tenon::abi::Histogram& histogram, uint64_t tsc_khz) {
  HistogramSummary summary;
  summary.count = histogram.count;
  if (histogram.count == 0) return summary;
  summary.min_ns = ticks_to_ns(static_cast<double>(histogram.min), tsc_khz);
  summary.max_ns = ticks_to_ns(static_cast<double>(histogram.max), tsc_khz);
  summary.mean_ns = ticks_to_ns(
      static_cast<double>(histogram.sum) / static_cast<double>(histogram.count), tsc_khz);
  uint64_t bucket_total = 0;
  for (uint32_t count : histogram.buckets) bucket_total += count;
  auto quantile = [&](double q) {
    const double rank = q * static_cast<double>(bucket_total);
    uint64_t seen = 0;
    for (uint32_t i = 0; i < tenon::abi::kHistogramBuckets; ++i) {
      seen += histogram.buckets[i];
      if (static_cast<double>(seen) >= rank && seen != 0) {
        const double upper = static_cast<double>(1ull << (i + 1));
        return std::min(ticks_to_ns(upper, tsc_khz), summary.max_ns);
      }
    }
    return summary.max_ns;
  };
  summary.p50_ns = quantile(0.5);
  summary.p99_ns = quantile(0.99);
  summary.p999_ns = quantile(0.999);
  return summary;
}

absl::StatusOr<TelemetrySnapshot> read_telemetry(const GuestMemory& memory, uint64_t tsc_khz) {
  absl::StatusOr<std::span<uint8_t>> bytes =
      memory.checked(tenon::abi::kTelemetryAddress, sizeof(tenon::abi::TelemetryPage));
  if (!bytes.ok()) return bytes.status();
  const auto* live = reinterpret_cast<const tenon::abi::TelemetryPage*>(bytes->data());
  tenon::abi::TelemetryPage copy;
  for (int attempt = 0;; ++attempt) {
    if (attempt == kMaxSeqlockRetries) {
      return absl::UnavailableError("telemetry page stayed busy; guest may be stuck mid-update");
    }
    const uint64_t before = __atomic_load_n(&live->sequence, __ATOMIC_ACQUIRE);
    if (before % 2 != 0) continue;
    std::memcpy(&copy, live, sizeof(copy));
    std::atomic_thread_fence(std::memory_order_acquire);
    if (__atomic_load_n(&live->sequence, __ATOMIC_RELAXED) == before) break;
  }
  if (copy.magic != tenon::abi::kTelemetryMagic) {
    return absl::UnavailableError("the guest has not published telemetry yet");
  }
  TelemetrySnapshot snapshot;
  snapshot.scheduler = static_cast<tenon::abi::SchedulerKind>(copy.scheduler);
  snapshot.gaps = copy.gaps;
  const uint32_t task_count = std::min(copy.task_count, tenon::abi::kMaxTasks);
  for (uint32_t i = 0; i < task_count; ++i) {
    const tenon::abi::TaskTelemetry& entry = copy.tasks[i];
    TaskSummary task;
    for (char c : entry.name) {
      if (c == '\0') break;
      task.name.push_back(c >= 0x20 && c < 0x7f ? c : '?');
    }
    task.period_ns = ticks_to_ns(static_cast<double>(entry.period_ticks), tsc_khz);
    task.deadline_ns = ticks_to_ns(static_cast<double>(entry.deadline_ticks), tsc_khz);
    task.priority = entry.priority;
    task.jobs = entry.jobs;
    task.deadline_misses = entry.deadline_misses;
    task.gap_jobs = entry.gap_jobs;
    task.release_latency = summarize_histogram(entry.release_latency, tsc_khz);
    task.response_time = summarize_histogram(entry.response_time, tsc_khz);
    task.raw_release_latency = entry.release_latency;
    task.raw_response_time = entry.response_time;
    snapshot.tasks.push_back(std::move(task));
  }
  const uint32_t channel_count = std::min(copy.ivc_channel_count, tenon::abi::kIvcMaxChannels);
  for (uint32_t i = 0; i < channel_count; ++i) {
    const tenon::abi::IvcChannelTelemetry& entry = copy.ivc_channels[i];
    ChannelSummary channel;
    for (char c : entry.name) {
      if (c == '\0') break;
      channel.name.push_back(c >= 0x20 && c < 0x7f ? c : '?');
    }
    channel.messages_sent = entry.messages_sent;
    channel.messages_received = entry.messages_received;
    channel.send_full = entry.send_full;
    channel.peer_errors = entry.peer_errors;
    channel.doorbells_sent = entry.doorbells_sent;
    channel.doorbells_received = entry.doorbells_received;
    snapshot.channels.push_back(std::move(channel));
  }
  return snapshot;
}

BootTiming read_boot_timing(const GuestMemory& memory, bool tsc_synchronized, uint64_t tsc_khz) {
  BootTiming timing;
  timing.tsc_synchronized = tsc_synchronized;
  timing.tsc_khz = tsc_khz;
  absl::StatusOr<tenon::abi::BootInfo> boot_info =
      memory.read<tenon::abi::BootInfo>(tenon::abi::kBootInfoAddress);
  if (boot_info.ok()) timing.host_start_tsc = boot_info->host_start_tsc;
  absl::StatusOr<tenon::abi::TelemetryPage> telemetry =
      memory.read<tenon::abi::TelemetryPage>(tenon::abi::kTelemetryAddress);
  if (telemetry.ok() && telemetry->magic == tenon::abi::kTelemetryMagic) {
    timing.guest_entry_tsc = telemetry->entry_tsc;
    timing.main_entry_tsc = telemetry->main_entry_tsc;
  }
  return timing;
}

bool telemetry_mid_update(const GuestMemory& memory) {
  absl::StatusOr<tenon::abi::TelemetryPage> page =
      memory.read<tenon::abi::TelemetryPage>(tenon::abi::kTelemetryAddress);
  return page.ok() && page->magic == tenon::abi::kTelemetryMagic && page->sequence % 2 != 0;
}

void note_resume(const GuestMemory& memory, uint64_t last_resume_tsc) {
  absl::StatusOr<tenon::abi::BootInfo> boot_info =
      memory.read<tenon::abi::BootInfo>(tenon::abi::kBootInfoAddress);
  if (!boot_info.ok()) return;
  boot_info->resume_count++;
  boot_info->last_resume_tsc = last_resume_tsc;
  (void)memory.write(tenon::abi::kBootInfoAddress, *boot_info);
}

}  // namespace mortise
