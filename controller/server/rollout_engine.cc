// The rollout engine's side of the Controller: revisions made by Apply, the revision plan each
// replan follows, and advance_rollouts, which moves staged rollouts on from what devices report.
// Its rules are rollout.h's pure functions; its state is the deployments' stored status.
#include "absl/strings/str_cat.h"
#include "controller.h"
#include "object_meta.h"
#include "rollout.h"

namespace tenon::controller {

namespace v1 = tenon::v1;

absl::Status Controller::start_revisions(StoreTransaction& tx, FleetView& view,
                                         const std::set<std::string>& changed, absl::Time now) {
  for (const std::string& name : changed) {
    auto deployment = view.deployments.find(name);
    if (deployment == view.deployments.end()) continue;
    auto app = view.apps.find(deployment->second.spec().app());
    if (app == view.apps.end()) continue;  // refused by Apply before this
    size_t matched = 0;
    for (const auto& [device_name, device] : view.devices) {
      if (is_enrolled(device) && !device.spec().cordoned() &&
          selector_matches(deployment->second.spec().selector(), device.metadata().labels())) {
        ++matched;
      }
    }
    v1::DeploymentStatus* status = deployment->second.mutable_status();
    if (!start_revision(deployment->second.spec(), app->second.spec(), matched, now, status)) {
      continue;
    }
    v1::Object object;
    *object.mutable_deployment() = deployment->second;
    if (absl::Status put = tx.put_object(object); !put.ok()) return put;
  }
  return absl::OkStatus();
}

std::shared_ptr<const std::set<std::string>> Controller::admitted_devices(
    const std::string& name, const v1::Deployment& deployment, const FleetView* whole_view,
    bool refresh) {
  const v1::DeploymentStatus& status = deployment.status();
  auto memo = admissions_.find(name);
  if (!refresh && memo != admissions_.end() && memo->second.uid == deployment.metadata().uid() &&
      memo->second.revision == status.revision() && memo->second.wave == status.wave() &&
      memo->second.waves == status.waves()) {
    return memo->second.devices;
  }
  // The selected, enrolled devices: from the view when it holds every device, else from the
  // object cache (a replan of a few devices must not read the whole fleet from the store).
  std::vector<CachedObject> cached;
  std::vector<std::pair<std::string, const google::protobuf::Map<std::string, std::string>*>>
      selected;
  // Cordoned devices are skipped: they keep what they run (DeviceSpec.cordoned).
  auto consider = [&](const v1::Device& device) {
    if (is_enrolled(device) && !device.spec().cordoned() &&
        selector_matches(deployment.spec().selector(), device.metadata().labels())) {
      selected.emplace_back(device.metadata().name(), &device.metadata().labels());
    }
  };
  if (whole_view != nullptr) {
    for (const auto& [device_name, device] : whole_view->devices) consider(device);
  } else {
    cached = cache_.all(v1::OBJECT_KIND_DEVICE);
    for (const CachedObject& object : cached) consider(object->device());
  }
  std::vector<std::string> order = wave_order(name, selected);
  order.resize(admitted_count(status.wave(), status.waves(), order.size()));
  Admission& admission = admissions_[name];
  admission.uid = deployment.metadata().uid();
  admission.revision = status.revision();
  admission.wave = status.wave();
  admission.waves = status.waves();
  admission.devices = std::make_shared<const std::set<std::string>>(order.begin(), order.end());
  return admission.devices;
}

std::map<std::string, RevisionPlan> Controller::revision_plans(const FleetView& view,
                                                               bool view_is_whole) {
  std::map<std::string, RevisionPlan> plans;
  for (const auto& [name, deployment] : view.deployments) {
    const v1::DeploymentStatus& status = deployment.status();
    if (status.revision() == 0) continue;  // made before revisions were kept: the stored spec
    const v1::DeploymentRevision* revision = find_revision(status, status.revision());
    RevisionPlan& plan = plans[name];
    if (revision == nullptr) {
      // Its record is gone (it should never be): change nothing anywhere rather than guess;
      // only a device that runs none gets the stored spec.
      plan.spec = deployment.spec();
      if (auto app = view.apps.find(deployment.spec().app()); app != view.apps.end()) {
        plan.app = app->second.spec();
      }
      plan.admitted = std::make_shared<const std::set<std::string>>();
      continue;
    }
    plan.revision = revision->number();
    plan.spec = revision->spec();
    plan.app = revision->app();
    if (rollout_restricts_devices(status)) {
      plan.admitted = admitted_devices(name, deployment, view_is_whole ? &view : nullptr);
    }
  }
  return plans;
}

absl::StatusOr<v1::Deployment> Controller::control_rollout(
    const v1::ControlRolloutRequest& request) {
  if (request.deployment().empty()) return absl::InvalidArgumentError("deployment: required");
  {
    absl::MutexLock lock(&write_mutex_);
    ReplanOutcome outcome;
    const absl::Time now = absl::Now();
    absl::Status written = store_->transact([&](StoreTransaction& tx) -> absl::Status {
      outcome = ReplanOutcome();
      absl::StatusOr<std::optional<v1::Object>> current =
          tx.get_object(v1::OBJECT_KIND_DEPLOYMENT, request.deployment());
      if (!current.ok()) return current.status();
      if (!current->has_value()) {
        return absl::NotFoundError(absl::StrCat("Deployment ", request.deployment(), " not found"));
      }
      v1::DeploymentStatus* status = (*current)->mutable_deployment()->mutable_status();
      if (absl::Status acted = apply_control(request, now, status); !acted.ok()) {
        return absl::Status(
            acted.code(), absl::StrCat("Deployment ", request.deployment(), ": ", acted.message()));
      }
      if (absl::Status put = tx.put_object(**current); !put.ok()) return put;
      // Pause and resume change which waves start next, not what any device runs now.
      const bool moves_devices = request.action() == v1::ControlRolloutRequest::ACTION_ABORT ||
                                 request.action() == v1::ControlRolloutRequest::ACTION_UNDO;
      return moves_devices ? replan(tx, {}, &outcome) : absl::OkStatus();
    });
    if (!written.ok()) return written;
    finish(outcome);
  }
  v1::GetRequest get;
  get.set_kind(v1::OBJECT_KIND_DEPLOYMENT);
  get.set_name(request.deployment());
  absl::StatusOr<v1::Object> object = reader_.get(get);
  if (!object.ok()) return object.status();
  return object->deployment();
}

absl::Status Controller::advance_rollouts(absl::Time now) {
  absl::MutexLock lock(&write_mutex_);
  for (const CachedObject& object : cache_.all(v1::OBJECT_KIND_DEPLOYMENT)) {
    const v1::Deployment& deployment = object->deployment();
    const v1::DeploymentStatus& status = deployment.status();
    // A paused rollout starts no wave, but its gate still watches the devices it reached.
    const bool paused = status.phase() == v1::ROLLOUT_PHASE_PAUSED;
    if ((status.phase() != v1::ROLLOUT_PHASE_PROGRESSING && !paused) || status.wave() == 0) {
      continue;
    }
    const std::string& name = deployment.metadata().name();
    std::vector<WaveMember> members;
    // Afresh each time: devices deleted or relabelled since the wave started drop out.
    for (const std::string& device : *admitted_devices(name, deployment, nullptr, true)) {
      WaveMember& member = members.emplace_back();
      member.device = device;
      const std::string instance_name_here = instance_name(name, device);
      CachedObject stored = cache_.get(v1::OBJECT_KIND_INSTANCE, instance_name_here);
      if (stored == nullptr) continue;
      v1::Instance instance = stored->instance();
      reported_.overlay(&instance);
      const v1::InstanceStatus& reported = instance.status();
      member.on_revision = instance.spec().revision() == status.revision();
      // About this very instance: a report of the one it replaced under the same name names
      // another uid.
      const bool about_it =
          reported_.reported_uid(instance_name_here) == instance.metadata().uid() &&
          reported.image_digest() == instance.spec().image_digest();
      member.running = about_it && sessions_.connected(device) &&
                       reported.observed_state() == v1::INSTANCE_STATE_RUNNING;
      member.failed = about_it && (reported.observed_state() == v1::INSTANCE_STATE_FAULTED ||
                                   reported.observed_state() == v1::INSTANCE_STATE_CRASHED);
      if (about_it) {
        for (const v1::TaskLatency& task : reported.latency().tasks()) {
          member.jobs += task.jobs();
          member.deadline_misses += task.deadline_misses();
        }
      }
    }
    RolloutDecision decision = decide_rollout(deployment.spec().rollout(), status, now, members);
    if (paused && decision.kind != RolloutDecision::Kind::kHalt &&
        decision.kind != RolloutDecision::Kind::kRollBack) {
      continue;  // paused: only a failed gate acts
    }
    if (decision.kind == RolloutDecision::Kind::kWait && decision.message == status.message()) {
      continue;
    }
    ReplanOutcome outcome;
    absl::Status written = store_->transact([&](StoreTransaction& tx) -> absl::Status {
      outcome = ReplanOutcome();
      absl::StatusOr<std::optional<v1::Object>> current =
          tx.get_object(v1::OBJECT_KIND_DEPLOYMENT, name);
      if (!current.ok()) return current.status();
      if (!current->has_value()) return absl::OkStatus();  // deleted meanwhile
      v1::DeploymentStatus* stored = (*current)->mutable_deployment()->mutable_status();
      if (stored->revision() != status.revision() || stored->wave() != status.wave() ||
          stored->phase() != status.phase()) {
        return absl::OkStatus();  // changed meanwhile: decided again on the next call
      }
      apply_decision(decision, now, stored);
      if (absl::Status put = tx.put_object(**current); !put.ok()) return put;
      if (decision.kind == RolloutDecision::Kind::kWait) return absl::OkStatus();
      return replan(tx, {}, &outcome);
    });
    if (!written.ok()) {
      return absl::Status(written.code(),
                          absl::StrCat("rollout of deployment ", name, ": ", written.message()));
    }
    finish(outcome);
  }
  return absl::OkStatus();
}

}  // namespace tenon::controller
