// See controller.h. This file: construction, the write path's planning (replan) and what follows
// a commit, and housekeeping (pings, flushing reported state, /metrics figures).
#include "controller.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/protobuf/util/time_util.h"
#include "object_meta.h"
#include "random_ids.h"
#include "time/proto_time.h"

namespace tenon::controller {

namespace v1 = tenon::v1;

Controller::Controller(ControllerConfig config, Store* store, BlobStore* blobs,
                       FleetComposer* composer)
    : config_(std::move(config)),
      store_(store),
      blobs_(blobs),
      composer_(composer),
      reported_(config_.console_tail_bytes),
      reader_(&cache_, &sessions_, &reported_),
      migrations_(MigrationOrchestrator::Actions{
          .replan_and_send =
              [this](const std::set<std::string>& devices) { return replan_and_send(devices); },
          .assign =
              [this](const std::string& instance, const std::string& device,
                     const std::string& migrated_from) {
                return assign_instance(instance, device, migrated_from);
              },
          .send = [this](const std::string& device,
                         v1::ControllerMessage message) { return sessions_.send(device, message); },
          .connected = [this](const std::string& device) { return sessions_.connected(device); },
          .read_instance = [this](const std::string& name) -> absl::StatusOr<v1::Instance> {
            CachedObject object = cache_.get(v1::OBJECT_KIND_INSTANCE, name);
            if (object == nullptr) return absl::NotFoundError("Instance " + name + " not found");
            v1::Instance instance = object->instance();
            reader_.fill_instance_status(&instance);
            return instance;
          },
          .store_blob =
              [this](const std::string& digest, const std::string& bytes) {
                return blobs_->put_verified(digest, bytes);
              },
      }) {}

absl::StatusOr<std::unique_ptr<Controller>> Controller::create(ControllerConfig config,
                                                               Store* store, BlobStore* blobs,
                                                               FleetComposer* composer) {
  std::unique_ptr<Controller> controller(new Controller(std::move(config), store, blobs, composer));
  if (absl::Status recovered = controller->recover(); !recovered.ok()) return recovered;
  Controller* self = controller.get();
  controller->sender_ = std::thread([self] { self->send_queued_desired_states(); });
  return controller;
}

Controller::~Controller() {
  {
    absl::MutexLock lock(&outbox_mutex_);
    outbox_stopping_ = true;
  }
  if (sender_.joinable()) sender_.join();
}

absl::Status Controller::recover() {
  if (absl::Status primed = cache_.prime(*store_); !primed.ok()) return primed;
  const absl::Time now = absl::Now();
  for (const CachedObject& object : cache_.all(v1::OBJECT_KIND_INSTANCE)) {
    const v1::Instance& instance = object->instance();
    reported_.place(instance.metadata().name(), instance.spec().device(), &instance.status(), now);
  }
  return absl::OkStatus();
}

// ---- Planning -----------------------------------------------------------------------------------

absl::StatusOr<FleetView> Controller::load_view(StoreTransaction& tx,
                                                const std::set<std::string>& only_devices) {
  FleetView view;
  for (const std::string& name : only_devices) {
    absl::StatusOr<std::optional<v1::Object>> device = tx.get_object(v1::OBJECT_KIND_DEVICE, name);
    if (!device.ok()) return device.status();
    if (device->has_value()) view.devices[name] = std::move(*(*device)->mutable_device());
  }
  for (v1::ObjectKind kind :
       {v1::OBJECT_KIND_DEVICE, v1::OBJECT_KIND_APP, v1::OBJECT_KIND_DEPLOYMENT}) {
    if (kind == v1::OBJECT_KIND_DEVICE && !only_devices.empty()) continue;
    absl::StatusOr<std::vector<v1::Object>> objects = tx.list_objects(kind);
    if (!objects.ok()) return objects.status();
    for (v1::Object& object : *objects) {
      const std::string name = object_meta(object).name();
      switch (kind) {
        case v1::OBJECT_KIND_DEVICE:
          view.devices[name] = std::move(*object.mutable_device());
          break;
        case v1::OBJECT_KIND_APP:
          view.apps[name] = std::move(*object.mutable_app());
          break;
        default:
          view.deployments[name] = std::move(*object.mutable_deployment());
          break;
      }
    }
  }
  return view;
}

PlannerInputs Controller::planner_inputs(const FleetView& view,
                                         const std::vector<MigrationInProgress>& migrations,
                                         const std::map<std::string, RevisionPlan>* revisions) {
  PlannerInputs inputs;
  inputs.view = &view;
  inputs.migrations = &migrations;
  inputs.revisions = revisions;
  inputs.compose = [this](const std::string& app_name, const v1::AppSpec& app,
                          const v1::DeviceProfile& profile, const v1::Placement& placement) {
    return composer_->compose(app_name, app, profile, placement, /*build=*/true);
  };
  inputs.image_size = [this](const std::string& digest) -> uint64_t {
    absl::StatusOr<uint64_t> size = blobs_->size(digest);
    return size.ok() ? *size : 0;
  };
  return inputs;
}

absl::Status Controller::check_placed(const std::string& device, const DevicePlan& plan,
                                      const std::set<std::string>& must_place) {
  for (const auto& [deployment, error] : plan.errors) {
    if (must_place.contains(deployment)) {
      return absl::FailedPreconditionError(
          absl::StrCat("Deployment ", deployment, " cannot run on device ", device, ": ", error));
    }
  }
  return absl::OkStatus();
}

absl::Status Controller::replan(StoreTransaction& tx, const std::set<std::string>& only,
                                ReplanOutcome* outcome, const std::set<std::string>* must_place) {
  absl::StatusOr<FleetView> view = load_view(tx, only);
  if (!view.ok()) return view.status();
  const std::vector<MigrationInProgress> migrations = migrations_.in_progress();
  // The instances the plan may keep, replace or remove: all of them, or, for a few devices, the
  // ones their current desired states name (one device's replan must not read the whole fleet).
  std::map<std::string, v1::Instance> existing;
  auto load_instance = [&](const std::string& name) -> absl::Status {
    if (existing.contains(name)) return absl::OkStatus();
    absl::StatusOr<std::optional<v1::Object>> object =
        tx.get_object(v1::OBJECT_KIND_INSTANCE, name);
    if (!object.ok()) return object.status();
    if (object->has_value()) existing[name] = std::move(*(*object)->mutable_instance());
    return absl::OkStatus();
  };
  if (only.empty()) {
    absl::StatusOr<std::vector<v1::Object>> stored = tx.list_objects(v1::OBJECT_KIND_INSTANCE);
    if (!stored.ok()) return stored.status();
    for (v1::Object& object : *stored) {
      existing[object.instance().metadata().name()] = std::move(*object.mutable_instance());
    }
  } else {
    for (const std::string& device : only) {
      absl::StatusOr<std::optional<v1::DesiredState>> desired = tx.get_desired_state(device);
      if (!desired.ok()) return desired.status();
      if (desired->has_value()) {
        for (const v1::DesiredInstance& instance : (*desired)->instances()) {
          if (absl::Status loaded = load_instance(instance.name()); !loaded.ok()) return loaded;
        }
      }
      // Instances named after the device (they may have migrated away).
      for (const auto& [deployment, unused] : view->deployments) {
        if (absl::Status loaded = load_instance(instance_name(deployment, device)); !loaded.ok()) {
          return loaded;
        }
      }
    }
    for (const MigrationInProgress& migration : migrations) {
      if (only.contains(migration.source) || only.contains(migration.target)) {
        if (absl::Status loaded = load_instance(migration.instance); !loaded.ok()) return loaded;
      }
    }
  }
  const absl::Time now = absl::Now();
  const ExistingInstances indexed = index_existing(existing, migrations);
  const std::map<std::string, RevisionPlan> revisions = revision_plans(*view, only.empty());
  PlannerInputs inputs = planner_inputs(*view, migrations, &revisions);
  inputs.check_unreached = must_place != nullptr;
  std::set<std::string> planned_names;
  std::set<std::string> stored_compositions;  // looked up (and stored if new) in this replan
  uint64_t examined = 0;
  std::map<std::string, DevicePlan> plans;
  for (const auto& [device_name, device] : view->devices) {
    if (!only.empty() && !only.contains(device_name)) continue;
    DevicePlan& plan = plans[device_name] = plan_device(inputs, device, &indexed, &examined);
    if (must_place != nullptr) {
      if (absl::Status placed = check_placed(device_name, plan, *must_place); !placed.ok()) {
        return placed;
      }
    }
  }
  planner_instances_examined_ += examined;
  for (auto& [device_name, plan] : plans) {
    const v1::Device& device = view->devices.at(device_name);
    outcome->plan_errors[device_name] = plan.errors;
    v1::DesiredState desired;
    for (PlannedInstance& planned : plan.instances) {
      const std::string& name = planned.desired.name();
      planned_names.insert(name);
      auto found = existing.find(name);
      // The instance keeps its uid while what the device must run stays the same.
      const bool same =
          found != existing.end() && same_instance(found->second.spec(), planned.spec);
      v1::Object object;
      v1::Instance* instance = object.mutable_instance();
      const bool held_at_source = same && found->second.spec().device() != device_name;
      if (held_at_source) {
        *instance = found->second;  // migrating away: the stored spec already names the target
      } else if (same) {
        *instance = found->second;
        if (!google::protobuf::util::MessageDifferencer::Equals(instance->spec(), planned.spec)) {
          *instance->mutable_spec() = planned.spec;
          instance->mutable_metadata()->set_generation(instance->metadata().generation() + 1);
          *instance->mutable_metadata()->mutable_update_time() = time::to_proto(now);
          if (absl::Status put = tx.put_object(object); !put.ok()) return put;
        }
      } else {
        v1::ObjectMeta* meta = instance->mutable_metadata();
        meta->set_name(name);
        meta->set_uid(new_uid());
        meta->set_generation(found != existing.end() ? found->second.metadata().generation() + 1
                                                     : 1);
        *meta->mutable_create_time() =
            found != existing.end() ? found->second.metadata().create_time() : time::to_proto(now);
        *meta->mutable_update_time() = time::to_proto(now);
        (*meta->mutable_labels())["deployment"] = planned.spec.deployment();
        (*meta->mutable_labels())["device"] = device_name;
        *instance->mutable_spec() = planned.spec;
        std::optional<v1::InstanceStatus> reported = reported_.status(name);
        if (found != existing.end() && reported.has_value()) {
          *instance->mutable_status() = *reported;
        } else {
          instance->mutable_status()->set_observed_state(v1::INSTANCE_STATE_PENDING);
          *instance->mutable_status()->mutable_last_transition_time() = time::to_proto(now);
        }
        if (absl::Status put = tx.put_object(object); !put.ok()) return put;
      }
      planned.desired.set_uid(instance->metadata().uid());
      if (!held_at_source) outcome->placed.emplace_back(name, device_name);
      // The composition, stored once per distinct input (migrated instances have one already);
      // a fleet shares few compositions: each is looked up once per replan, not per device.
      if (planned.composition != nullptr &&
          stored_compositions.insert(planned.composition->metadata().name()).second) {
        const std::string& composition_name = planned.composition->metadata().name();
        absl::StatusOr<std::optional<v1::Object>> composition =
            tx.get_object(v1::OBJECT_KIND_COMPOSITION, composition_name);
        if (!composition.ok()) return composition.status();
        if (!composition->has_value()) {
          v1::Object stored;
          *stored.mutable_composition() = *planned.composition;
          v1::ObjectMeta* meta = stored.mutable_composition()->mutable_metadata();
          meta->set_uid(new_uid());
          meta->set_generation(1);
          *meta->mutable_create_time() = time::to_proto(now);
          *meta->mutable_update_time() = time::to_proto(now);
          if (absl::Status put = tx.put_object(stored); !put.ok()) return put;
        }
      }
      *desired.add_instances() = planned.desired;
    }
    absl::StatusOr<std::optional<v1::DesiredState>> previous = tx.get_desired_state(device_name);
    if (!previous.ok()) return previous.status();
    if (previous->has_value() && desired_content(**previous) == desired_content(desired)) continue;
    if (!previous->has_value() && desired.instances().empty()) continue;
    absl::StatusOr<uint64_t> version = tx.next_counter("desired-state-version");
    if (!version.ok()) return version.status();
    desired.set_version(*version);
    *desired.mutable_generate_time() = time::to_proto(now);
    if (absl::Status put = tx.put_desired_state(device_name, desired); !put.ok()) return put;
    v1::Object device_object;
    *device_object.mutable_device() = device;
    device_object.mutable_device()->mutable_status()->set_desired_state_version(*version);
    device_object.mutable_device()->mutable_status()->set_instance_count(desired.instances_size());
    if (absl::Status put = tx.put_object(device_object); !put.ok()) return put;
    outcome->to_send.emplace_back(device_name, std::move(desired));
  }
  // Instances no plan produced any more: of devices in scope, or of devices that are gone.
  for (const auto& [name, instance] : existing) {
    const std::string& device = instance.spec().device();
    const bool in_scope = only.empty() || only.contains(device);
    if (!in_scope || planned_names.contains(name)) continue;
    if (absl::Status removed = tx.delete_object(v1::OBJECT_KIND_INSTANCE, name); !removed.ok()) {
      return removed;
    }
    outcome->removed.push_back(name);
    if (!view->devices.contains(device)) {
      if (absl::Status removed = tx.delete_desired_state(device);
          !removed.ok() && !absl::IsNotFound(removed)) {
        return removed;
      }
    }
  }
  return absl::OkStatus();
}

void Controller::finish(ReplanOutcome& outcome) {
  reported_.replace(outcome.removed, outcome.placed, absl::Now());
  reader_.set_plan_errors(outcome.plan_errors);
  if (outcome.to_send.empty()) return;
  absl::MutexLock lock(&outbox_mutex_);
  for (auto& [device, state] : outcome.to_send) {
    outbox_.emplace_back(device, std::make_shared<const v1::DesiredState>(std::move(state)));
  }
  outbox_queued_ += outcome.to_send.size();
}

void Controller::send_queued_desired_states() {
  while (true) {
    std::deque<std::pair<std::string, std::shared_ptr<const v1::DesiredState>>> batch;
    {
      absl::MutexLock lock(&outbox_mutex_);
      outbox_mutex_.Await(absl::Condition(
          +[](Controller* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->outbox_mutex_) {
            return !self->outbox_.empty() || self->outbox_stopping_;
          },
          this));
      if (outbox_.empty()) return;  // stopping, and nothing left
      batch.swap(outbox_);
    }
    for (auto& [device, state] : batch) send_desired_state(device, std::move(state));
    absl::MutexLock lock(&outbox_mutex_);
    outbox_sent_ += batch.size();
  }
}

void Controller::wait_for_sends() {
  absl::MutexLock lock(&outbox_mutex_);
  struct Sent {
    Controller* self;
    uint64_t target;
  } wait{this, outbox_queued_};
  outbox_mutex_.Await(absl::Condition(
      +[](Sent* sent)
           ABSL_NO_THREAD_SAFETY_ANALYSIS { return sent->self->outbox_sent_ >= sent->target; },
      &wait));
}

absl::Status Controller::replan_and_send(const std::set<std::string>& devices) {
  absl::MutexLock lock(&write_mutex_);
  ReplanOutcome outcome;
  absl::Status status = store_->transact([&](StoreTransaction& tx) {
    outcome = ReplanOutcome();
    return replan(tx, devices, &outcome);
  });
  if (!status.ok()) return status;
  finish(outcome);
  return absl::OkStatus();
}

void Controller::send_desired_state(const std::string& device,
                                    std::shared_ptr<const v1::DesiredState> state) {
  if (!sessions_.send_desired_state(device, state)) return;
  ++desired_states_sent_;
  for (v1::ConsoleSubscription& subscription : reported_.console_subscriptions(*state)) {
    v1::ControllerMessage message;
    *message.mutable_console_subscription() = std::move(subscription);
    sessions_.send(device, std::move(message));
  }
}

// ---- Housekeeping -------------------------------------------------------------------------------

void Controller::ping_all() {
  for (const std::string& device :
       sessions_.ping_all(absl::Now(), kSilentPings * config_.ping_interval)) {
    device_disconnected(device);
  }
}

absl::Status Controller::flush_reported_state() {
  std::vector<std::pair<std::string, DeviceConnection>> devices = sessions_.take_changed();
  std::vector<std::pair<std::string, v1::InstanceStatus>> instances = reported_.take_changed();
  if (devices.empty() && instances.empty()) return absl::OkStatus();
  absl::Status status = store_->transact([&](StoreTransaction& tx) -> absl::Status {
    for (const auto& [name, connection] : devices) {
      absl::StatusOr<std::optional<v1::Object>> object =
          tx.get_object(v1::OBJECT_KIND_DEVICE, name);
      if (!object.ok()) return object.status();
      if (!object->has_value()) continue;
      v1::DeviceStatus* status = (**object).mutable_device()->mutable_status();
      if (connection.last_seen != absl::InfinitePast()) {
        *status->mutable_last_seen() = time::to_proto(connection.last_seen);
      }
      status->set_acknowledged_desired_state_version(connection.acknowledged_version);
      if (absl::Status put = tx.put_object(**object); !put.ok()) return put;
    }
    for (const auto& [name, reported] : instances) {
      absl::StatusOr<std::optional<v1::Object>> object =
          tx.get_object(v1::OBJECT_KIND_INSTANCE, name);
      if (!object.ok()) return object.status();
      if (!object->has_value()) continue;
      *(**object).mutable_instance()->mutable_status() = reported;
      if (absl::Status put = tx.put_object(**object); !put.ok()) return put;
    }
    return absl::OkStatus();
  });
  if (!status.ok()) {  // written with the next flush
    sessions_.mark_changed(devices);
    reported_.mark_changed(instances);
  }
  return status;
}

ControllerSnapshot Controller::snapshot() const {
  ControllerSnapshot snapshot = reader_.snapshot();
  snapshot.image_transfers = image_transfers_.load();
  snapshot.image_bytes_sent = image_bytes_sent_.load();
  snapshot.desired_states_sent = desired_states_sent_.load();
  snapshot.composer_cache_hits = composer_->cache_hits();
  snapshot.composer_cache_misses = composer_->cache_misses();
  return snapshot;
}

}  // namespace tenon::controller
