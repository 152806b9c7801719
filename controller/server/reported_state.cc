// See reported_state.h.
#include "reported_state.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "time/proto_time.h"

namespace tenon::controller {

namespace v1 = tenon::v1;

bool is_terminal(v1::InstanceState state) {
  return state == v1::INSTANCE_STATE_EXITED || state == v1::INSTANCE_STATE_FAULTED ||
         state == v1::INSTANCE_STATE_CRASHED;
}

v1::LatencyTelemetry latency_from(const v1::InstanceTelemetry& telemetry) {
  v1::LatencyTelemetry latency;
  *latency.mutable_update_time() = telemetry.sample_time();
  for (const v1::TaskTelemetry& task : telemetry.tasks()) {
    v1::TaskLatency* entry = latency.add_tasks();
    entry->set_task_name(task.task_name());
    entry->set_jobs(task.jobs());
    entry->set_deadline_misses(task.deadline_misses());
    *entry->mutable_release_latency() = task.release_latency_summary();
    *entry->mutable_response_time() = task.response_time_summary();
  }
  return latency;
}

v1::InstanceStatus ReportedState::place(const std::string& instance, const std::string& device,
                                        const v1::InstanceStatus* stored_status, absl::Time now) {
  absl::MutexLock lock(&mutex_);
  return place_locked(instance, device, stored_status, now);
}

void ReportedState::replace(const std::vector<std::string>& removed,
                            const std::vector<std::pair<std::string, std::string>>& placed,
                            absl::Time now) {
  absl::MutexLock lock(&mutex_);
  for (const std::string& instance : removed) forget_locked(instance);
  for (const auto& [instance, device] : placed) place_locked(instance, device, nullptr, now);
  if (!removed.empty()) console_changed_.SignalAll();
}

v1::InstanceStatus ReportedState::place_locked(const std::string& instance,
                                               const std::string& device,
                                               const v1::InstanceStatus* stored_status,
                                               absl::Time now) {
  ++version_;
  auto [entry, created] = instances_.try_emplace(instance);
  if (stored_status != nullptr) {
    entry->second.status = *stored_status;
  } else if (created) {
    entry->second.status.set_observed_state(v1::INSTANCE_STATE_PENDING);
    *entry->second.status.mutable_last_transition_time() = time::to_proto(now);
  }
  if (entry->second.device != device) {
    if (!entry->second.device.empty()) by_device_[entry->second.device].erase(instance);
    entry->second.device = device;
    by_device_[device].insert(instance);
  }
  return entry->second.status;
}

void ReportedState::forget(const std::string& instance) {
  absl::MutexLock lock(&mutex_);
  forget_locked(instance);
  console_changed_.SignalAll();  // a reader waiting on it learns it is gone
}

void ReportedState::forget_locked(const std::string& instance) {
  ++version_;
  auto found = instances_.find(instance);
  if (found == instances_.end()) return;
  if (auto index = by_device_.find(found->second.device); index != by_device_.end()) {
    index->second.erase(instance);
    if (index->second.empty()) by_device_.erase(index);
  }
  instances_.erase(found);
}

void ReportedState::move(const std::string& instance, const std::string& device) {
  ++version_;
  absl::MutexLock lock(&mutex_);
  auto found = instances_.find(instance);
  if (found == instances_.end() || found->second.device == device) return;
  by_device_[found->second.device].erase(instance);
  found->second.device = device;
  by_device_[device].insert(instance);
}

void ReportedState::set_migrated_from(const std::string& instance, const std::string& source) {
  absl::MutexLock lock(&mutex_);
  auto found = instances_.find(instance);
  if (found == instances_.end()) return;
  found->second.status.set_migrated_from(source);
  found->second.changed = true;
}

std::optional<v1::InstanceStatus> ReportedState::status(const std::string& instance) const {
  absl::MutexLock lock(&mutex_);
  auto found = instances_.find(instance);
  if (found == instances_.end()) return std::nullopt;
  return found->second.status;
}

bool ReportedState::record_status(const std::string& device,
                                  const v1::InstanceStatusUpdate& update) {
  ++version_;
  absl::MutexLock lock(&mutex_);
  auto found = instances_.find(update.instance_name());
  if (found == instances_.end()) return false;  // not an instance of this fleet (any more)
  if (found->second.device != device) return false;
  v1::InstanceStatus& status = found->second.status;
  if (status.observed_state() != update.state()) {
    *status.mutable_last_transition_time() =
        update.has_time() ? update.time() : time::to_proto(absl::Now());
  }
  status.set_observed_state(update.state());
  status.set_image_digest(update.image_digest());
  found->second.reported_uid = update.instance_uid();
  if (update.has_exit_reason()) *status.mutable_exit_reason() = update.exit_reason();
  status.set_restart_count(update.restart_count());
  status.set_message(update.message());
  found->second.changed = true;
  console_changed_.SignalAll();
  return true;
}

void ReportedState::record_telemetry(const std::string& device,
                                     const v1::InstanceTelemetry& sample) {
  absl::MutexLock lock(&mutex_);
  auto found = instances_.find(sample.instance_name());
  if (found == instances_.end() || found->second.device != device) return;
  found->second.telemetry = sample;
}

void ReportedState::append_console(const std::string& device, const v1::ConsoleOutput& output) {
  absl::MutexLock lock(&mutex_);
  auto found = instances_.find(output.instance_name());
  if (found == instances_.end() || found->second.device != device) return;
  Entry& target = found->second;
  const v1::ConsoleChunk& chunk = output.chunk();
  const uint64_t end = target.console_offset + target.console.size();
  if (chunk.offset() > end) {  // a gap: bytes were dropped on the way
    target.console.clear();
    target.console_offset = chunk.offset();
  }
  const uint64_t current_end = target.console_offset + target.console.size();
  if (chunk.offset() + chunk.data().size() > current_end) {
    const uint64_t skip = current_end - chunk.offset();
    target.console.append(chunk.data(), skip, std::string::npos);
  }
  if (target.console.size() > console_tail_bytes_) {
    const size_t drop = target.console.size() - console_tail_bytes_;
    target.console.erase(0, drop);
    target.console_offset += drop;
  }
  console_changed_.SignalAll();
}

absl::StatusOr<v1::ConsoleChunk> ReportedState::read_console(const std::string& instance,
                                                             uint64_t offset, uint64_t tail_bytes,
                                                             absl::Duration wait, bool* terminal) {
  absl::MutexLock lock(&mutex_);
  const absl::Time deadline = absl::Now() + wait;
  while (true) {
    auto found = instances_.find(instance);
    if (found == instances_.end()) {
      return absl::NotFoundError(absl::StrCat("Instance ", instance, " not found"));
    }
    const Entry& entry = found->second;
    const uint64_t end = entry.console_offset + entry.console.size();
    if (offset > end) {
      return absl::OutOfRangeError(
          absl::StrCat("offset ", offset, " is beyond the ", end, " bytes written"));
    }
    uint64_t start = offset;
    if (offset == 0 && tail_bytes != 0 && end > tail_bytes) start = end - tail_bytes;
    start = std::max(start, entry.console_offset);
    *terminal = is_terminal(entry.status.observed_state());
    if (start < end || *terminal || absl::Now() >= deadline) {
      v1::ConsoleChunk chunk;
      chunk.set_offset(start);
      chunk.set_data(entry.console.substr(start - entry.console_offset));
      *chunk.mutable_time() = time::to_proto(absl::Now());
      return chunk;
    }
    console_changed_.WaitWithDeadline(&mutex_, deadline);
  }
}

std::vector<v1::ConsoleSubscription> ReportedState::console_subscriptions(
    const v1::DesiredState& state) {
  std::vector<v1::ConsoleSubscription> subscriptions;
  absl::MutexLock lock(&mutex_);
  for (const v1::DesiredInstance& instance : state.instances()) {
    auto found = instances_.find(instance.name());
    if (found == instances_.end() || found->second.console_subscribed) continue;
    found->second.console_subscribed = true;
    v1::ConsoleSubscription& subscription = subscriptions.emplace_back();
    subscription.set_instance_name(instance.name());
    subscription.set_enabled(true);
    subscription.set_from_offset(found->second.console_offset + found->second.console.size());
  }
  return subscriptions;
}

void ReportedState::device_disconnected(const std::string& device) {
  absl::MutexLock lock(&mutex_);
  // Subscriptions end with the stream; the next session subscribes again.
  if (auto index = by_device_.find(device); index != by_device_.end()) {
    for (const std::string& name : index->second) {
      auto found = instances_.find(name);
      if (found != instances_.end()) found->second.console_subscribed = false;
    }
  }
  console_changed_.SignalAll();
}

std::vector<std::optional<ReportedState::Summary>> ReportedState::summaries(
    const std::vector<std::string>& instances) const {
  std::vector<std::optional<Summary>> summaries(instances.size());
  absl::MutexLock lock(&mutex_);
  for (size_t i = 0; i < instances.size(); ++i) {
    auto found = instances_.find(instances[i]);
    if (found == instances_.end()) continue;
    summaries[i] = Summary{found->second.status.observed_state(),
                           found->second.status.image_digest(), found->second.device};
  }
  return summaries;
}

std::string ReportedState::reported_uid(const std::string& instance) const {
  absl::MutexLock lock(&mutex_);
  auto found = instances_.find(instance);
  return found == instances_.end() ? std::string() : found->second.reported_uid;
}

void ReportedState::overlay(v1::Instance* instance) const {
  absl::MutexLock lock(&mutex_);
  auto found = instances_.find(instance->metadata().name());
  if (found == instances_.end()) return;
  *instance->mutable_status() = found->second.status;
  if (found->second.telemetry.has_value()) {
    *instance->mutable_status()->mutable_latency() = latency_from(*found->second.telemetry);
  }
}

std::vector<v1::InstanceTelemetry> ReportedState::telemetry() const {
  std::vector<v1::InstanceTelemetry> samples;
  absl::MutexLock lock(&mutex_);
  for (const auto& [name, entry] : instances_) {
    if (entry.telemetry.has_value()) samples.push_back(*entry.telemetry);
  }
  return samples;
}

std::vector<std::pair<std::string, v1::InstanceStatus>> ReportedState::take_changed() {
  std::vector<std::pair<std::string, v1::InstanceStatus>> changed;
  absl::MutexLock lock(&mutex_);
  for (auto& [name, entry] : instances_) {
    if (!entry.changed) continue;
    entry.changed = false;
    changed.emplace_back(name, entry.status);
  }
  return changed;
}

void ReportedState::mark_changed(
    const std::vector<std::pair<std::string, v1::InstanceStatus>>& changed) {
  absl::MutexLock lock(&mutex_);
  for (const auto& [name, status] : changed) {
    auto found = instances_.find(name);
    if (found != instances_.end()) found->second.changed = true;
  }
}

}  // namespace tenon::controller
