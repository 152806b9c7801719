// See api_metrics.h.
#include "api_metrics.h"

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "status_codes.h"

namespace tenon::controller {
namespace {

std::string escape(const std::string& value) {
  return absl::StrReplaceAll(value, {{"\\", "\\\\"}, {"\"", "\\\""}, {"\n", "\\n"}});
}

std::string number(double value) {
  if (std::isinf(value)) return "+Inf";
  return absl::StrFormat("%.9g", value);
}

void header(std::string* out, const char* name, const char* type, const char* help) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

// A guest log2 histogram (ticks) as a Prometheus histogram in seconds: bucket i holds values
// below 2^(i+1) ticks, so its upper edge is le = 2^(i+1) / (tick_frequency_khz * 1000).
void guest_histogram(std::string* out, const char* name, const std::string& labels,
                     const tenon::v1::LatencyHistogram& histogram) {
  if (histogram.tick_frequency_khz() == 0) return;
  const double tick_seconds = 1.0 / (static_cast<double>(histogram.tick_frequency_khz()) * 1000);
  uint64_t cumulative = 0;
  for (int i = 0; i < histogram.bucket_counts_size(); ++i) {
    cumulative += histogram.bucket_counts(i);
    const bool last = i + 1 == histogram.bucket_counts_size();
    if (last) break;
    absl::StrAppend(out, name, "_bucket{", labels, ",le=\"",
                    number(std::ldexp(1.0, i + 1) * tick_seconds), "\"} ", cumulative, "\n");
  }
  absl::StrAppend(out, name, "_bucket{", labels, ",le=\"+Inf\"} ", histogram.count(), "\n");
  absl::StrAppend(out, name, "_sum{", labels, "} ",
                  number(static_cast<double>(histogram.sum_ticks()) * tick_seconds), "\n");
  absl::StrAppend(out, name, "_count{", labels, "} ", histogram.count(), "\n");
}

}  // namespace

void ApiMetrics::record(const std::string& api, const std::string& method, absl::StatusCode code,
                        absl::Duration duration) {
  std::lock_guard lock(mutex_);
  ++requests_[{api, method, code_name(code)}];
  Latency& latency = latencies_[{api, method}];
  const double seconds = absl::ToDoubleSeconds(duration);
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds <= kBuckets[i]) ++latency.buckets[i];
  }
  ++latency.count;
  latency.sum += seconds;
}

