// See migration_orchestrator.h.
#include "migration_orchestrator.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "crypto/sha256.h"
#include "time/proto_time.h"
#include "random_ids.h"
#include "reported_state.h"

namespace tenon::controller {

namespace v1 = tenon::v1;

namespace {

constexpr uint64_t kMaxSnapshotBytes = 1ull << 30;

}  // namespace

MigrationOrchestrator::~MigrationOrchestrator() {
  std::vector<std::thread> workers;
  {
    absl::MutexLock lock(&mutex_);
    stopping_ = true;
    for (auto& [id, migration] : migrations_) {
      fail(*migration, Cause::kStopping, "the controller is stopping");
    }
    workers.swap(workers_);
  }
  for (std::thread& worker : workers) worker.join();
}

absl::Status MigrationOrchestrator::start(const std::string& instance, const std::string& source,
                                          const std::string& target, absl::Duration step_limit,
                                          Done done) {
  auto migration = std::make_shared<Migration>();
  migration->id = random_hex(8);
  migration->instance = instance;
  migration->source = source;
  migration->target = target;
  migration->step_limit = step_limit;
  absl::MutexLock lock(&mutex_);
  if (stopping_) return absl::UnavailableError("the controller is stopping");
  for (const auto& [id, other] : migrations_) {
    if (other->instance == instance) {
      return absl::AbortedError("another migration of this instance is under way");
    }
  }
  migrations_[migration->id] = migration;
  workers_.emplace_back([this, migration, done = std::move(done)] { run(migration, done); });
  return absl::OkStatus();
}

std::vector<MigrationInProgress> MigrationOrchestrator::in_progress() const {
  std::vector<MigrationInProgress> active;
  absl::MutexLock lock(&mutex_);
  for (const auto& [id, migration] : migrations_) {
    if (migration->phase == Phase::kDone || migration->phase == Phase::kFailed) continue;
    active.push_back(
        {migration->instance, migration->source, migration->target, migration->snapshot_digest});
  }
  return active;
}

bool MigrationOrchestrator::migrating(const std::string& instance) const {
  absl::MutexLock lock(&mutex_);
  for (const auto& [id, migration] : migrations_) {
    if (migration->instance == instance) return true;
  }
  return false;
}

void MigrationOrchestrator::fail(Migration& migration, Cause cause, std::string error) {
  if (migration.phase == Phase::kFailed || migration.phase == Phase::kDone) return;
  migration.phase = Phase::kFailed;
  migration.cause = cause;
  migration.error = std::move(error);
  changed_.SignalAll();
}

void MigrationOrchestrator::on_status(const std::string& device,
                                      const v1::InstanceStatusUpdate& update) {
  absl::MutexLock lock(&mutex_);
  for (auto& [id, migration] : migrations_) {
    if (migration->instance != update.instance_name() || migration->target != device ||
        migration->phase != Phase::kRestoring) {
      continue;
    }
    if (update.state() == v1::INSTANCE_STATE_RUNNING) {
      migration->target_running = true;
      changed_.SignalAll();
    } else if (is_terminal(update.state())) {
      fail(*migration, Cause::kReported,
           absl::StrCat("the restored instance ended at ", device, ": ", update.message(), " ",
                        update.exit_reason().message()));
    }
  }
}

void MigrationOrchestrator::on_snapshot_upload(const std::string& device,
                                               const v1::SnapshotUpload& upload) {
  absl::MutexLock lock(&mutex_);
  auto found = migrations_.find(upload.migration_id());
  if (found == migrations_.end() || found->second->source != device ||
      found->second->phase != Phase::kSnapshotting) {
    return;  // late or foreign: the migration it belongs to is over
  }
  Migration& migration = *found->second;
  auto reject = [&](std::string why) {
    fail(migration, Cause::kReported, absl::StrCat("snapshot upload from ", device, ": ", why));
  };
  if (!upload.error().empty()) return reject(upload.error());
  const v1::ImageChunk& chunk = upload.chunk();
  if (chunk.offset() != migration.snapshot.size()) {
    return reject(
        absl::StrCat("chunk at offset ", chunk.offset(), ", expected ", migration.snapshot.size()));
  }
  if (chunk.total_size_bytes() > kMaxSnapshotBytes ||
      migration.snapshot.size() + chunk.data().size() > kMaxSnapshotBytes) {
    return reject("larger than the 1 GiB limit");
  }
  if (!chunk.chunk_sha256().empty() && chunk.chunk_sha256() != crypto::sha256_hex(chunk.data())) {
    return reject(absl::StrCat("chunk at offset ", chunk.offset(), " does not match its sha256"));
  }
  migration.snapshot.append(chunk.data());
  if (!chunk.last()) return;
  const std::string digest = "sha256:" + crypto::sha256_hex(migration.snapshot);
  if (digest != chunk.digest()) {
    return reject(absl::StrCat("the snapshot hashes to ", digest, ", not ", chunk.digest()));
  }
  // Written by the worker, outside this lock: a 1 GiB file must not stall agent traffic.
  migration.snapshot_digest = digest;
  migration.phase = Phase::kRestoring;
  changed_.SignalAll();
}

void MigrationOrchestrator::on_disconnect(const std::string& device) {
  absl::MutexLock lock(&mutex_);
  for (auto& [id, migration] : migrations_) {
    if (migration->source == device || migration->target == device) {
      fail(*migration, Cause::kDisconnected, absl::StrCat("device ", device, " disconnected"));
    }
  }
}

bool MigrationOrchestrator::wait_for(Migration& migration, const std::function<bool()>& done) {
  const absl::Time deadline = absl::Now() + migration.step_limit;
  absl::MutexLock lock(&mutex_);
  while (!done() && migration.phase != Phase::kFailed) {
    if (changed_.WaitWithDeadline(&mutex_, deadline)) {
      if (!done()) fail(migration, Cause::kTimedOut, "it did not finish in time");
      break;
    }
  }
  return done() && migration.phase != Phase::kFailed;
}

void MigrationOrchestrator::run(std::shared_ptr<Migration> migration, Done done) {
  absl::StatusOr<v1::MigrateResponse> result = drive(*migration);
  {
    absl::MutexLock lock(&mutex_);
    migrations_.erase(migration->id);
  }
  done(std::move(result));
}

// Any failure: the instance belongs to the source again and runs there; the target drops its
// copy.
absl::Status MigrationOrchestrator::roll_back(Migration& migration, const std::string& step) {
  Cause cause;
  std::string why;
  {
    absl::MutexLock lock(&mutex_);
    fail(migration, Cause::kStore, "");  // no-op when already failed
    cause = migration.cause;
    why = migration.error;
  }
  absl::Status reverted = actions_.assign(migration.instance, migration.source, "");
  if (reverted.ok()) reverted = actions_.replan_and_send({migration.source, migration.target});
  const std::string text = absl::StrCat(
      "migration of ", migration.instance, " failed at step '", step, "': ", why,
      reverted.ok() ? "; it runs on " + migration.source + " again"
                    : "; resuming it at the source failed too: " + std::string(reverted.message()));
  switch (cause) {
    case Cause::kTimedOut:
      return absl::DeadlineExceededError(text);
    case Cause::kStore:
      return absl::AbortedError(text);
    case Cause::kStopping:
      return absl::UnavailableError(text);
    default:
      return absl::FailedPreconditionError(text);
  }
}

absl::StatusOr<v1::MigrateResponse> MigrationOrchestrator::drive(Migration& migration) {
  v1::MigrationReport report;
  report.set_source_device(migration.source);
  report.set_target_device(migration.target);
  const absl::Time started = absl::Now();

  // Registered now, so on_disconnect sees this migration: a device that left between the
  // caller's check and here is caught by this one.
  for (const std::string* device : {&migration.source, &migration.target}) {
    if (!actions_.connected(*device)) {
      {
        absl::MutexLock lock(&mutex_);
        fail(migration, Cause::kDisconnected, absl::StrCat("device ", *device, " disconnected"));
      }
      return roll_back(migration, "snapshot");
    }
  }

  // 1. Hold the instance paused at the source and have the source snapshot and upload it.
  if (absl::Status held = actions_.replan_and_send({migration.source}); !held.ok()) {
    absl::MutexLock lock(&mutex_);
    fail(migration, Cause::kStore, std::string(held.message()));
    return held;
  }
  v1::ControllerMessage command;
  command.mutable_snapshot()->set_instance_name(migration.instance);
  command.mutable_snapshot()->set_migration_id(migration.id);
  if (!actions_.send(migration.source, std::move(command))) {
    absl::MutexLock lock(&mutex_);
    fail(migration, Cause::kDisconnected,
         absl::StrCat("device ", migration.source, " disconnected"));
  }
  if (!wait_for(migration, [&] { return migration.phase == Phase::kRestoring; })) {
    return roll_back(migration, "snapshot");
  }
  std::string snapshot;
  {
    absl::MutexLock lock(&mutex_);
    snapshot.swap(migration.snapshot);
  }
  if (absl::Status stored = actions_.store_blob(migration.snapshot_digest, snapshot);
      !stored.ok()) {
    absl::MutexLock lock(&mutex_);
    fail(migration, Cause::kStore, std::string(stored.message()));
    return roll_back(migration, "snapshot");
  }
  const absl::Time snapshotted = absl::Now();
  *report.mutable_snapshot_time() = time::to_proto(snapshotted - started);
  report.set_snapshot_bytes(snapshot.size());
  report.set_snapshot_digest(migration.snapshot_digest);
  snapshot.clear();
  snapshot.shrink_to_fit();

  // 2. The instance now belongs to the target, which restores the snapshot and resumes it.
  absl::Status moved = actions_.assign(migration.instance, migration.target, migration.source);
  if (moved.ok()) moved = actions_.replan_and_send({migration.source, migration.target});
  if (!moved.ok()) {
    {
      absl::MutexLock lock(&mutex_);
      fail(migration, Cause::kStore, std::string(moved.message()));
    }
    return roll_back(migration, "transfer");
  }
  const absl::Time restore_requested = absl::Now();
  if (!wait_for(migration, [&] { return migration.target_running; })) {
    return roll_back(migration, "restore");
  }
  const absl::Time resumed = absl::Now();
  *report.mutable_transfer_time() = time::to_proto(restore_requested - snapshotted);
  *report.mutable_restore_time() = time::to_proto(resumed - restore_requested);
  *report.mutable_downtime() = time::to_proto(resumed - started);

  // 3. Done: the source drops its paused copy, the target no longer needs the snapshot digest.
  {
    absl::MutexLock lock(&mutex_);
    migration.phase = Phase::kDone;
  }
  if (absl::Status finished = actions_.replan_and_send({migration.source, migration.target});
      !finished.ok()) {
    return finished;
  }
  absl::StatusOr<v1::Instance> instance = actions_.read_instance(migration.instance);
  if (!instance.ok()) return instance.status();
  v1::MigrateResponse response;
  *response.mutable_instance() = *std::move(instance);
  *response.mutable_report() = report;
  return response;
}

}  // namespace tenon::controller
