// Conversions to the tenon.v1 wire types; see telemetry_wire.h.
#include "telemetry_wire.h"

#include <google/protobuf/util/time_util.h>

#include <cmath>

namespace mortise {
namespace {

tenon::v1::SchedulerKind scheduler_to_wire(tenon::abi::SchedulerKind kind) {
  switch (kind) {
    case tenon::abi::SchedulerKind::kFixedPriority:
      return tenon::v1::SCHEDULER_KIND_FIXED_PRIORITY;
    case tenon::abi::SchedulerKind::kEarliestDeadlineFirst:
      return tenon::v1::SCHEDULER_KIND_EARLIEST_DEADLINE_FIRST;
    case tenon::abi::SchedulerKind::kNone:
      break;
  }
  return tenon::v1::SCHEDULER_KIND_UNSPECIFIED;
}

void summary_to_wire(const HistogramSummary& summary, tenon::v1::LatencySummary* wire) {
  wire->set_count(summary.count);
  wire->set_min_ns(summary.min_ns);
  wire->set_mean_ns(summary.mean_ns);
  wire->set_max_ns(summary.max_ns);
  wire->set_p50_ns(summary.p50_ns);
  wire->set_p99_ns(summary.p99_ns);
  wire->set_p999_ns(summary.p999_ns);
}

}  // namespace

tenon::v1::LatencyHistogram histogram_to_wire(const tenon::abi::Histogram& histogram,
                                              uint64_t tsc_khz) {
  tenon::v1::LatencyHistogram wire;
  wire.set_count(histogram.count);
  wire.set_sum_ticks(histogram.sum);
  wire.set_min_ticks(histogram.count == 0 ? 0 : histogram.min);
  wire.set_max_ticks(histogram.max);
  for (uint32_t count : histogram.buckets) wire.add_bucket_counts(count);
  wire.set_tick_frequency_khz(tsc_khz);
  return wire;
}

tenon::v1::InstanceTelemetry telemetry_to_wire(const TelemetrySnapshot& snapshot,
                                               uint64_t tsc_khz) {
  tenon::v1::InstanceTelemetry wire;
  *wire.mutable_sample_time() = google::protobuf::util::TimeUtil::GetCurrentTime();
  wire.set_scheduler(scheduler_to_wire(snapshot.scheduler));
  wire.set_pauses_observed(snapshot.gaps);
  for (const TaskSummary& task : snapshot.tasks) {
    tenon::v1::TaskTelemetry* entry = wire.add_tasks();
    entry->set_task_name(task.name);
    entry->set_period_ns(static_cast<uint64_t>(std::llround(task.period_ns)));
    entry->set_relative_deadline_ns(static_cast<uint64_t>(std::llround(task.deadline_ns)));
    entry->set_priority(task.priority);
    entry->set_jobs(task.jobs);
    entry->set_deadline_misses(task.deadline_misses);
    entry->set_gap_jobs(task.gap_jobs);
    *entry->mutable_release_latency() = histogram_to_wire(task.raw_release_latency, tsc_khz);
    *entry->mutable_response_time() = histogram_to_wire(task.raw_response_time, tsc_khz);
    summary_to_wire(task.release_latency, entry->mutable_release_latency_summary());
    summary_to_wire(task.response_time, entry->mutable_response_time_summary());
  }
  for (const ChannelSummary& channel : snapshot.channels) {
    tenon::v1::ChannelTelemetry* entry = wire.add_channels();
    entry->set_name(channel.name);
    entry->set_messages_sent(channel.messages_sent);
    entry->set_messages_received(channel.messages_received);
    entry->set_send_full(channel.send_full);
    entry->set_peer_errors(channel.peer_errors);
    entry->set_doorbells_sent(channel.doorbells_sent);
    entry->set_doorbells_received(channel.doorbells_received);
  }
  return wire;
}

tenon::v1::ExitReason exit_reason_to_wire(const ExitReason& reason) {
  tenon::v1::ExitReason wire;
  switch (reason.kind) {
    case ExitKind::kGuestExit:
      wire.set_kind(tenon::v1::EXIT_KIND_GUEST_EXIT);
      wire.set_status(reason.status);
      break;
    case ExitKind::kGuestFault:
      wire.set_kind(tenon::v1::EXIT_KIND_GUEST_FAULT);
      break;
    case ExitKind::kGuestPanic:
      wire.set_kind(tenon::v1::EXIT_KIND_GUEST_PANIC);
      break;
    case ExitKind::kViolation:
      wire.set_kind(tenon::v1::EXIT_KIND_VIOLATION);
      break;
    case ExitKind::kTimeout:
      wire.set_kind(tenon::v1::EXIT_KIND_STOPPED);
      break;
    case ExitKind::kHypervisorError:
      wire.set_kind(tenon::v1::EXIT_KIND_HYPERVISOR_ERROR);
      break;
  }
  wire.set_message(reason.message);
  *wire.mutable_time() = google::protobuf::util::TimeUtil::GetCurrentTime();
  return wire;
}

tenon::v1::CpuGrant placement_to_wire(tenon::v1::CpuPolicy policy, const Placement& placement) {
  tenon::v1::CpuGrant grant;
  grant.set_policy(policy);
  if (placement.cpu) grant.set_host_cpu(static_cast<uint32_t>(*placement.cpu));
  if (placement.fifo) grant.set_rt_priority(static_cast<uint32_t>(placement.priority));
  grant.set_note(placement.note);
  return grant;
}

}  // namespace mortise
