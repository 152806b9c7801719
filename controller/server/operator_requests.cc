// See controller.h. This file: the operator requests that change the fleet or compute from it
// (Apply, Delete, Compose, bootstrap tokens, Migrate). Diff is in operator_diff.cc.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "controller.h"
#include "crypto/sha256.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "migration_policy.h"
#include "object_diff.h"
#include "object_meta.h"
#include "random_ids.h"
#include "request_limits.h"
#include "time/proto_time.h"
#include "validate.h"

namespace tenon::controller {

namespace v1 = tenon::v1;

absl::StatusOr<v1::ApplyResponse> Controller::apply(const v1::ApplyRequest& request) {
  std::set<std::pair<int, std::string>> seen;
  for (const v1::Object& object : request.objects()) {
    if (absl::Status valid = check_object(object); !valid.ok()) return valid;
    if (absl::Status acted = check_acted_on(object); !acted.ok()) return acted;
    const v1::ObjectKind kind = object_kind(object);
    if (kind != v1::OBJECT_KIND_DEVICE && kind != v1::OBJECT_KIND_APP &&
        kind != v1::OBJECT_KIND_DEPLOYMENT) {
      return absl::InvalidArgumentError(absl::StrCat(
          kind_name(kind), " ", object_meta(object).name(),
          ": only Device, App and Deployment can be applied; instances and compositions are "
          "derived from them"));
    }
    if (!seen.emplace(kind, object_meta(object).name()).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          kind_name(kind), " ", object_meta(object).name(), ": appears twice in one request"));
    }
  }
  absl::MutexLock lock(&write_mutex_);
  v1::ApplyResponse response;
  ReplanOutcome outcome;
  absl::Status status = store_->transact([&](StoreTransaction& tx) -> absl::Status {
    response.Clear();
    outcome = ReplanOutcome();
    absl::StatusOr<FleetView> view = load_view(tx, {});
    if (!view.ok()) return view.status();
    const absl::Time now = absl::Now();
    std::set<std::string> touched_apps;
    std::set<std::string> touched_deployments;
    std::vector<v1::Object> to_store;
    for (const v1::Object& input : request.objects()) {
      const v1::ObjectKind kind = object_kind(input);
      const std::string& name = object_meta(input).name();
      absl::StatusOr<std::optional<v1::Object>> stored = tx.get_object(kind, name);
      if (!stored.ok()) return stored.status();
      const uint64_t expected = object_meta(input).generation();
      if (expected != 0 &&
          (!stored->has_value() || object_meta(**stored).generation() != expected)) {
        return absl::AbortedError(absl::StrCat(
            kind_name(kind), " ", name, ": metadata.generation ", expected,
            " is not the stored one (",
            stored->has_value() ? absl::StrCat(object_meta(**stored).generation()) : "none",
            "); re-read and retry"));
      }
      v1::Object result = input;
      v1::ObjectMeta* meta = mutable_object_meta(&result);
      v1::ChangeAction action = v1::CHANGE_ACTION_CREATE;
      if (stored->has_value()) {
        const v1::Object& old = **stored;
        action = owned_json(old) == owned_json(input) ? v1::CHANGE_ACTION_UNCHANGED
                                                      : v1::CHANGE_ACTION_UPDATE;
        const v1::ObjectMeta& old_meta = object_meta(old);
        meta->set_uid(old_meta.uid());
        *meta->mutable_create_time() = old_meta.create_time();
        meta->set_generation(old_meta.generation() + (action == v1::CHANGE_ACTION_UPDATE ? 1 : 0));
        *meta->mutable_update_time() =
            action == v1::CHANGE_ACTION_UPDATE ? time::to_proto(now) : old_meta.update_time();
        if (kind == v1::OBJECT_KIND_DEVICE) {
          *result.mutable_device()->mutable_status() = old.device().status();
        }
        if (kind == v1::OBJECT_KIND_DEPLOYMENT) {
          *result.mutable_deployment()->mutable_status() = old.deployment().status();
        }
      } else {
        meta->set_uid(new_uid());
        meta->set_generation(1);
        *meta->mutable_create_time() = time::to_proto(now);
        *meta->mutable_update_time() = time::to_proto(now);
        if (kind == v1::OBJECT_KIND_DEVICE) {
          result.mutable_device()->clear_status();
          result.mutable_device()->mutable_status()->set_connection_state(
              v1::CONNECTION_STATE_NOT_ENROLLED);
        }
        if (kind == v1::OBJECT_KIND_DEPLOYMENT) result.mutable_deployment()->clear_status();
      }
      switch (kind) {
        case v1::OBJECT_KIND_DEVICE:
          view->devices[name] = result.device();
          break;
        case v1::OBJECT_KIND_APP:
          view->apps[name] = result.app();
          touched_apps.insert(name);
          break;
        default:
          view->deployments[name] = result.deployment();
          touched_deployments.insert(name);
          break;
      }
      v1::ApplyResult* entry = response.add_results();
      *entry->mutable_object() = result;
      entry->set_action(action);
      if (action != v1::CHANGE_ACTION_UNCHANGED) to_store.push_back(std::move(result));
    }
    for (const auto& [name, deployment] : view->deployments) {
      if (touched_apps.contains(deployment.spec().app())) touched_deployments.insert(name);
    }
    for (const std::string& name : touched_deployments) {
      const v1::Deployment& deployment = view->deployments[name];
      if (!view->apps.contains(deployment.spec().app())) {
        return absl::NotFoundError(absl::StrCat("Deployment ", name, ": spec.app: App ",
                                                deployment.spec().app(),
                                                " exists neither in the store nor in the request"));
      }
    }
    if (request.dry_run()) {
      // Compose every touched deployment for every device it selects, storing nothing.
      const std::vector<MigrationInProgress> migrations = migrations_.in_progress();
      const PlannerInputs inputs = planner_inputs(*view, migrations);
      for (const auto& [device_name, device] : view->devices) {
        DevicePlan plan = plan_device(inputs, device, nullptr, nullptr);
        if (absl::Status placed = check_placed(device_name, plan, touched_deployments);
            !placed.ok()) {
          return placed;
        }
      }
      return absl::OkStatus();
    }
    std::set<std::string> changed_deployments;
    std::set<std::string> changed_apps;
    for (const v1::Object& object : to_store) {
      if (absl::Status put = tx.put_object(object); !put.ok()) return put;
      if (object.has_deployment())
        changed_deployments.insert(object.deployment().metadata().name());
      if (object.has_app()) changed_apps.insert(object.app().metadata().name());
    }
    // A changed deployment, or one whose app changed, gets a new revision (when what reaches its
    // instances changed) and its rollout starts.
    std::set<std::string> revised = changed_deployments;
    for (const auto& [name, deployment] : view->deployments) {
      if (changed_apps.contains(deployment.spec().app())) revised.insert(name);
    }
    if (absl::Status started = start_revisions(tx, *view, revised, now); !started.ok()) {
      return started;
    }
    // A changed deployment places its instances afresh: instances that migrated away from the
    // device they are named after go back to where the selector puts them.
    if (!changed_deployments.empty()) {
      absl::StatusOr<std::vector<v1::Object>> instances = tx.list_objects(v1::OBJECT_KIND_INSTANCE);
      if (!instances.ok()) return instances.status();
      for (const v1::Object& object : *instances) {
        const v1::InstanceSpec& spec = object.instance().spec();
        if (changed_deployments.contains(spec.deployment()) &&
            object.instance().metadata().name() !=
                instance_name(spec.deployment(), spec.device()) &&
            !migrations_.migrating(object.instance().metadata().name())) {
          if (absl::Status removed =
                  tx.delete_object(v1::OBJECT_KIND_INSTANCE, object.instance().metadata().name());
              !removed.ok()) {
            return removed;
          }
        }
      }
    }
    // Planned once: a touched deployment that cannot run on a device it selects refuses the
    // whole request, and the transaction rolls back.
    return replan(tx, {}, &outcome, &touched_deployments);
  });
  if (!status.ok()) return status;
  finish(outcome);
  return response;
}

