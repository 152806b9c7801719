// The controller's composition root and its write path, independent of transport: the operator
// API (FleetService semantics, as documented in proto/tenon/v1/fleet.proto) and the device side
// of the agent protocol (agent.proto). grpc_services.cc and rest_api.cc are thin adapters over
// it. Its parts, each with its own state and lock (see README.md's map):
//   - the Store (durable; every write in one transaction, committed before memory changes);
//   - the ObjectCache, fed by the store's change feed, and the FleetReader over it: every
//     operator read, never waiting on the write path;
//   - the planner (planner.h): pure functions, called by replan;
//   - the SessionHub: agent streams, sharded; messages are sent after the write path's lock is
//     released;
//   - ReportedState: what agents report about instances, flushed to the store in batches;
//   - the MigrationOrchestrator: migrations as their own state machines.
// The write path (Apply, Delete, enrolment, a changed reported profile, migration steps) is
// serialised by one lock that nothing on the read or agent side takes.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "blob_store.h"
#include "fleet_composer.h"
#include "fleet_reader.h"
#include "migration_orchestrator.h"
#include "object_cache.h"
#include "planner.h"
#include "reported_state.h"
#include "session_hub.h"
#include "store.h"
#include "tenon/v1/agent.pb.h"
#include "tenon/v1/fleet.pb.h"

namespace tenon::controller {

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

class Controller {
 public:
  // Reads what the store holds (the objects into the object cache, the instances' last reported
  // state) and subscribes the cache to the store's change feed, which from then on is this
  // controller's: one controller per Store object.
  static absl::StatusOr<std::unique_ptr<Controller>> create(ControllerConfig config, Store* store,
                                                            BlobStore* blobs,
                                                            FleetComposer* composer);
  // Hands what is still queued to the sessions, then stops the sender.
  ~Controller();

  // Blocks until every desired state committed so far was handed to its device's session
  // (they are sent by one sender thread, in commit order, after the write path returns).
  void wait_for_sends();

  // Stored instances the planner has examined so far: its work, linear in the fleet's size.
  uint64_t planner_instances_examined() const { return planner_instances_examined_.load(); }

  // ---- Operator API (FleetService) ----
  absl::StatusOr<tenon::v1::ApplyResponse> apply(const tenon::v1::ApplyRequest& request);
  absl::StatusOr<tenon::v1::Object> get(const tenon::v1::GetRequest& request) const {
    return reader_.get(request);
  }
  absl::StatusOr<tenon::v1::ListResponse> list(const tenon::v1::ListRequest& request) const {
    return reader_.list(request);
  }
  absl::StatusOr<WatchBatch> watch(const tenon::v1::WatchRequest& request,
                                   absl::Duration wait) const {
    return reader_.watch(request, wait);
  }
  uint64_t resource_version() const { return cache_.resource_version(); }
  absl::StatusOr<tenon::v1::DeleteResponse> remove(const tenon::v1::DeleteRequest& request);
  absl::StatusOr<tenon::v1::DiffResponse> diff(const tenon::v1::DiffRequest& request);
  absl::StatusOr<tenon::v1::ComposeResponse> compose(const tenon::v1::ComposeRequest& request);
  absl::StatusOr<tenon::v1::CreateBootstrapTokenResponse> create_bootstrap_token(
      const tenon::v1::CreateBootstrapTokenRequest& request);
  // Moves an instance to another device (see FleetService.Migrate): hold it paused at the source,
  // snapshot and upload it there, restore and resume it at the target, then drop it at the
  // source. Any failure resumes it at the source; `step_limit` bounds each step. Checks and
  // starts the migration, then returns: `done` runs once, with the outcome, from the
  // migration's own thread (or from this call when the migration cannot start).
  void migrate(const tenon::v1::MigrateRequest& request, absl::Duration step_limit,
               MigrationOrchestrator::Done done);
  // Console: the bytes held from `offset` on (or the last `tail_bytes` when offset is 0); waits
  // up to `wait` for bytes beyond `offset` when none are held yet. Sets *terminal when the
  // instance has stopped for good.
  absl::StatusOr<tenon::v1::ConsoleChunk> read_console(const std::string& instance, uint64_t offset,
                                                       uint64_t tail_bytes, absl::Duration wait,
                                                       bool* terminal) {
    return reported_.read_console(instance, offset, tail_bytes, wait, terminal);
  }

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
  // Moves staged rollouts on (rollout.h): checks each PROGRESSING wave's health gate and bake
  // time on what its devices report at `now`, and starts the next wave, completes, halts or
  // rolls back, storing the decision and replanning. The daemon calls it every few hundred
  // milliseconds; tests call it with the time they mean.
  absl::Status advance_rollouts(absl::Time now);
  // An operator's action on a deployment's rollout (FleetService.ControlRollout): stored, and
  // the fleet replanned; returns the deployment as operators read it then.
  absl::StatusOr<tenon::v1::Deployment> control_rollout(
      const tenon::v1::ControlRolloutRequest& request);
  ControllerSnapshot snapshot() const;
  const ControllerConfig& config() const { return config_; }

 private:
  Controller(ControllerConfig config, Store* store, BlobStore* blobs, FleetComposer* composer);
  absl::Status recover();

  // What a replan decided beyond the store: applied to memory after the commit.
  struct ReplanOutcome {
    std::vector<std::pair<std::string, tenon::v1::DesiredState>> to_send;
    std::vector<std::pair<std::string, std::string>> placed;                // instance, device
    std::vector<std::string> removed;                                       // instances
    std::map<std::string, std::map<std::string, std::string>> plan_errors;  // device -> ...
  };

