// See planner.h.
#include "planner.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "crypto/sha256.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/message_differencer.h"

namespace tenon::controller {

namespace v1 = tenon::v1;

namespace {

bool same_message(const google::protobuf::Message& a, const google::protobuf::Message& b) {
  return google::protobuf::util::MessageDifferencer::Equals(a, b);
}

const MigrationInProgress* migration_of(const PlannerInputs& inputs, const std::string& instance) {
  for (const MigrationInProgress& migration : *inputs.migrations) {
    if (migration.instance == instance) return &migration;
  }
  return nullptr;
}

PlannedInstance planned_from_spec(const PlannerInputs& inputs, const v1::Instance& instance) {
  PlannedInstance planned;
  v1::DesiredInstance& desired = planned.desired;
  const v1::InstanceSpec& spec = instance.spec();
  desired.set_name(instance.metadata().name());
  desired.set_deployment(spec.deployment());
  desired.set_image_digest(spec.image_digest());
  desired.set_image_size_bytes(inputs.image_size(spec.image_digest()));
  *desired.mutable_placement() = spec.placement();
  desired.set_state(v1::DESIRED_INSTANCE_STATE_RUNNING);
  desired.set_restart_policy(spec.restart_policy());
  *desired.mutable_runtime() = spec.runtime();
  *desired.mutable_channels() = spec.channels();
  planned.spec = spec;
  return planned;
}

// Held paused at the source while it migrates away from `device`.
PlannedInstance held_at_source(const PlannerInputs& inputs, const v1::Instance& instance,
                               const std::string& device) {
  PlannedInstance held = planned_from_spec(inputs, instance);
  held.spec.set_device(device);
  held.desired.set_state(v1::DESIRED_INSTANCE_STATE_PAUSED);
  return held;
}

// The deployment composed for the device, or why it cannot run there.
absl::StatusOr<PlannedInstance> compose_for(const PlannerInputs& inputs,
                                            const std::string& deployment_name,
                                            const v1::Deployment& deployment,
                                            const v1::Device& device) {
  const FleetView& view = *inputs.view;
  const RevisionPlan* revision = nullptr;
  if (inputs.revisions != nullptr) {
    auto found = inputs.revisions->find(deployment_name);
    if (found != inputs.revisions->end()) revision = &found->second;
  }
  // The revision's spec and app when the rollout engine names one, else the stored ones.
  const v1::DeploymentSpec& deployment_spec =
      revision != nullptr ? revision->spec : deployment.spec();
  v1::AppSpec app_spec;
  if (revision != nullptr) {
    app_spec = revision->app;
  } else {
    auto app = view.apps.find(deployment_spec.app());
    if (app == view.apps.end()) {
      return absl::NotFoundError(absl::StrCat("app ", deployment_spec.app(), " does not exist"));
    }
    app_spec = app->second.spec();
  }
  // Declared channels need the ivc library in the image.
  if (deployment_spec.channels_size() > 0 &&
      std::find(app_spec.needs().begin(), app_spec.needs().end(), "ivc") ==
          app_spec.needs().end()) {
    app_spec.add_needs("ivc");
  }
  absl::StatusOr<ComposedApp> composed = inputs.compose(
      deployment_spec.app(), app_spec, device.status().profile(), deployment_spec.placement());
  if (!composed.ok()) return composed.status();
  const std::string& device_name = device.metadata().name();
  PlannedInstance planned;
  v1::DesiredInstance& desired = planned.desired;
  desired.set_name(instance_name(deployment_name, device_name));
  desired.set_deployment(deployment_name);
  desired.set_image_digest(composed->composition->image_digest());
  desired.set_image_size_bytes(composed->composition->image_size_bytes());
  *desired.mutable_placement() = deployment_spec.placement();
  desired.mutable_placement()->set_memory_bytes(composed->memory_bytes);
  desired.set_state(v1::DESIRED_INSTANCE_STATE_RUNNING);
  desired.set_restart_policy(deployment_spec.restart_policy() == v1::RESTART_POLICY_UNSPECIFIED
                                 ? v1::RESTART_POLICY_ON_FAILURE
                                 : deployment_spec.restart_policy());
  *desired.mutable_runtime() = deployment_spec.runtime();
  *desired.mutable_channels() = deployment_spec.channels();
  if (desired.runtime().stack_bytes() == 0) {
    desired.mutable_runtime()->set_stack_bytes(kBootStackBytes);
  }
  v1::InstanceSpec& spec = planned.spec;
  spec.set_deployment(deployment_name);
  spec.set_device(device_name);
  spec.set_app(deployment_spec.app());
  spec.set_composition(composed->composition->metadata().name());
  spec.set_image_digest(desired.image_digest());
  *spec.mutable_placement() = desired.placement();
  spec.set_desired_state(desired.state());
  spec.set_restart_policy(desired.restart_policy());
  spec.set_deployment_generation(deployment.metadata().generation());
  *spec.mutable_runtime() = desired.runtime();
  *spec.mutable_channels() = desired.channels();
  spec.set_revision(revision != nullptr ? revision->revision : 0);
  planned.composition = std::move(composed->composition);
  return planned;
}

}  // namespace

bool selector_matches(const v1::LabelSelector& selector,
                      const google::protobuf::Map<std::string, std::string>& labels) {
  if (selector.match_labels().empty() && selector.match_expressions().empty()) return false;
  for (const auto& [key, value] : selector.match_labels()) {
    auto found = labels.find(key);
    if (found == labels.end() || found->second != value) return false;
  }
  for (const v1::LabelExpression& expression : selector.match_expressions()) {
    auto found = labels.find(expression.key());
    const bool present = found != labels.end();
    const bool listed = present && std::find(expression.values().begin(), expression.values().end(),
                                             found->second) != expression.values().end();
    switch (expression.relation()) {
      case v1::LabelExpression::RELATION_IN:
        if (!listed) return false;
        break;
      case v1::LabelExpression::RELATION_NOT_IN:
        if (listed) return false;
        break;
      case v1::LabelExpression::RELATION_EXISTS:
        if (!present) return false;
        break;
      case v1::LabelExpression::RELATION_DOES_NOT_EXIST:
        if (present) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}

std::string instance_name(const std::string& deployment, const std::string& device) {
  return absl::StrCat(deployment, "-",
                      crypto::sha256_hex(absl::StrCat(deployment, "/", device)).substr(0, 12));
}

bool is_enrolled(const v1::Device& device) {
  return device.status().connection_state() != v1::CONNECTION_STATE_NOT_ENROLLED &&
         device.status().has_profile();
}

std::string desired_content(const v1::DesiredState& state) {
  v1::DesiredState copy = state;
  copy.clear_version();
  copy.clear_generate_time();
  std::string bytes;
  google::protobuf::io::StringOutputStream stream(&bytes);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  copy.SerializeToCodedStream(&coded);
  coded.Trim();
  return bytes;
}

bool same_instance(const v1::InstanceSpec& stored, const v1::InstanceSpec& planned) {
  // Channels are declared when a VM is created: changing them means a new VM too.
  bool same_channels = stored.channels_size() == planned.channels_size();
  for (int i = 0; same_channels && i < stored.channels_size(); ++i) {
    same_channels = same_message(stored.channels(i), planned.channels(i));
  }
  return same_channels && stored.image_digest() == planned.image_digest() &&
         same_message(stored.placement(), planned.placement()) &&
         same_message(stored.runtime(), planned.runtime()) &&
         stored.restart_policy() == planned.restart_policy();
}

ExistingInstances index_existing(const std::map<std::string, v1::Instance>& instances,
                                 const std::vector<MigrationInProgress>& migrations) {
  ExistingInstances existing;
  existing.by_name = &instances;
  for (const auto& [name, instance] : instances) {
    existing.by_device[instance.spec().device()].push_back(name);
  }
  // Held paused at the source while they migrate away from it.
  for (const MigrationInProgress& migration : migrations) {
    auto found = instances.find(migration.instance);
    if (found != instances.end() && found->second.spec().device() != migration.source) {
      existing.by_device[migration.source].push_back(migration.instance);
    }
  }
  return existing;
}

DevicePlan plan_device(const PlannerInputs& inputs, const v1::Device& device,
                       const ExistingInstances* existing, uint64_t* examined) {
  const std::map<std::string, v1::Instance>* pins =
      existing != nullptr ? existing->by_name : nullptr;
  DevicePlan plan;
  if (!is_enrolled(device)) return plan;
  const std::string& device_name = device.metadata().name();
  for (const auto& [name, deployment] : inputs.view->deployments) {
    if (!selector_matches(deployment.spec().selector(), device.metadata().labels())) continue;
    // An instance of this deployment and device that migrated away stays away, except that the
    // source holds it paused while its migration is under way.
    const std::string own_name = instance_name(name, device_name);
    if (pins != nullptr) {
      auto pinned = pins->find(own_name);
      if (pinned != pins->end() && pinned->second.spec().device() != device_name) {
        const MigrationInProgress* migration = migration_of(inputs, own_name);
        if (migration != nullptr && migration->source == device_name) {
          plan.instances.push_back(held_at_source(inputs, pinned->second, device_name));
        }
        continue;
      }
    }
    if (device.spec().cordoned()) {
      // Cordoned: it keeps what it runs, as it is, and receives nothing new (DeviceSpec).
      if (pins != nullptr) {
        auto kept = pins->find(own_name);
        if (kept != pins->end()) plan.instances.push_back(planned_from_spec(inputs, kept->second));
      }
      continue;
    }
    // What the device runs now, while a staged rollout restricts this deployment.
    const v1::Instance* kept = nullptr;
    if (pins != nullptr && inputs.revisions != nullptr) {
      auto revision = inputs.revisions->find(name);
      if (revision != inputs.revisions->end() && revision->second.admitted != nullptr) {
        auto found = pins->find(own_name);
        if (found != pins->end()) kept = &found->second;
        if (kept != nullptr && !revision->second.admitted->contains(device_name)) {
          // Not yet reached by the waves: it keeps what it runs, as it is. Apply still checks
          // that the revision could run here when its wave comes.
          if (inputs.check_unreached) {
            absl::StatusOr<PlannedInstance> probe = compose_for(inputs, name, deployment, device);
            if (!probe.ok()) plan.errors[name] = std::string(probe.status().message());
          }
          plan.instances.push_back(planned_from_spec(inputs, *kept));
          continue;
        }
      }
    }
    absl::StatusOr<PlannedInstance> planned = compose_for(inputs, name, deployment, device);
    if (!planned.ok()) {
      plan.errors[name] = std::string(planned.status().message());
      // A reached device whose revision cannot run here (its profile changed since Apply
      // checked) keeps what it runs rather than lose it.
      if (kept != nullptr) plan.instances.push_back(planned_from_spec(inputs, *kept));
      continue;
    }
    if (const MigrationInProgress* migration = migration_of(inputs, own_name)) {
      if (migration->source == device_name) {
        planned->desired.set_state(v1::DESIRED_INSTANCE_STATE_PAUSED);
      } else if (migration->target == device_name) {  // migrating back home
        planned->desired.set_restore_snapshot_digest(migration->snapshot_digest);
      }
    }
    plan.instances.push_back(*std::move(planned));
  }
  if (existing == nullptr) return plan;
  // Instances that migrated here: they keep their name, uid, image and history.
  auto concerning = existing->by_device.find(device_name);
  if (concerning == existing->by_device.end()) return plan;
  for (const std::string& name : concerning->second) {
    const v1::Instance& instance = pins->at(name);
    if (examined != nullptr) ++*examined;
    const v1::InstanceSpec& spec = instance.spec();
    if (name == instance_name(spec.deployment(), device_name) ||
        !inputs.view->deployments.contains(spec.deployment())) {
      continue;  // named after this device: handled above
    }
    const MigrationInProgress* migration = migration_of(inputs, name);
    if (spec.device() != device_name) {
      // Migrating away from here (it came here by an earlier migration): held paused.
      if (migration != nullptr && migration->source == device_name) {
        plan.instances.push_back(held_at_source(inputs, instance, device_name));
      }
      continue;
    }
    PlannedInstance planned = planned_from_spec(inputs, instance);
    if (migration != nullptr && migration->target == device_name) {
      planned.desired.set_restore_snapshot_digest(migration->snapshot_digest);
    }
    plan.instances.push_back(std::move(planned));
  }
  return plan;
}

}  // namespace tenon::controller