std::string ApiMetrics::render(const ControllerSnapshot& snapshot) const {
  std::string out;
  header(&out, "tenon_devices", "gauge", "Devices by connection state.");
  for (const char* state : {"connected", "disconnected", "not_enrolled"}) {
    auto found = snapshot.devices_by_state.find(state);
    absl::StrAppend(&out, "tenon_devices{state=\"", state, "\"} ",
                    found == snapshot.devices_by_state.end() ? 0 : found->second, "\n");
  }
  header(&out, "tenon_instances", "gauge", "Instances by observed state.");
  for (const auto& [state, count] : snapshot.instances_by_state) {
    absl::StrAppend(&out, "tenon_instances{state=\"", state, "\"} ", count, "\n");
  }
  // Rollouts, kube-state-metrics style: one series per phase, 1 for the deployment's own.
  header(&out, "tenon_deployment_rollout_phase", "gauge",
         "A deployment's rollout phase: 1 for the phase it is in, 0 for the others.");
  for (const ControllerSnapshot::Rollout& rollout : snapshot.rollouts) {
    for (const tenon::v1::RolloutPhase phase :
         {tenon::v1::ROLLOUT_PHASE_PROGRESSING, tenon::v1::ROLLOUT_PHASE_COMPLETE,
          tenon::v1::ROLLOUT_PHASE_PAUSED, tenon::v1::ROLLOUT_PHASE_HALTED,
          tenon::v1::ROLLOUT_PHASE_ROLLED_BACK}) {
      absl::StrAppend(&out, "tenon_deployment_rollout_phase{deployment=\"", rollout.deployment,
                      "\",phase=\"",
                      absl::AsciiStrToLower(
                          absl::StripPrefix(tenon::v1::RolloutPhase_Name(phase), "ROLLOUT_PHASE_")),
                      "\"} ", rollout.phase == phase ? 1 : 0, "\n");
    }
  }
  header(&out, "tenon_deployment_revision", "gauge",
         "The revision a deployment's instances are meant to run (0: made before revisions).");
  for (const ControllerSnapshot::Rollout& rollout : snapshot.rollouts) {
    absl::StrAppend(&out, "tenon_deployment_revision{deployment=\"", rollout.deployment, "\"} ",
                    rollout.revision, "\n");
  }
  header(&out, "tenon_deployment_rollout_wave", "gauge",
         "Waves a staged rollout has started (0: none under way or at once).");
  for (const ControllerSnapshot::Rollout& rollout : snapshot.rollouts) {
    absl::StrAppend(&out, "tenon_deployment_rollout_wave{deployment=\"", rollout.deployment, "\"} ",
                    rollout.wave, "\n");
  }
  header(&out, "tenon_deployment_rollout_waves", "gauge", "Waves a staged rollout has in all.");
  for (const ControllerSnapshot::Rollout& rollout : snapshot.rollouts) {
    absl::StrAppend(&out, "tenon_deployment_rollout_waves{deployment=\"", rollout.deployment,
                    "\"} ", rollout.waves, "\n");
  }
  header(&out, "tenon_instance_task_jobs_total", "counter",
         "Jobs started by a task of an instance in its current run.");
  std::string misses;
  header(&misses, "tenon_instance_task_deadline_misses_total", "counter",
         "Jobs of a task that completed after their absolute deadline.");
  std::string release;
  header(&release, "tenon_instance_task_release_latency_seconds", "histogram",
         "Release instant to job start, from the guest's own TSC (log2 buckets).");
  std::string response;
  header(&response, "tenon_instance_task_response_time_seconds", "histogram",
         "Release instant to job completion, from the guest's own TSC (log2 buckets).");
  for (const tenon::v1::InstanceTelemetry& telemetry : snapshot.telemetry) {
    auto device = snapshot.instance_devices.find(telemetry.instance_name());
    const std::string device_name = device == snapshot.instance_devices.end() ? "" : device->second;
    for (const tenon::v1::TaskTelemetry& task : telemetry.tasks()) {
      const std::string labels =
          absl::StrCat("instance=\"", escape(telemetry.instance_name()), "\",device=\"",
                       escape(device_name), "\",task=\"", escape(task.task_name()), "\"");
      absl::StrAppend(&out, "tenon_instance_task_jobs_total{", labels, "} ", task.jobs(), "\n");
      absl::StrAppend(&misses, "tenon_instance_task_deadline_misses_total{", labels, "} ",
                      task.deadline_misses(), "\n");
      guest_histogram(&release, "tenon_instance_task_release_latency_seconds", labels,
                      task.release_latency());
      guest_histogram(&response, "tenon_instance_task_response_time_seconds", labels,
                      task.response_time());
    }
  }
  absl::StrAppend(&out, misses, release, response);
  header(&out, "tenon_instance_channel_messages_total", "counter",
         "Messages an instance sent or received on an inter-VM channel.");
  std::string peer_errors;
  header(&peer_errors, "tenon_instance_channel_peer_errors_total", "counter",
         "Indices or lengths from the channel's peer that failed validation.");
  for (const tenon::v1::InstanceTelemetry& telemetry : snapshot.telemetry) {
    for (const tenon::v1::ChannelTelemetry& channel : telemetry.channels()) {
      const std::string labels = absl::StrCat("instance=\"", escape(telemetry.instance_name()),
                                              "\",channel=\"", escape(channel.name()), "\"");
      absl::StrAppend(&out, "tenon_instance_channel_messages_total{", labels,
                      ",direction=\"sent\"} ", channel.messages_sent(), "\n");
      absl::StrAppend(&out, "tenon_instance_channel_messages_total{", labels,
                      ",direction=\"received\"} ", channel.messages_received(), "\n");
      absl::StrAppend(&peer_errors, "tenon_instance_channel_peer_errors_total{", labels, "} ",
                      channel.peer_errors(), "\n");
    }
  }
  absl::StrAppend(&out, peer_errors);
  header(&out, "tenon_controller_image_transfers_total", "counter",
         "Images sent to devices (each transfer counted once).");
  absl::StrAppend(&out, "tenon_controller_image_transfers_total ", snapshot.image_transfers, "\n");
  header(&out, "tenon_controller_image_bytes_sent_total", "counter", "Image bytes sent.");
  absl::StrAppend(&out, "tenon_controller_image_bytes_sent_total ", snapshot.image_bytes_sent,
                  "\n");
  header(&out, "tenon_controller_desired_states_sent_total", "counter",
         "DesiredState messages sent to agents.");
  absl::StrAppend(&out, "tenon_controller_desired_states_sent_total ", snapshot.desired_states_sent,
                  "\n");
  header(&out, "tenon_controller_composition_cache_lookups_total", "counter",
         "Composition cache lookups by result.");
  absl::StrAppend(&out, "tenon_controller_composition_cache_lookups_total{result=\"hit\"} ",
                  snapshot.composer_cache_hits, "\n");
  absl::StrAppend(&out, "tenon_controller_composition_cache_lookups_total{result=\"miss\"} ",
                  snapshot.composer_cache_misses, "\n");
  std::lock_guard lock(mutex_);
  header(&out, "tenon_api_requests_total", "counter", "API requests by API, method and code.");
  for (const auto& [key, count] : requests_) {
    const auto& [api, method, code] = key;
    absl::StrAppend(&out, "tenon_api_requests_total{api=\"", api, "\",method=\"", escape(method),
                    "\",code=\"", code, "\"} ", count, "\n");
  }
  header(&out, "tenon_api_request_duration_seconds", "histogram",
         "API request handling time by API and method.");
  for (const auto& [key, latency] : latencies_) {
    const std::string labels =
        absl::StrCat("api=\"", key.first, "\",method=\"", escape(key.second), "\"");
    for (size_t i = 0; i < kBuckets.size(); ++i) {
      absl::StrAppend(&out, "tenon_api_request_duration_seconds_bucket{", labels, ",le=\"",
                      number(kBuckets[i]), "\"} ", latency.buckets[i], "\n");
    }
    absl::StrAppend(&out, "tenon_api_request_duration_seconds_bucket{", labels, ",le=\"+Inf\"} ",
                    latency.count, "\n");
    absl::StrAppend(&out, "tenon_api_request_duration_seconds_sum{", labels, "} ",
                    number(latency.sum), "\n");
    absl::StrAppend(&out, "tenon_api_request_duration_seconds_count{", labels, "} ", latency.count,
                    "\n");
  }
  return out;
}

}  // namespace tenon::controller