absl::Status Controller::check_acted_on(const v1::AppSpec& app, const std::string& where) {
  for (int i = 0; i < app.tasks_size(); ++i) {
    const v1::Criticality criticality = app.tasks(i).criticality();
    if (criticality == v1::CRITICALITY_SOFT || criticality == v1::CRITICALITY_BEST_EFFORT) {
      return absl::UnimplementedError(absl::StrCat(
          where, ".tasks[", i, "].criticality: ", v1::Criticality_Name(criticality),
          " is not acted on yet (the schedulability analysis treats every task as HARD); "
          "leave it unset or HARD"));
    }
  }
  return absl::OkStatus();
}

absl::Status Controller::check_acted_on(const v1::Object& object) {
  if (object.has_app()) {
    return check_acted_on(object.app().spec(),
                          absl::StrCat("App ", object.app().metadata().name(), ": spec"));
  }
  if (!object.has_deployment()) return absl::OkStatus();
  const v1::DeploymentSpec& spec = object.deployment().spec();
  const std::string where = absl::StrCat("Deployment ", object.deployment().metadata().name());
  if (spec.composition_policy() == v1::COMPOSITION_POLICY_MINIMISE_LATENCY) {
    return absl::UnimplementedError(
        absl::StrCat(where,
                     ": spec.composition_policy: MINIMISE_LATENCY is not acted on yet; the "
                     "composition engine minimises footprint (leave it unset)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::DeleteResponse> Controller::remove(const v1::DeleteRequest& request) {
  if (request.kind() == v1::OBJECT_KIND_INSTANCE || request.kind() == v1::OBJECT_KIND_COMPOSITION) {
    return absl::InvalidArgumentError(absl::StrCat(
        kind_name(request.kind()),
        "s are derived and cannot be deleted; delete or change the Deployment instead"));
  }
  if (request.kind() == v1::OBJECT_KIND_UNSPECIFIED || request.name().empty()) {
    return absl::InvalidArgumentError("Delete needs a kind and a name");
  }
  absl::MutexLock lock(&write_mutex_);
  v1::DeleteResponse response;
  ReplanOutcome outcome;
  absl::Status status = store_->transact([&](StoreTransaction& tx) -> absl::Status {
    outcome = ReplanOutcome();
    absl::StatusOr<std::optional<v1::Object>> object =
        tx.get_object(request.kind(), request.name());
    if (!object.ok()) return object.status();
    if (!object->has_value()) {
      return absl::NotFoundError(
          absl::StrCat(kind_name(request.kind()), " ", request.name(), " not found"));
    }
    const v1::ObjectMeta& meta = object_meta(**object);
    if (request.expected_generation() != 0 && meta.generation() != request.expected_generation()) {
      return absl::AbortedError(absl::StrCat(kind_name(request.kind()), " ", request.name(),
                                             ": generation is ", meta.generation(), ", not ",
                                             request.expected_generation()));
    }
    if (request.kind() == v1::OBJECT_KIND_APP) {
      absl::StatusOr<std::vector<v1::Object>> deployments =
          tx.list_objects(v1::OBJECT_KIND_DEPLOYMENT);
      if (!deployments.ok()) return deployments.status();
      for (const v1::Object& deployment : *deployments) {
        if (deployment.deployment().spec().app() == request.name()) {
          return absl::FailedPreconditionError(
              absl::StrCat("App ", request.name(), " is used by Deployment ",
                           deployment.deployment().metadata().name()));
        }
      }
    }
    if (request.kind() == v1::OBJECT_KIND_DEVICE) {
      absl::StatusOr<std::optional<v1::DesiredState>> desired =
          tx.get_desired_state(request.name());
      if (!desired.ok()) return desired.status();
      if (desired->has_value() && (*desired)->instances_size() > 0 && !request.force()) {
        return absl::FailedPreconditionError(
            absl::StrCat("Device ", request.name(), " still runs ", (*desired)->instances_size(),
                         " instance(s); delete their deployments or pass force"));
      }
      if (absl::Status removed = tx.delete_device_credential(request.name());
          !removed.ok() && !absl::IsNotFound(removed)) {
        return removed;
      }
    }
    if (absl::Status removed = tx.delete_object(request.kind(), request.name()); !removed.ok()) {
      return removed;
    }
    *response.mutable_object() = **object;
    return replan(tx, {}, &outcome);
  });
  if (!status.ok()) return status;
  finish(outcome);
  if (request.kind() == v1::OBJECT_KIND_DEVICE) {
    sessions_.close(request.name(),
                    absl::PermissionDeniedError(absl::StrCat(
                        "device ", request.name(), " was deleted; its credential is revoked")),
                    SessionHub::Ending::kForget);
  }
  return response;
}

absl::StatusOr<v1::ComposeResponse> Controller::compose(const v1::ComposeRequest& request) {
  std::string app_name;
  v1::AppSpec app;
  v1::DeviceProfile profile;
  absl::Status status = store_->transact([&](StoreTransaction& tx) -> absl::Status {
    switch (request.app_source_case()) {
      case v1::ComposeRequest::kApp: {
        absl::StatusOr<std::optional<v1::Object>> stored =
            tx.get_object(v1::OBJECT_KIND_APP, request.app());
        if (!stored.ok()) return stored.status();
        if (!stored->has_value()) return absl::NotFoundError("App " + request.app() + " not found");
        app_name = request.app();
        app = (**stored).app().spec();
        break;
      }
      case v1::ComposeRequest::kAppSpec:
        // Checked as Apply checks an App: a spec that comes inline is input like any other.
        if (std::optional<ValidationError> problem = validate_app_spec(request.app_spec())) {
          return absl::InvalidArgumentError(
              absl::StrCat("app_spec: ", problem->path, ": ", problem->message));
        }
        if (absl::Status acted = check_acted_on(request.app_spec(), "app_spec"); !acted.ok()) {
          return acted;
        }
        app = request.app_spec();
        break;
      default:
        return absl::InvalidArgumentError("Compose needs app or app_spec");
    }
    switch (request.target_case()) {
      case v1::ComposeRequest::kDevice: {
        absl::StatusOr<std::optional<v1::Object>> stored =
            tx.get_object(v1::OBJECT_KIND_DEVICE, request.device());
        if (!stored.ok()) return stored.status();
        if (!stored->has_value()) {
          return absl::NotFoundError("Device " + request.device() + " not found");
        }
        if (!(**stored).device().status().has_profile()) {
          return absl::FailedPreconditionError("Device " + request.device() +
                                               " has not reported its profile (not enrolled)");
        }
        profile = (**stored).device().status().profile();
        break;
      }
      case v1::ComposeRequest::kProfile:
        profile = request.profile();
        break;
      default:
        return absl::InvalidArgumentError("Compose needs device or profile");
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  absl::StatusOr<ComposedApp> composed =
      composer_->compose(app_name, app, profile, request.placement(), request.build_image());
  if (!composed.ok()) return composed.status();
  v1::ComposeResponse response;
  *response.mutable_composition() = *composed->composition;
  return response;
}

absl::StatusOr<v1::CreateBootstrapTokenResponse> Controller::create_bootstrap_token(
    const v1::CreateBootstrapTokenRequest& request) {
  absl::Duration ttl = absl::Hours(1);
  if (request.has_ttl()) {
    absl::StatusOr<absl::Duration> asked = time::from_proto(request.ttl(), "ttl");
    if (!asked.ok()) return asked.status();
    ttl = *asked;
    if (ttl < absl::Seconds(1) || ttl > kMaxBootstrapTokenTtl) {
      return absl::InvalidArgumentError(
          absl::StrCat("ttl must be between 1s and ", absl::FormatDuration(kMaxBootstrapTokenTtl),
                       " (", absl::ToInt64Hours(kMaxBootstrapTokenTtl) / 24, " days), got ",
                       request.ttl().seconds(), "s"));
    }
  }
  v1::Object probe;
  probe.mutable_device()->mutable_metadata()->set_name(
      request.device_name().empty() ? "probe" : request.device_name());
  *probe.mutable_device()->mutable_metadata()->mutable_labels() = request.labels();
  if (absl::Status valid = check_object(probe); !valid.ok()) return valid;
  const std::string secret = absl::StrCat("tenon-bootstrap-", random_hex(24));
  BootstrapTokenRecord record;
  record.token_hash = crypto::sha256_hex(secret);
  record.device_name = request.device_name();
  record.uses_left = request.max_uses() == 0 ? 1 : request.max_uses();
  const absl::Time expire = absl::Now() + ttl;
  record.expire_unix_seconds = absl::ToUnixSeconds(expire);
  for (const auto& [key, value] : request.labels()) record.labels[key] = value;
  absl::Status status = store_->transact([&](StoreTransaction& tx) -> absl::Status {
    if (!request.device_name().empty() && !request.labels().empty()) {
      // An existing device's labels are its Device object's; a token must not carry others.
      absl::StatusOr<std::optional<v1::Object>> existing =
          tx.get_object(v1::OBJECT_KIND_DEVICE, request.device_name());
      if (!existing.ok()) return existing.status();
      if (existing->has_value()) {
        return absl::FailedPreconditionError(
            absl::StrCat("Device ", request.device_name(),
                         " exists: its labels are set by applying it, not by a bootstrap token"));
      }
    }
    return tx.put_bootstrap_token(record);
  });
  if (!status.ok()) return status;
  v1::CreateBootstrapTokenResponse response;
  response.set_token(secret);
  *response.mutable_expire_time() = time::to_proto(expire);
  return response;
}

absl::Status Controller::check_migration_request(const v1::MigrateRequest& request,
                                                 std::string* source_device) {
  if (request.instance().empty() || request.target_device().empty()) {
    return absl::InvalidArgumentError("Migrate needs an instance and a target device");
  }
  v1::Instance instance;
  absl::Status checked = store_->transact([&](StoreTransaction& tx) -> absl::Status {
    absl::StatusOr<std::optional<v1::Object>> object =
        tx.get_object(v1::OBJECT_KIND_INSTANCE, request.instance());
    if (!object.ok()) return object.status();
    if (!object->has_value()) {
      return absl::NotFoundError(absl::StrCat("Instance ", request.instance(), " not found"));
    }
    instance = (**object).instance();
    absl::StatusOr<std::optional<v1::Object>> target =
        tx.get_object(v1::OBJECT_KIND_DEVICE, request.target_device());
    if (!target.ok()) return target.status();
    if (!target->has_value()) {
      return absl::NotFoundError(absl::StrCat("Device ", request.target_device(), " not found"));
    }
    if ((**target).device().spec().cordoned()) {
      return absl::FailedPreconditionError(
          absl::StrCat("Device ", request.target_device(), " is cordoned"));
    }
    const v1::DeviceProfile& target_profile = (**target).device().status().profile();
    absl::StatusOr<std::optional<v1::Object>> source =
        tx.get_object(v1::OBJECT_KIND_DEVICE, instance.spec().device());
    if (!source.ok()) return source.status();
    if (source->has_value()) {
      if (absl::Status allowed =
              check_migration(instance.spec().device(), (**source).device().status().profile(),
                              request.target_device(), target_profile);
          !allowed.ok()) {
        return allowed;
      }
    }
    if (std::find(target_profile.mortise_libraries().begin(),
                  target_profile.mortise_libraries().end(),
                  "snapshot") == target_profile.mortise_libraries().end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("Device ", request.target_device(), "'s Mortise has no snapshot library"));
    }
    absl::StatusOr<std::optional<v1::DesiredState>> desired =
        tx.get_desired_state(request.target_device());
    if (!desired.ok()) return desired.status();
    if (desired->has_value()) {
      for (const v1::DesiredInstance& other : (*desired)->instances()) {
        if (other.deployment() == instance.spec().deployment()) {
          return absl::AlreadyExistsError(absl::StrCat("Device ", request.target_device(),
                                                       " already runs ", other.name(), " of ",
                                                       other.deployment()));
        }
      }
    }
    return absl::OkStatus();
  });
  if (!checked.ok()) return checked;
  const std::string source = instance.spec().device();
  const std::string target = request.target_device();
  if (source == target) {
    return absl::InvalidArgumentError(absl::StrCat("the instance already runs on ", target));
  }
  if (migrations_.migrating(request.instance())) {
    return absl::AbortedError("another migration of this instance is under way");
  }
  std::optional<v1::InstanceStatus> reported = reported_.status(request.instance());
  const v1::InstanceState state =
      reported.has_value() ? reported->observed_state() : v1::INSTANCE_STATE_UNKNOWN;
  const auto connected = [&](const std::string& device) { return sessions_.connected(device); };
  if (!connected(source) || !connected(target)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "both devices must be connected: ", source, connected(source) ? " is" : " is not", ", ",
        target, connected(target) ? " is" : " is not"));
  }
  if (state != v1::INSTANCE_STATE_RUNNING && state != v1::INSTANCE_STATE_PAUSED) {
    return absl::FailedPreconditionError(absl::StrCat("the instance is ",
                                                      v1::InstanceState_Name(state),
                                                      "; only RUNNING or PAUSED ones migrate"));
  }
  *source_device = source;
  return absl::OkStatus();
}

void Controller::migrate(const v1::MigrateRequest& request, absl::Duration step_limit,
                         MigrationOrchestrator::Done done) {
  std::string source;
  absl::Status checked = check_migration_request(request, &source);
  if (checked.ok()) {
    checked =
        migrations_.start(request.instance(), source, request.target_device(), step_limit, done);
  }
  if (!checked.ok()) done(checked);
}

}  // namespace tenon::controller
