// The migration orchestrator: moves a running instance between devices as its own asynchronous
// state machine (snapshotting -> restoring -> done, or failed with the step and a typed cause),
// one worker thread per migration, so no RPC thread waits on it. It owns the migrations and
// their lock; what a migration does to the rest of the controller (replan, store, send) goes
// through the Actions it is given, never under its own lock.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "planner.h"
#include "tenon/v1/agent.pb.h"
#include "tenon/v1/fleet.pb.h"

namespace tenon::controller {

class MigrationOrchestrator {
 public:
  struct Actions {
    // Replans these devices and sends what changed.
    std::function<absl::Status(const std::set<std::string>& devices)> replan_and_send;
    // Stores that the instance belongs to `device` (and, moving forward, where it came from).
    std::function<absl::Status(const std::string& instance, const std::string& device,
                               const std::string& migrated_from)>
        assign;
    std::function<bool(const std::string& device, tenon::v1::ControllerMessage message)> send;
    std::function<bool(const std::string& device)> connected;
    // The stored instance with its reported status.
    std::function<absl::StatusOr<tenon::v1::Instance>(const std::string& instance)> read_instance;
    // Stores an uploaded snapshot by its digest (verified).
    std::function<absl::Status(const std::string& digest, const std::string& bytes)> store_blob;
  };
  using Done = std::function<void(absl::StatusOr<tenon::v1::MigrateResponse>)>;

  explicit MigrationOrchestrator(Actions actions) : actions_(std::move(actions)) {}
  // Fails the migrations still under way ("the controller is stopping") and joins their threads.
  ~MigrationOrchestrator();

  // Starts moving `instance` from `source` to `target` (the caller checked that it may); `done`
  // runs once, on the migration's thread. ABORTED when this instance is migrating already.
  absl::Status start(const std::string& instance, const std::string& source,
                     const std::string& target, absl::Duration step_limit, Done done);
  std::vector<MigrationInProgress> in_progress() const;
  bool migrating(const std::string& instance) const;

  // What agents report, as far as a migration is concerned.
  void on_status(const std::string& device, const tenon::v1::InstanceStatusUpdate& update);
  void on_snapshot_upload(const std::string& device, const tenon::v1::SnapshotUpload& upload);
  void on_disconnect(const std::string& device);

 private:
  enum class Phase { kSnapshotting, kRestoring, kDone, kFailed };
  // Why a migration failed, by kind: a step's reported failure or a deadline.
  enum class Cause { kNone, kReported, kDisconnected, kTimedOut, kStore, kStopping };
  struct Migration {
    std::string id;
    std::string instance;
    std::string source;
    std::string target;
    absl::Duration step_limit;
    Phase phase = Phase::kSnapshotting;
    std::string snapshot;  // the upload as it arrives
    std::string snapshot_digest;
    Cause cause = Cause::kNone;
    std::string error;
    bool target_running = false;
  };

  void run(std::shared_ptr<Migration> migration, Done done);
  absl::StatusOr<tenon::v1::MigrateResponse> drive(Migration& migration);
  // Waits (up to the step limit) until `done` holds or the migration fails.
  bool wait_for(Migration& migration, const std::function<bool()>& done);
  void fail(Migration& migration, Cause cause, std::string error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  absl::Status roll_back(Migration& migration, const std::string& step);

  Actions actions_;
  mutable absl::Mutex mutex_;
  absl::CondVar changed_;
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  std::map<std::string, std::shared_ptr<Migration>> migrations_ ABSL_GUARDED_BY(mutex_);  // id
  std::vector<std::thread> workers_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace tenon::controller
