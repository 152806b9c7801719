// What agents report about instances: observed state, exit reasons, telemetry and the console
// tail. Held in memory under its own lock (agent traffic never waits on planning or the store)
// and written to the store in batches by the controller's flush: every agent re-sends its
// instances' state in Hello, so a crash loses at most one flush interval of it.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tenon/v1/agent.pb.h"
#include "tenon/v1/fleet.pb.h"

namespace tenon::controller {

bool is_terminal(tenon::v1::InstanceState state);

class ReportedState {
 public:
  explicit ReportedState(size_t console_tail_bytes) : console_tail_bytes_(console_tail_bytes) {}

  // An instance the planner placed on `device` (its status starts Pending when it is new), or
  // one read back from the store at start. Returns its status.
  tenon::v1::InstanceStatus place(const std::string& instance, const std::string& device,
                                  const tenon::v1::InstanceStatus* stored_status, absl::Time now);
  void forget(const std::string& instance);
  // A replan's outcome in one go: these instances are gone, these placed (instance, device).
  void replace(const std::vector<std::string>& removed,
               const std::vector<std::pair<std::string, std::string>>& placed, absl::Time now);
  // Only reports of the device an instance belongs to count (a migration's source still
  // reports the paused copy it holds).
  void move(const std::string& instance, const std::string& device);
  void set_migrated_from(const std::string& instance, const std::string& source);
  // The instance uid its device's last status report named ("" before one since this process
  // started): a report about an instance since replaced under the same name names the old uid.
  std::string reported_uid(const std::string& instance) const;
  std::optional<tenon::v1::InstanceStatus> status(const std::string& instance) const;

  // False when the instance is not this device's (or not the fleet's).
  bool record_status(const std::string& device, const tenon::v1::InstanceStatusUpdate& update);
  void record_telemetry(const std::string& device, const tenon::v1::InstanceTelemetry& sample);
  void append_console(const std::string& device, const tenon::v1::ConsoleOutput& output);
  // See Controller::read_console.
  absl::StatusOr<tenon::v1::ConsoleChunk> read_console(const std::string& instance, uint64_t offset,
                                                       uint64_t tail_bytes, absl::Duration wait,
                                                       bool* terminal);
  // Subscriptions to send for the instances of `state` not yet subscribed on this stream.
  std::vector<tenon::v1::ConsoleSubscription> console_subscriptions(
      const tenon::v1::DesiredState& state);
  // The device's stream ended: its subscriptions end with it; readers wake.
  void device_disconnected(const std::string& device);

  // What a deployment's status rolls up, per instance, in one lock.
  struct Summary {
    tenon::v1::InstanceState state = tenon::v1::INSTANCE_STATE_UNSPECIFIED;
    std::string image_digest;
    std::string device;
  };
  std::vector<std::optional<Summary>> summaries(const std::vector<std::string>& instances) const;
  // Increases whenever what summaries() returns may have changed.
  uint64_t version() const { return version_.load(); }
  // The reported status (and latency from the newest telemetry) over the stored one.
  void overlay(tenon::v1::Instance* instance) const;
  std::vector<tenon::v1::InstanceTelemetry> telemetry() const;
  // Statuses changed since the last call, to be written to the store.
  std::vector<std::pair<std::string, tenon::v1::InstanceStatus>> take_changed();
  void mark_changed(const std::vector<std::pair<std::string, tenon::v1::InstanceStatus>>& changed);

 private:
  tenon::v1::InstanceStatus place_locked(const std::string& instance, const std::string& device,
                                         const tenon::v1::InstanceStatus* stored_status,
                                         absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void forget_locked(const std::string& instance) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  struct Entry {
    std::string device;  // where it runs: only that device's reports count
    tenon::v1::InstanceStatus status;
    std::string reported_uid;  // the instance uid the device's last status report named
    std::optional<tenon::v1::InstanceTelemetry> telemetry;
    std::string console;  // the tail: bytes [console_offset, console_offset + size)
    uint64_t console_offset = 0;
    bool console_subscribed = false;
    bool changed = false;
  };

  const size_t console_tail_bytes_;
  std::atomic<uint64_t> version_ = 0;
  mutable absl::Mutex mutex_;
  absl::CondVar console_changed_;
  std::map<std::string, Entry> instances_ ABSL_GUARDED_BY(mutex_);
  std::map<std::string, std::set<std::string>> by_device_ ABSL_GUARDED_BY(mutex_);
};

// A task's latency figures for operators, from the agent's telemetry sample.
tenon::v1::LatencyTelemetry latency_from(const tenon::v1::InstanceTelemetry& telemetry);

}  // namespace tenon::controller