  // `revisions` may be null: every deployment's stored spec and app (dry runs and diffs).
  PlannerInputs planner_inputs(const FleetView& view,
                               const std::vector<MigrationInProgress>& migrations,
                               const std::map<std::string, RevisionPlan>* revisions = nullptr);
  // ---- The rollout engine's side (rollout_engine.cc) ----
  // Makes a revision of each of these deployments whose spec or app changed in what reaches the
  // instances, and starts rolling it out (stored with the deployment; `view` follows).
  absl::Status start_revisions(StoreTransaction& tx, FleetView& view,
                               const std::set<std::string>& changed, absl::Time now);
  // What each deployment's instances are to run, for a replan. `view_is_whole`: the view holds
  // every device (else staged rollouts read the selected devices from the object cache).
  std::map<std::string, RevisionPlan> revision_plans(const FleetView& view, bool view_is_whole)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mutex_);
  // The devices a staged rollout's waves have reached, remembered per (deployment uid, revision,
  // wave); `refresh` computes them afresh (advance_rollouts does, every check).
  std::shared_ptr<const std::set<std::string>> admitted_devices(
      const std::string& name, const tenon::v1::Deployment& deployment, const FleetView* whole_view,
      bool refresh = false) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mutex_);
  // Every App and Deployment, and every Device or only these.
  absl::StatusOr<FleetView> load_view(StoreTransaction& tx,
                                      const std::set<std::string>& only_devices);
  // Recomputes the desired state of these devices (all when empty) and stores what changed.
  // With `must_place`, FailedPrecondition (before anything is written) when one of these
  // deployments cannot run on a device it selects.
  absl::Status replan(StoreTransaction& tx, const std::set<std::string>& only,
                      ReplanOutcome* outcome, const std::set<std::string>* must_place = nullptr);
  // Fields the API accepts that nothing acts on yet are refused with the reason, rather than
  // stored and ignored: the latency composition policy, SOFT and BEST_EFFORT
  // tasks (the analysis treats every task as HARD). UNIMPLEMENTED naming the field.
  static absl::Status check_acted_on(const tenon::v1::Object& object);
  static absl::Status check_acted_on(const tenon::v1::AppSpec& app, const std::string& where);
  static absl::Status check_placed(const std::string& device, const DevicePlan& plan,
                                   const std::set<std::string>& must_place);
  // After the commit: memory follows the store, and the new desired states are queued for the
  // sender.
  void finish(ReplanOutcome& outcome);
  void send_queued_desired_states();
  // Replans these devices in a transaction of its own and sends what changed.
  absl::Status replan_and_send(const std::set<std::string>& devices);
  void send_desired_state(const std::string& device,
                          std::shared_ptr<const tenon::v1::DesiredState> state);
  // Stores that an instance runs on `device` now (a migration's step or its rollback).
  absl::Status assign_instance(const std::string& instance, const std::string& device,
                               const std::string& migrated_from);
  absl::Status check_migration_request(const tenon::v1::MigrateRequest& request,
                                       std::string* source);
  // The device has no stream any more (it ended, or went silent).
  void device_disconnected(const std::string& device);
  absl::Status handle_image_request(const std::string& device, AgentSession& session,
                                    const tenon::v1::ImageRequest& request, uint64_t sequence);
  // An image cut into checksummed chunks, kept for the few images a rollout sends to every
  // device (so ten thousand transfers read and hash it once).
  struct ImageChunks {
    uint64_t total_size_bytes = 0;
    std::vector<tenon::v1::ImageChunk> chunks;
  };
  static constexpr size_t kImageChunksKept = 8;
  absl::StatusOr<std::shared_ptr<const ImageChunks>> image_chunks(const std::string& digest);

  ControllerConfig config_;
  Store* store_;
  BlobStore* blobs_;
  FleetComposer* composer_;

  ObjectCache cache_;
  SessionHub sessions_;
  ReportedState reported_;
  FleetReader reader_;
  // Serialises the write path: planning and the transaction that stores the plan.
  absl::Mutex write_mutex_;
  struct Admission {
    std::string uid;  // the deployment's: one deleted and made again starts afresh
    uint64_t revision = 0;
    uint32_t wave = 0;
    uint32_t waves = 0;
    std::shared_ptr<const std::set<std::string>> devices;
  };
  std::map<std::string, Admission> admissions_ ABSL_GUARDED_BY(write_mutex_);
  std::atomic<uint64_t> planner_instances_examined_ = 0;
  std::atomic<uint64_t> image_transfers_ = 0;
  std::atomic<uint64_t> image_bytes_sent_ = 0;
  std::atomic<uint64_t> desired_states_sent_ = 0;
  absl::Mutex image_chunks_mutex_;
  std::deque<std::pair<std::string, std::shared_ptr<const ImageChunks>>> image_chunks_
      ABSL_GUARDED_BY(image_chunks_mutex_);  // newest last
  // Desired states on their way to sessions: a gRPC write costs tens of microseconds, and ten
  // thousand of them do not belong in Apply's latency. One sender keeps commit order.
  absl::Mutex outbox_mutex_;
  std::deque<std::pair<std::string, std::shared_ptr<const tenon::v1::DesiredState>>> outbox_
      ABSL_GUARDED_BY(outbox_mutex_);
  uint64_t outbox_queued_ ABSL_GUARDED_BY(outbox_mutex_) = 0;
  uint64_t outbox_sent_ ABSL_GUARDED_BY(outbox_mutex_) = 0;
  bool outbox_stopping_ ABSL_GUARDED_BY(outbox_mutex_) = false;
  std::thread sender_;
  // Last: its destructor fails and joins migrations that still use the parts above.
  MigrationOrchestrator migrations_;
};

}  // namespace tenon::controller
