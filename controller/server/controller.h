// The controller's core, independent of transport: the operator API (FleetService semantics, as
// documented in proto/tenon/v1/fleet.proto) and the device side of the agent protocol
// (agent.proto). fleet_service.cc, agent_service.cc and rest_api.cc are thin adapters over it.
//
// Durable state (objects, credentials, desired states) lives in the Store and is written before
// anything is acknowledged. What devices report (connection, observed instance state, telemetry,
// console) is held in memory and flushed to the store in batches (flush_reported_state): it is
// re-sent by every agent in its Hello, so a crash loses at most one flush interval of it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "blob_store.h"
#include "fleet_composer.h"
#include "store.h"
#include "tenon/v1/agent.pb.h"
#include "tenon/v1/fleet.pb.h"

namespace tenon::controller {

// One agent's open stream, as the core sees it. Implemented by the gRPC adapter.
class AgentSession {
 public:
  virtual ~AgentSession() = default;
  // Queues a message (the adapter numbers it); never blocks.
  virtual void send(tenon::v1::ControllerMessage message) = 0;
  // Ends the stream with this status once queued messages are written.
  virtual void close(const absl::Status& status) = 0;
};

// A device whose agent answers nothing (not even a ping's ack) for this many ping intervals is
// disconnected by ping_all.
inline constexpr int kSilentPings = 3;

struct ControllerConfig {
  absl::Duration ping_interval = absl::Seconds(5);
  absl::Duration telemetry_interval = absl::Seconds(1);
  uint32_t max_chunk_bytes = 64 << 10;
  size_t console_tail_bytes = 16 << 10;
  std::string version = "0.1.0";
};

// Figures for /metrics, taken under the lock in one go.
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
};

class Controller {
 public:
  Controller(ControllerConfig config, Store* store, BlobStore* blobs, FleetComposer* composer);

  // Reads what a previous run left in the store (the instances and their last reported state).
  // Call once, before serving.
  absl::Status recover();

  // Stored instances the planner has examined so far: its work, linear in the fleet's size.
  uint64_t planner_instances_examined() const;

  // ---- Operator API (FleetService) ----
  absl::StatusOr<tenon::v1::ApplyResponse> apply(const tenon::v1::ApplyRequest& request);
  absl::StatusOr<tenon::v1::Object> get(const tenon::v1::GetRequest& request);
  absl::StatusOr<tenon::v1::ListResponse> list(const tenon::v1::ListRequest& request);
  absl::StatusOr<tenon::v1::DeleteResponse> remove(const tenon::v1::DeleteRequest& request);
  absl::StatusOr<tenon::v1::DiffResponse> diff(const tenon::v1::DiffRequest& request);
  absl::StatusOr<tenon::v1::ComposeResponse> compose(const tenon::v1::ComposeRequest& request);
  absl::StatusOr<tenon::v1::CreateBootstrapTokenResponse> create_bootstrap_token(
      const tenon::v1::CreateBootstrapTokenRequest& request);
  // Moves an instance to another device (see FleetService.Migrate): hold it paused at the source,
  // snapshot and upload it there, restore and resume it at the target, then drop it at the
  // source. Any failure resumes it at the source; `step_limit` bounds each step.
  absl::StatusOr<tenon::v1::MigrateResponse> migrate(const tenon::v1::MigrateRequest& request,
                                                     absl::Duration step_limit);
  // Console: the bytes held from `offset` on (or the last `tail_bytes` when offset is 0); waits
  // up to `wait` for bytes beyond `offset` when none are held yet. Sets *end_offset to the offset
  // after the returned bytes, *terminal when the instance has stopped for good.
  absl::StatusOr<tenon::v1::ConsoleChunk> read_console(const std::string& instance, uint64_t offset,
                                                       uint64_t tail_bytes, absl::Duration wait,
                                                       bool* terminal);

  // ---- Agent API (AgentService) ----
  absl::StatusOr<tenon::v1::EnrollResponse> enroll(const tenon::v1::EnrollRequest& request);
  // Authenticates a Hello and makes `session` the device's stream (ending an older one with
  // ABORTED); sends Welcome and, when stale, the desired state. An error ends the stream.
  absl::Status open_session(const std::shared_ptr<AgentSession>& session,
                            const tenon::v1::Hello& hello);
  // Handles one message of an open session; an error ends the stream.
  absl::Status handle(const std::string& device, const std::shared_ptr<AgentSession>& session,
                      const tenon::v1::AgentMessage& message);
  void close_session(const std::string& device, const std::shared_ptr<AgentSession>& session);

  // ---- Housekeeping ----
  // Pings every connected agent, and disconnects those silent for kSilentPings intervals.
  void ping_all();
  absl::Status flush_reported_state();
  ControllerSnapshot snapshot();
  const ControllerConfig& config() const { return config_; }

