// See controller.h. This file: Diff, what Apply would do, changing nothing: the fields that
// differ per object and the effects on every device's desired state.
#include "absl/strings/str_cat.h"
#include "controller.h"
#include "google/protobuf/util/message_differencer.h"
#include "object_diff.h"
#include "object_meta.h"
#include "validate.h"

namespace tenon::controller {

namespace v1 = tenon::v1;

namespace {

bool same_message(const google::protobuf::Message& a, const google::protobuf::Message& b) {
  return google::protobuf::util::MessageDifferencer::Equals(a, b);
}

}  // namespace

absl::StatusOr<v1::DiffResponse> Controller::diff(const v1::DiffRequest& request) {
  for (const v1::Object& object : request.objects()) {
    if (absl::Status valid = check_object(object); !valid.ok()) return valid;
    if (absl::Status acted = check_acted_on(object); !acted.ok()) return acted;
  }
  v1::DiffResponse response;
  absl::Status status = store_->transact([&](StoreTransaction& tx) -> absl::Status {
    response.Clear();
    absl::StatusOr<FleetView> before = load_view(tx, {});
    if (!before.ok()) return before.status();
    FleetView after = *before;
    std::map<std::string, int> deployment_diff;  // deployment -> index into diffs
    for (const v1::Object& input : request.objects()) {
      const v1::ObjectKind kind = object_kind(input);
      const std::string& name = object_meta(input).name();
      v1::ObjectDiff* entry = response.add_diffs();
      entry->set_kind(kind);
      entry->set_name(name);
      absl::StatusOr<std::optional<v1::Object>> stored = tx.get_object(kind, name);
      if (!stored.ok()) return stored.status();
      if (!stored->has_value()) {
        entry->set_action(v1::CHANGE_ACTION_CREATE);
        append_changes(nlohmann::json::object(), owned_json(input), entry);
      } else {
        const nlohmann::json old_json = owned_json(**stored);
        const nlohmann::json new_json = owned_json(input);
        entry->set_action(old_json == new_json ? v1::CHANGE_ACTION_UNCHANGED
                                               : v1::CHANGE_ACTION_UPDATE);
        append_changes(old_json, new_json, entry);
      }
      switch (kind) {
        case v1::OBJECT_KIND_DEVICE: {
          v1::Device device = input.device();
          if (stored->has_value()) *device.mutable_status() = (**stored).device().status();
          after.devices[name] = device;
          break;
        }
        case v1::OBJECT_KIND_APP:
          after.apps[name] = input.app();
          break;
        case v1::OBJECT_KIND_DEPLOYMENT:
          after.deployments[name] = input.deployment();
          deployment_diff[name] = response.diffs_size() - 1;
          break;
        default:
          return absl::InvalidArgumentError(
              absl::StrCat(kind_name(kind), " ", name, ": only Device, App and Deployment"));
      }
    }
    for (const auto& [name, deployment] : after.deployments) {
      if (!after.apps.contains(deployment.spec().app())) {
        return absl::NotFoundError(absl::StrCat("Deployment ", name, ": spec.app: App ",
                                                deployment.spec().app(), " does not exist"));
      }
    }
    // Effects: what each device would run afterwards, against what it is told to run now.
    const std::vector<MigrationInProgress> migrations = migrations_.in_progress();
    const PlannerInputs inputs = planner_inputs(after, migrations);
    for (const auto& [device_name, device] : after.devices) {
      DevicePlan plan = plan_device(inputs, device, nullptr, nullptr);
      for (const auto& [deployment, error] : plan.errors) {
        if (deployment_diff.contains(deployment)) {
          return absl::FailedPreconditionError(absl::StrCat(
              "Deployment ", deployment, " cannot run on device ", device_name, ": ", error));
        }
      }
      absl::StatusOr<std::optional<v1::DesiredState>> current = tx.get_desired_state(device_name);
      if (!current.ok()) return current.status();
      std::map<std::string, v1::DesiredInstance> now;
      if (current->has_value()) {
        for (const v1::DesiredInstance& instance : (*current)->instances()) {
          now[instance.name()] = instance;
        }
      }
      auto effect = [&](const std::string& deployment, std::string line) {
        auto found = deployment_diff.find(deployment);
        const int index = found != deployment_diff.end() ? found->second : 0;
        if (response.diffs_size() > 0) response.mutable_diffs(index)->add_effects(std::move(line));
      };
      for (const PlannedInstance& planned : plan.instances) {
        auto found = now.find(planned.desired.name());
        if (found == now.end()) {
          effect(planned.desired.deployment(),
                 absl::StrCat(device_name, ": create instance ", planned.desired.name(), ", image ",
                              planned.desired.image_digest()));
        } else if (found->second.image_digest() != planned.desired.image_digest() ||
                   !same_message(found->second.placement(), planned.desired.placement()) ||
                   !same_message(found->second.runtime(), planned.desired.runtime())) {
          effect(
              planned.desired.deployment(),
              absl::StrCat(device_name, ": replace instance ", planned.desired.name(), ", image ",
                           found->second.image_digest(), " -> ", planned.desired.image_digest()));
        }
        if (found != now.end()) now.erase(found);
      }
      for (const auto& [name, instance] : now) {
        effect(instance.deployment(), absl::StrCat(device_name, ": remove instance ", name));
      }
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return response;
}

}  // namespace tenon::controller
