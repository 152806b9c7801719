// Operator reads: Get, List, Watch, deployment status and the /metrics figures, served from the
// object cache with what agents report (ReportedState, SessionHub) merged in. Takes no lock but
// the parts' own short ones: a read never waits on planning, builds, the store or agent traffic.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "object_cache.h"
#include "reported_state.h"
#include "session_hub.h"
#include "tenon/v1/fleet.pb.h"

namespace tenon::controller {

// Figures for /metrics, taken in one go.
struct ControllerSnapshot {
  std::map<std::string, uint64_t> devices_by_state;    // "connected", "disconnected", ...
  std::map<std::string, uint64_t> instances_by_state;  // "running", "pending", ...
  std::vector<tenon::v1::InstanceTelemetry> telemetry;
  std::map<std::string, std::string> instance_devices;  // instance -> device
  uint64_t image_transfers = 0;
  uint64_t image_bytes_sent = 0;
  uint64_t desired_states_sent = 0;
  uint64_t composer_cache_hits = 0;
  uint64_t composer_cache_misses = 0;
  // Each deployment's rollout, as operators read it (the roll-up's phase).
  struct Rollout {
    std::string deployment;
    tenon::v1::RolloutPhase phase = tenon::v1::ROLLOUT_PHASE_UNSPECIFIED;
    uint64_t revision = 0;
    uint32_t wave = 0;
    uint32_t waves = 0;
  };
  std::vector<Rollout> rollouts;
};

// One batch of a watch: the events after the version asked for, and the version to go on from.
struct WatchBatch {
  std::vector<tenon::v1::WatchEvent> events;
  uint64_t resource_version = 0;
};

class FleetReader {
 public:
  // A deployment's roll-up is computed again when something it depends on changed, but at most
  // this often: its update_time says when (like a controller-written status in Kubernetes).
  static constexpr absl::Duration kRollupMaxAge = absl::Milliseconds(250);

  FleetReader(const ObjectCache* cache, const SessionHub* sessions, const ReportedState* reported)
      : cache_(cache), sessions_(sessions), reported_(reported) {}

  absl::StatusOr<tenon::v1::Object> get(const tenon::v1::GetRequest& request) const;
  absl::StatusOr<tenon::v1::ListResponse> list(const tenon::v1::ListRequest& request) const;
  // The changes of the request's kind (and selector) after its resource version, waiting up to
  // `wait` for one. OutOfRange when the version is older than the cache's history.
  absl::StatusOr<WatchBatch> watch(const tenon::v1::WatchRequest& request,
                                   absl::Duration wait) const;
  // Counts and telemetry for /metrics (the caller adds its own counters).
  ControllerSnapshot snapshot() const;

  // Why deployments cannot run on these devices, as the planner last found (device ->
  // deployment -> why; an empty map: none on that device).
  void set_plan_errors(
      const std::map<std::string, std::map<std::string, std::string>>& errors_by_device);

  // The object with what devices reported merged in, and a deployment's status rolled up.
  tenon::v1::Object with_status(const tenon::v1::Object& object) const;
  void fill_instance_status(tenon::v1::Instance* instance) const;

 private:
  void fill_device_status(tenon::v1::Device* device) const;
  void fill_deployment_status(tenon::v1::Deployment* deployment) const;
  // Each instance as operators see it: the state and image its agent reported (the stored ones
  // before any report), Unknown while its device is disconnected.
  struct Observed {
    tenon::v1::InstanceState state = tenon::v1::INSTANCE_STATE_UNSPECIFIED;
    std::string image_digest;
  };
  std::vector<Observed> observe(const std::vector<CachedObject>& instances) const;

  // What a roll-up was computed from, and the result.
  struct Rollup {
    uint64_t cache_version = 0;
    // The deployment's own resource version: the rollout engine's part of its status is stored
    // with it, so a stored change is never served from an older roll-up.
    uint64_t deployment_version = 0;
    uint64_t reported_version = 0;
    uint64_t sessions_version = 0;
    uint64_t plan_errors_version = 0;
    absl::Time computed = absl::InfinitePast();
    tenon::v1::DeploymentStatus status;
  };
  tenon::v1::DeploymentStatus roll_up(const tenon::v1::Deployment& deployment) const;

  const ObjectCache* cache_;
  const SessionHub* sessions_;
  const ReportedState* reported_;
  mutable absl::Mutex rollups_mutex_;
  mutable std::map<std::string, Rollup> rollups_ ABSL_GUARDED_BY(rollups_mutex_);
  std::atomic<uint64_t> plan_errors_version_ = 0;
  mutable absl::Mutex plan_errors_mutex_;
  // deployment -> device -> why it cannot run there
  std::map<std::string, std::map<std::string, std::string>> plan_errors_
      ABSL_GUARDED_BY(plan_errors_mutex_);
};

}  // namespace tenon::controller