 private:
  struct DeviceRuntime {
    std::shared_ptr<AgentSession> session;
    absl::Time last_seen = absl::InfinitePast();
    uint64_t acknowledged_version = 0;
    std::set<std::string> images;  // digests the device holds
    std::string rejection;         // the agent's reason for rejecting the last desired state
    bool dirty = false;
  };
  struct InstanceRuntime {
    std::string device;  // where it runs: only that device's reports count
    tenon::v1::InstanceStatus status;
    std::optional<tenon::v1::InstanceTelemetry> telemetry;
    std::string console;  // the tail: bytes [console_offset, console_offset + size)
    uint64_t console_offset = 0;
    bool console_subscribed = false;
    bool dirty = false;
  };
  // The objects a plan reads: the store's, overlaid with a request's.
  struct FleetView {
    std::map<std::string, tenon::v1::Device> devices;
    std::map<std::string, tenon::v1::App> apps;
    std::map<std::string, tenon::v1::Deployment> deployments;
  };
  struct PlannedInstance {
    tenon::v1::DesiredInstance desired;  // uid unset
    tenon::v1::InstanceSpec spec;
    tenon::v1::Composition composition;
  };
  struct Migration {
    enum class Phase { kSnapshotting, kRestoring, kDone, kFailed };
    std::string id;
    std::string instance;
    std::string source;
    std::string target;
    Phase phase = Phase::kSnapshotting;
    std::string snapshot;  // the upload as it arrives
    std::string snapshot_digest;
    std::string error;  // why it failed
    bool target_running = false;
  };
  struct DevicePlan {
    std::vector<PlannedInstance> instances;
    std::map<std::string, std::string> errors;  // deployment -> why it cannot run here
  };

  // Every App and Deployment, and every Device or only these.
  absl::StatusOr<FleetView> load_view(StoreTransaction& tx,
                                      const std::set<std::string>& only_devices);
  // The stored instances a replan may keep, by name, and for each device the names of the ones
  // that concern it (it runs them, or they are migrating away from it): indexed once per replan,
  // so that planning a device costs what concerns that device, not the whole fleet.
  struct ExistingInstances {
    const std::map<std::string, tenon::v1::Instance>* by_name = nullptr;  // borrowed
    std::map<std::string, std::vector<std::string>> by_device;
  };
  ExistingInstances index_existing(
      const std::map<std::string, tenon::v1::Instance>& instances) const;
  // With `existing`, instances that migrated stay where they went.
  DevicePlan plan_device(const FleetView& view, const tenon::v1::Device& device,
                         const ExistingInstances* existing = nullptr);
  PlannedInstance planned_from_spec(const tenon::v1::Instance& instance);
  const Migration* active_migration(const std::string& instance) const;
  void handle_snapshot_upload(const std::string& device, const tenon::v1::SnapshotUpload& upload);
  // Replans these devices and sends what changed; under the lock.
  absl::Status replan_and_send(const std::set<std::string>& devices);
  // Recomputes the desired state of these devices (all when empty), stores what changed, and
  // pushes new desired states to connected agents.
  absl::Status replan(StoreTransaction& tx, const std::set<std::string>& only,
                      std::vector<std::pair<std::string, tenon::v1::DesiredState>>* to_send);
  void send_desired_state(const std::string& device, const tenon::v1::DesiredState& state);
  // The device has no stream any more (it ended, or went silent): Disconnected from now on.
  void detach_session(const std::string& device, DeviceRuntime& runtime);
  void subscribe_consoles(const std::string& device, const tenon::v1::DesiredState& state);

  // What a deployment's status is computed from: every device, and every instance.
  struct DeploymentContext {
    FleetView view;
    std::vector<tenon::v1::Object> instances;
  };
  absl::StatusOr<DeploymentContext> load_deployment_context(StoreTransaction& tx);

  // The object with what devices reported merged in (Device and Instance; others unchanged).
  tenon::v1::Object with_runtime(tenon::v1::Object object);
  void fill_device_status(tenon::v1::Device* device);
  void fill_instance_status(tenon::v1::Instance* instance);
  void fill_deployment_status(tenon::v1::Deployment* deployment, const FleetView& view,
                              const std::vector<tenon::v1::Object>& instances);
  absl::Status handle_image_request(const std::string& device, AgentSession& session,
                                    const tenon::v1::ImageRequest& request, uint64_t sequence);
  void record_status(const std::string& device, const tenon::v1::InstanceStatusUpdate& update);

  ControllerConfig config_;
  Store* store_;
  BlobStore* blobs_;
  FleetComposer* composer_;

  mutable absl::Mutex mutex_;
  absl::CondVar console_changed_;
  absl::CondVar migration_changed_;
  std::map<std::string, Migration> migrations_ ABSL_GUARDED_BY(mutex_);  // by id
  // Stored instances the planner has looked at, summed over every plan_device call: the
  // planner's work, which must grow with the fleet, not with its square.
  uint64_t planner_instances_examined_ ABSL_GUARDED_BY(mutex_) = 0;
  std::map<std::string, DeviceRuntime> devices_ ABSL_GUARDED_BY(mutex_);
  std::map<std::string, InstanceRuntime> instances_ ABSL_GUARDED_BY(mutex_);
  std::map<std::string, std::map<std::string, std::string>> plan_errors_ ABSL_GUARDED_BY(mutex_);
  uint64_t image_transfers_ ABSL_GUARDED_BY(mutex_) = 0;
  uint64_t image_bytes_sent_ ABSL_GUARDED_BY(mutex_) = 0;
  uint64_t desired_states_sent_ ABSL_GUARDED_BY(mutex_) = 0;
};

// Whether a device with these labels is selected (an empty selector selects none).
bool selector_matches(const tenon::v1::LabelSelector& selector,
                      const google::protobuf::Map<std::string, std::string>& labels);
// "<deployment>-" and 12 hex digits of sha256(deployment "/" device).
std::string instance_name(const std::string& deployment, const std::string& device);

}  // namespace tenon::controller
