// See controller.h.
#include "controller.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <algorithm>
#include <tuple>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/protobuf/util/time_util.h"
#include "migration_policy.h"
#include "nlohmann/json.hpp"
#include "object_meta.h"
#include "request_limits.h"
#include "sha256.h"
#include "validate.h"

namespace tenon::controller {
namespace {

namespace v1 = tenon::v1;
using google::protobuf::util::TimeUtil;

google::protobuf::Timestamp to_timestamp(absl::Time time) {
  return TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(time));
}

std::string random_hex(size_t bytes) {
  std::string raw(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes)) != 1) {
    // OpenSSL's generator does not fail once seeded; a controller without randomness must not
    // hand out guessable secrets.
    std::abort();
  }
  return absl::BytesToHexString(raw);
}

std::string new_uid() {
  const std::string hex = random_hex(16);
  return absl::StrCat(hex.substr(0, 8), "-", hex.substr(8, 4), "-", hex.substr(12, 4), "-",
                      hex.substr(16, 4), "-", hex.substr(20));
}

bool equal_hashes(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool same_message(const google::protobuf::Message& a, const google::protobuf::Message& b) {
  return google::protobuf::util::MessageDifferencer::Equals(a, b);
}

// Channels are declared when a VM is created: changing them means a new VM.
bool same_channels(const v1::InstanceSpec& a, const v1::InstanceSpec& b) {
  if (a.channels_size() != b.channels_size()) return false;
  for (int i = 0; i < a.channels_size(); ++i) {
    if (!same_message(a.channels(i), b.channels(i))) return false;
  }
  return true;
}

bool is_terminal(v1::InstanceState state) {
  return state == v1::INSTANCE_STATE_EXITED || state == v1::INSTANCE_STATE_FAULTED ||
         state == v1::INSTANCE_STATE_CRASHED;
}

std::string state_label(v1::InstanceState state) {
  std::string name = v1::InstanceState_Name(state);
  name = name.substr(std::string("INSTANCE_STATE_").size());
  std::transform(name.begin(), name.end(), name.begin(), ::tolower);
  return name;
}

// The operator-owned part of an object: labels and spec, as JSON for comparison and diffs.
nlohmann::json owned_json(const v1::Object& object) {
  v1::Object copy = object;
  v1::ObjectMeta* meta = mutable_object_meta(&copy);
  const auto labels = meta->labels();
  switch (copy.kind_case()) {
    case v1::Object::kDevice:
      copy.mutable_device()->clear_status();
      break;
    case v1::Object::kDeployment:
      copy.mutable_deployment()->clear_status();
      break;
    default:
      break;
  }
  meta->Clear();
  *meta->mutable_labels() = labels;
  std::string text;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(copy, &text, options);
  nlohmann::json document = nlohmann::json::parse(text, nullptr, false);
  if (document.is_object() && !document.empty()) return document.begin().value();
  return nlohmann::json::object();
}

std::string pointer_to_path(const std::string& pointer) {
  std::string path;
  for (const absl::string_view part : absl::StrSplit(pointer.substr(1), '/')) {
    const bool index = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
    if (index) {
      absl::StrAppend(&path, "[", part, "]");
    } else {
      absl::StrAppend(&path, path.empty() ? "" : ".", part);
    }
  }
  return path;
}

void append_changes(const nlohmann::json& before, const nlohmann::json& after,
                    v1::ObjectDiff* diff) {
  const nlohmann::json old_flat = before.flatten();
  const nlohmann::json new_flat = after.flatten();
  for (const auto& [pointer, value] : old_flat.items()) {
    auto found = new_flat.find(pointer);
    if (found == new_flat.end() || *found != value) {
      v1::FieldChange* change = diff->add_changes();
      change->set_path(pointer_to_path(pointer));
      change->set_old_value(value.dump());
      if (found != new_flat.end()) change->set_new_value(found->dump());
    }
  }
  for (const auto& [pointer, value] : new_flat.items()) {
    if (!old_flat.contains(pointer)) {
      v1::FieldChange* change = diff->add_changes();
      change->set_path(pointer_to_path(pointer));
      change->set_new_value(value.dump());
    }
  }
}

bool is_enrolled(const v1::Device& device) {
  return device.status().connection_state() != v1::CONNECTION_STATE_NOT_ENROLLED &&
         device.status().has_profile();
}

v1::LatencyTelemetry latency_from(const v1::InstanceTelemetry& telemetry) {
  v1::LatencyTelemetry latency;
  *latency.mutable_update_time() = telemetry.sample_time();
  for (const v1::TaskTelemetry& task : telemetry.tasks()) {
    v1::TaskLatency* entry = latency.add_tasks();
    entry->set_task_name(task.task_name());
    entry->set_jobs(task.jobs());
    entry->set_deadline_misses(task.deadline_misses());
    *entry->mutable_release_latency() = task.release_latency_summary();
    *entry->mutable_response_time() = task.response_time_summary();
  }
  return latency;
}

// A desired state without its version and time, for "did anything change".
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
                      sha256_hex(absl::StrCat(deployment, "/", device)).substr(0, 12));
}

Controller::Controller(ControllerConfig config, Store* store, BlobStore* blobs,
                       FleetComposer* composer)
    : config_(std::move(config)), store_(store), blobs_(blobs), composer_(composer) {}

absl::Status Controller::recover() {
  absl::MutexLock lock(&mutex_);
  return store_->transact([&](StoreTransaction& tx) -> absl::Status {
    absl::StatusOr<std::vector<v1::Object>> instances = tx.list_objects(v1::OBJECT_KIND_INSTANCE);
    if (!instances.ok()) return instances.status();
    for (const v1::Object& object : *instances) {
      InstanceRuntime& runtime = instances_[object.instance().metadata().name()];
      runtime.status = object.instance().status();
      runtime.device = object.instance().spec().device();
    }
    return absl::OkStatus();
  });
}

// ---- Planning -----------------------------------------------------------------------------------

absl::StatusOr<Controller::FleetView> Controller::load_view(
    StoreTransaction& tx, const std::set<std::string>& only_devices) {
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

const Controller::Migration* Controller::active_migration(const std::string& instance) const {
  for (const auto& [id, migration] : migrations_) {
    if (migration.instance == instance && migration.phase != Migration::Phase::kDone &&
        migration.phase != Migration::Phase::kFailed) {
      return &migration;
    }
  }
  return nullptr;
}

absl::StatusOr<Controller::DeploymentContext> Controller::load_deployment_context(
    StoreTransaction& tx) {
  DeploymentContext context;
  absl::StatusOr<FleetView> view = load_view(tx, {});
  if (!view.ok()) return view.status();
  context.view = std::move(*view);
  absl::StatusOr<std::vector<v1::Object>> instances = tx.list_objects(v1::OBJECT_KIND_INSTANCE);
  if (!instances.ok()) return instances.status();
  context.instances = std::move(*instances);
  return context;
}

Controller::PlannedInstance Controller::planned_from_spec(const v1::Instance& instance) {
  PlannedInstance planned;
  v1::DesiredInstance& desired = planned.desired;
  const v1::InstanceSpec& spec = instance.spec();
  desired.set_name(instance.metadata().name());
  desired.set_deployment(spec.deployment());
  desired.set_image_digest(spec.image_digest());
  absl::StatusOr<uint64_t> size = blobs_->size(spec.image_digest());
  desired.set_image_size_bytes(size.ok() ? *size : 0);
  *desired.mutable_placement() = spec.placement();
  desired.set_state(v1::DESIRED_INSTANCE_STATE_RUNNING);
  desired.set_restart_policy(spec.restart_policy());
  *desired.mutable_runtime() = spec.runtime();
  *desired.mutable_channels() = spec.channels();
  planned.spec = spec;
  return planned;
}

uint64_t Controller::planner_instances_examined() const {
  absl::MutexLock lock(&mutex_);
  return planner_instances_examined_;
}

Controller::ExistingInstances Controller::index_existing(
    const std::map<std::string, v1::Instance>& instances) const {
  ExistingInstances existing;
  existing.by_name = &instances;
  for (const auto& [name, instance] : instances) {
    existing.by_device[instance.spec().device()].push_back(name);
  }
  // Held paused at the source while they migrate away from it.
  for (const auto& [id, migration] : migrations_) {
    if (migration.phase == Migration::Phase::kDone ||
        migration.phase == Migration::Phase::kFailed) {
      continue;
    }
    auto found = instances.find(migration.instance);
    if (found != instances.end() && found->second.spec().device() != migration.source) {
      existing.by_device[migration.source].push_back(migration.instance);
    }
  }
  return existing;
}

Controller::DevicePlan Controller::plan_device(const FleetView& view, const v1::Device& device,
                                               const ExistingInstances* existing) {
  const std::map<std::string, v1::Instance>* pins =
      existing != nullptr ? existing->by_name : nullptr;
  DevicePlan plan;
  if (!is_enrolled(device)) return plan;
  const std::string& device_name = device.metadata().name();
  for (const auto& [name, deployment] : view.deployments) {
    if (!selector_matches(deployment.spec().selector(), device.metadata().labels())) continue;
    // An instance of this deployment and device that migrated away stays away, except that the
    // source holds it paused while its migration is under way.
    const std::string own_name = instance_name(name, device_name);
    if (pins != nullptr) {
      auto pinned = pins->find(own_name);
      if (pinned != pins->end() && pinned->second.spec().device() != device_name) {
        const Migration* migration = active_migration(own_name);
        if (migration != nullptr && migration->source == device_name) {
          PlannedInstance held = planned_from_spec(pinned->second);
          held.spec.set_device(device_name);
          held.desired.set_state(v1::DESIRED_INSTANCE_STATE_PAUSED);
          plan.instances.push_back(std::move(held));
        }
        continue;
      }
    }
    auto app = view.apps.find(deployment.spec().app());
    if (app == view.apps.end()) {
      plan.errors[name] = absl::StrCat("app ", deployment.spec().app(), " does not exist");
      continue;
    }
    // Declared channels need the ivc library in the image.
    v1::AppSpec app_spec = app->second.spec();
    if (deployment.spec().channels_size() > 0 &&
        std::find(app_spec.needs().begin(), app_spec.needs().end(), "ivc") ==
            app_spec.needs().end()) {
      app_spec.add_needs("ivc");
    }
    absl::StatusOr<ComposedApp> composed =
        composer_->compose(app->first, app_spec, device.status().profile(),
                           deployment.spec().placement(), /*build=*/true);
    if (!composed.ok()) {
      plan.errors[name] = std::string(composed.status().message());
      continue;
    }
    PlannedInstance planned;
    v1::DesiredInstance& desired = planned.desired;
    desired.set_name(instance_name(name, device_name));
    desired.set_deployment(name);
    desired.set_image_digest(composed->composition.image_digest());
    desired.set_image_size_bytes(composed->composition.image_size_bytes());
    *desired.mutable_placement() = deployment.spec().placement();
    desired.mutable_placement()->set_memory_bytes(composed->memory_bytes);
    desired.set_state(v1::DESIRED_INSTANCE_STATE_RUNNING);
    desired.set_restart_policy(deployment.spec().restart_policy() == v1::RESTART_POLICY_UNSPECIFIED
                                   ? v1::RESTART_POLICY_ON_FAILURE
                                   : deployment.spec().restart_policy());
    *desired.mutable_runtime() = deployment.spec().runtime();
    *desired.mutable_channels() = deployment.spec().channels();
    if (desired.runtime().stack_bytes() == 0) {
      desired.mutable_runtime()->set_stack_bytes(kBootStackBytes);
    }
    v1::InstanceSpec& spec = planned.spec;
    spec.set_deployment(name);
    spec.set_device(device_name);
    spec.set_app(app->first);
    spec.set_composition(composed->composition.metadata().name());
    spec.set_image_digest(desired.image_digest());
    *spec.mutable_placement() = desired.placement();
    spec.set_desired_state(desired.state());
    spec.set_restart_policy(desired.restart_policy());
    spec.set_deployment_generation(deployment.metadata().generation());
    *spec.mutable_runtime() = desired.runtime();
    *spec.mutable_channels() = desired.channels();
    planned.composition = std::move(composed->composition);
    if (const Migration* migration = active_migration(desired.name()); migration != nullptr) {
      if (migration->source == device_name) {
        planned.desired.set_state(v1::DESIRED_INSTANCE_STATE_PAUSED);
      } else if (migration->target == device_name) {  // migrating back home
        planned.desired.set_restore_snapshot_digest(migration->snapshot_digest);
      }
    }
    plan.instances.push_back(std::move(planned));
  }
  // Instances that migrated here: they keep their name, uid, image and history.
  if (existing != nullptr) {
    auto concerning = existing->by_device.find(device_name);
    const std::vector<std::string> none;
    for (const std::string& name :
         concerning != existing->by_device.end() ? concerning->second : none) {
      const v1::Instance& instance = pins->at(name);
      ++planner_instances_examined_;
      const v1::InstanceSpec& spec = instance.spec();
      if (name == instance_name(spec.deployment(), device_name) ||
          !view.deployments.contains(spec.deployment())) {
        continue;  // named after this device: handled above
      }
      if (spec.device() != device_name) {
        // Migrating away from here (it came here by an earlier migration): held paused.
        const Migration* migration = active_migration(name);
        if (migration != nullptr && migration->source == device_name) {
          PlannedInstance held = planned_from_spec(instance);
          held.spec.set_device(device_name);
          held.desired.set_state(v1::DESIRED_INSTANCE_STATE_PAUSED);
          plan.instances.push_back(std::move(held));
        }
        continue;
      }
      PlannedInstance planned = planned_from_spec(instance);
      if (const Migration* migration = active_migration(name);
          migration != nullptr && migration->target == device_name) {
        planned.desired.set_restore_snapshot_digest(migration->snapshot_digest);
      }
      plan.instances.push_back(std::move(planned));
    }
  }
  return plan;
}

absl::Status Controller::replan(StoreTransaction& tx, const std::set<std::string>& only,
                                std::vector<std::pair<std::string, v1::DesiredState>>* to_send) {
  absl::StatusOr<FleetView> view = load_view(tx, only);
  if (!view.ok()) return view.status();
  // The instances the plan may keep, replace or remove: all of them, or, for a few devices, the
  // ones their current desired states name (one device's replan must not read the whole fleet).
  std::map<std::string, v1::Instance> existing;
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
      if (!desired->has_value()) continue;
      for (const v1::DesiredInstance& instance : (*desired)->instances()) {
        absl::StatusOr<std::optional<v1::Object>> object =
            tx.get_object(v1::OBJECT_KIND_INSTANCE, instance.name());
        if (!object.ok()) return object.status();
        if (object->has_value()) {
          existing[instance.name()] = std::move(*(*object)->mutable_instance());
        }
      }
    }
    // Instances named after these devices (they may have migrated away) and instances whose
    // migration involves them.
    std::set<std::string> names;
    for (const std::string& device : only) {
      for (const auto& [deployment, unused] : view->deployments) {
        names.insert(instance_name(deployment, device));
      }
    }
    for (const auto& [id, migration] : migrations_) {
      if (only.contains(migration.source) || only.contains(migration.target)) {
        names.insert(migration.instance);
      }
    }
    for (const std::string& name : names) {
      if (existing.contains(name)) continue;
      absl::StatusOr<std::optional<v1::Object>> object =
          tx.get_object(v1::OBJECT_KIND_INSTANCE, name);
      if (!object.ok()) return object.status();
      if (object->has_value()) existing[name] = std::move(*(*object)->mutable_instance());
    }
  }
  const absl::Time now = absl::Now();
  const ExistingInstances indexed = index_existing(existing);
  std::set<std::string> planned_names;
  std::set<std::string> stored_compositions;  // looked up (and stored if new) in this replan
  for (auto& [device_name, device] : view->devices) {
    if (!only.empty() && !only.contains(device_name)) continue;
    DevicePlan plan = plan_device(*view, device, &indexed);
    for (auto& [deployment, errors] : plan_errors_) errors.erase(device_name);
    for (const auto& [deployment, error] : plan.errors) {
      plan_errors_[deployment][device_name] = error;
    }
    v1::DesiredState desired;
    for (PlannedInstance& planned : plan.instances) {
      const std::string& name = planned.desired.name();
      planned_names.insert(name);
      auto found = existing.find(name);
      // The instance keeps its uid while what the device must run stays the same.
      const bool same = found != existing.end() &&
                        found->second.spec().image_digest() == planned.spec.image_digest() &&
                        same_message(found->second.spec().placement(), planned.spec.placement()) &&
                        same_message(found->second.spec().runtime(), planned.spec.runtime()) &&
                        same_channels(found->second.spec(), planned.spec) &&
                        found->second.spec().restart_policy() == planned.spec.restart_policy();
      v1::Object object;
      v1::Instance* instance = object.mutable_instance();
      const bool held_at_source = same && found->second.spec().device() != device_name;
      if (held_at_source) {
        *instance = found->second;  // migrating away: the stored spec already names the target
      } else if (same) {
        *instance = found->second;
        if (!same_message(instance->spec(), planned.spec)) {
          *instance->mutable_spec() = planned.spec;
          instance->mutable_metadata()->set_generation(instance->metadata().generation() + 1);
          *instance->mutable_metadata()->mutable_update_time() = to_timestamp(now);
          if (absl::Status put = tx.put_object(object); !put.ok()) return put;
        }
      } else {
        v1::ObjectMeta* meta = instance->mutable_metadata();
        meta->set_name(name);
        meta->set_uid(new_uid());
        meta->set_generation(found != existing.end() ? found->second.metadata().generation() + 1
                                                     : 1);
        *meta->mutable_create_time() =
            found != existing.end() ? found->second.metadata().create_time() : to_timestamp(now);
        *meta->mutable_update_time() = to_timestamp(now);
        (*meta->mutable_labels())["deployment"] = planned.spec.deployment();
        (*meta->mutable_labels())["device"] = device_name;
        *instance->mutable_spec() = planned.spec;
        InstanceRuntime& runtime = instances_[name];
        if (found == existing.end()) {
          runtime.status.set_observed_state(v1::INSTANCE_STATE_PENDING);
          *runtime.status.mutable_last_transition_time() = to_timestamp(now);
        }
        *instance->mutable_status() = runtime.status;
        if (absl::Status put = tx.put_object(object); !put.ok()) return put;
      }
      planned.desired.set_uid(instance->metadata().uid());
      if (!held_at_source) instances_[name].device = device_name;
      // The composition, stored once per distinct input (migrated instances have one already).
      if (planned.composition.metadata().name().empty()) {
        *desired.add_instances() = planned.desired;
        continue;
      }
      // A fleet shares few compositions: each is looked up once per replan, not per device.
      if (!stored_compositions.insert(planned.composition.metadata().name()).second) {
        *desired.add_instances() = planned.desired;
        continue;
      }
      absl::StatusOr<std::optional<v1::Object>> composition =
          tx.get_object(v1::OBJECT_KIND_COMPOSITION, planned.composition.metadata().name());
      if (!composition.ok()) return composition.status();
      if (!composition->has_value()) {
        v1::Object stored;
        *stored.mutable_composition() = planned.composition;
        v1::ObjectMeta* meta = stored.mutable_composition()->mutable_metadata();
        meta->set_uid(new_uid());
        meta->set_generation(1);
        *meta->mutable_create_time() = to_timestamp(now);
        *meta->mutable_update_time() = to_timestamp(now);
        if (absl::Status put = tx.put_object(stored); !put.ok()) return put;
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
    *desired.mutable_generate_time() = to_timestamp(now);
    if (absl::Status put = tx.put_desired_state(device_name, desired); !put.ok()) return put;
    v1::Object device_object;
    *device_object.mutable_device() = device;
    device_object.mutable_device()->mutable_status()->set_desired_state_version(*version);
    device_object.mutable_device()->mutable_status()->set_instance_count(desired.instances_size());
    if (absl::Status put = tx.put_object(device_object); !put.ok()) return put;
    to_send->emplace_back(device_name, std::move(desired));
  }
  // Instances no plan produced any more: of devices in scope, or of devices that are gone.
  for (const auto& [name, instance] : existing) {
    const std::string& device = instance.spec().device();
    const bool in_scope = only.empty() || only.contains(device);
    if (!in_scope || planned_names.contains(name)) continue;
    if (absl::Status removed = tx.delete_object(v1::OBJECT_KIND_INSTANCE, name); !removed.ok()) {
      return removed;
    }
    instances_.erase(name);
    if (!view->devices.contains(device)) {
      if (absl::Status removed = tx.delete_desired_state(device);
          !removed.ok() && !absl::IsNotFound(removed)) {
        return removed;
      }
    }
  }
  return absl::OkStatus();
}

void Controller::send_desired_state(const std::string& device, const v1::DesiredState& state) {
  auto found = devices_.find(device);
  if (found == devices_.end() || !found->second.session) return;
  v1::ControllerMessage message;
  *message.mutable_desired_state() = state;
  found->second.session->send(std::move(message));
  ++desired_states_sent_;
  subscribe_consoles(device, state);
}

void Controller::subscribe_consoles(const std::string& device, const v1::DesiredState& state) {
  auto found = devices_.find(device);
  if (found == devices_.end() || !found->second.session) return;
  for (const v1::DesiredInstance& instance : state.instances()) {
    InstanceRuntime& runtime = instances_[instance.name()];
    if (runtime.console_subscribed) continue;
    runtime.console_subscribed = true;
    v1::ControllerMessage message;
    v1::ConsoleSubscription* subscription = message.mutable_console_subscription();
    subscription->set_instance_name(instance.name());
    subscription->set_enabled(true);
    subscription->set_from_offset(runtime.console_offset + runtime.console.size());
    found->second.session->send(std::move(message));
  }
}

// ---- Operator API -------------------------------------------------------------------------------

absl::StatusOr<v1::ApplyResponse> Controller::apply(const v1::ApplyRequest& request) {
  std::set<std::pair<int, std::string>> seen;
  for (const v1::Object& object : request.objects()) {
    if (absl::Status valid = check_object(object); !valid.ok()) return valid;
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
  absl::MutexLock lock(&mutex_);
  v1::ApplyResponse response;
  std::vector<std::pair<std::string, v1::DesiredState>> to_send;
  std::vector<std::shared_ptr<AgentSession>> revoked;
  absl::Status status = store_->transact([&](StoreTransaction& tx) -> absl::Status {
    response.Clear();
    to_send.clear();
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
            action == v1::CHANGE_ACTION_UPDATE ? to_timestamp(now) : old_meta.update_time();
        if (kind == v1::OBJECT_KIND_DEVICE) {
          *result.mutable_device()->mutable_status() = old.device().status();
        }
        if (kind == v1::OBJECT_KIND_DEPLOYMENT) {
          *result.mutable_deployment()->mutable_status() = old.deployment().status();
        }
      } else {
        meta->set_uid(new_uid());
        meta->set_generation(1);
        *meta->mutable_create_time() = to_timestamp(now);
        *meta->mutable_update_time() = to_timestamp(now);
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
    // Compose every touched deployment for every device it selects before storing anything.
    for (const auto& [device_name, device] : view->devices) {
      DevicePlan plan = plan_device(*view, device);
      for (const auto& [deployment, error] : plan.errors) {
        if (!touched_deployments.contains(deployment)) continue;
        return absl::FailedPreconditionError(absl::StrCat(
            "Deployment ", deployment, " cannot run on device ", device_name, ": ", error));
      }
    }
    if (request.dry_run()) return absl::OkStatus();
    std::set<std::string> changed_deployments;
    for (const v1::Object& object : to_store) {
      if (absl::Status put = tx.put_object(object); !put.ok()) return put;
      if (object.has_deployment())
        changed_deployments.insert(object.deployment().metadata().name());
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
            active_migration(object.instance().metadata().name()) == nullptr) {
          if (absl::Status removed =
                  tx.delete_object(v1::OBJECT_KIND_INSTANCE, object.instance().metadata().name());
              !removed.ok()) {
            return removed;
          }
        }
      }
    }
    return replan(tx, {}, &to_send);
  });
  if (!status.ok()) return status;
  for (const auto& [device, state] : to_send) send_desired_state(device, state);
  return response;
}

absl::StatusOr<v1::Object> Controller::get(const v1::GetRequest& request) {
  if (request.kind() == v1::OBJECT_KIND_UNSPECIFIED || request.name().empty()) {
    return absl::InvalidArgumentError("Get needs a kind and a name");
  }
  absl::MutexLock lock(&mutex_);
  std::optional<v1::Object> result;
  absl::Status status = store_->transact([&](StoreTransaction& tx) -> absl::Status {
    absl::StatusOr<std::optional<v1::Object>> object =
        tx.get_object(request.kind(), request.name());
    if (!object.ok()) return object.status();
    if (!object->has_value()) {
      return absl::NotFoundError(
          absl::StrCat(kind_name(request.kind()), " ", request.name(), " not found"));
    }
    if (request.kind() == v1::OBJECT_KIND_DEPLOYMENT) {
      absl::StatusOr<DeploymentContext> context = load_deployment_context(tx);
      if (!context.ok()) return context.status();
      fill_deployment_status((*object)->mutable_deployment(), context->view, context->instances);
      result = std::move(**object);
      return absl::OkStatus();
    }
    result = with_runtime(std::move(**object));
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return *result;
}

absl::StatusOr<v1::ListResponse> Controller::list(const v1::ListRequest& request) {
  if (request.kind() == v1::OBJECT_KIND_UNSPECIFIED) {
    return absl::InvalidArgumentError("List needs a kind");
  }
  if ((!request.device().empty() || !request.deployment().empty()) &&
      request.kind() != v1::OBJECT_KIND_INSTANCE) {
    return absl::InvalidArgumentError("the device and deployment filters apply to instances only");
  }
  const uint32_t page_size = request.page_size() == 0 ? 100 : request.page_size();
  if (page_size > 1000) return absl::InvalidArgumentError("page_size is at most 1000");
  const std::string token_prefix = absl::StrCat(static_cast<int>(request.kind()), ":");
  std::string after;
  if (!request.page_token().empty()) {
    if (!absl::StartsWith(request.page_token(), token_prefix)) {
      return absl::InvalidArgumentError("page_token belongs to another query");
    }
    after = request.page_token().substr(token_prefix.size());
  }
  absl::MutexLock lock(&mutex_);
  v1::ListResponse response;
  absl::Status status = store_->transact([&](StoreTransaction& tx) -> absl::Status {
    absl::StatusOr<std::vector<v1::Object>> objects = tx.list_objects(request.kind());
    if (!objects.ok()) return objects.status();
    std::optional<DeploymentContext> context;
    if (request.kind() == v1::OBJECT_KIND_DEPLOYMENT) {
      absl::StatusOr<DeploymentContext> loaded = load_deployment_context(tx);
      if (!loaded.ok()) return loaded.status();
      context = std::move(*loaded);
    }
    const bool has_selector = request.has_selector();
    for (v1::Object& object : *objects) {
      const v1::ObjectMeta& meta = object_meta(object);
      if (!after.empty() && meta.name() <= after) continue;
      if (has_selector && !selector_matches(request.selector(), meta.labels()) &&
          !(request.selector().match_labels().empty() &&
            request.selector().match_expressions().empty())) {
        continue;
      }
      if (!request.device().empty() && object.instance().spec().device() != request.device()) {
        continue;
      }
      if (!request.deployment().empty() &&
          object.instance().spec().deployment() != request.deployment()) {
        continue;
      }
      if (static_cast<uint32_t>(response.objects_size()) == page_size) {
        response.set_next_page_token(
            absl::StrCat(token_prefix, object_meta(response.objects(page_size - 1)).name()));
        break;
      }
      if (request.kind() == v1::OBJECT_KIND_DEPLOYMENT) {
        fill_deployment_status(object.mutable_deployment(), context->view, context->instances);
        *response.add_objects() = std::move(object);
      } else {
        *response.add_objects() = with_runtime(std::move(object));
      }
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return response;
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
  absl::MutexLock lock(&mutex_);
  v1::DeleteResponse response;
  std::vector<std::pair<std::string, v1::DesiredState>> to_send;
  absl::Status status = store_->transact([&](StoreTransaction& tx) -> absl::Status {
    to_send.clear();
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
    return replan(tx, {}, &to_send);
  });
  if (!status.ok()) return status;
  for (const auto& [device, state] : to_send) send_desired_state(device, state);
  if (request.kind() == v1::OBJECT_KIND_DEVICE) {
    auto found = devices_.find(request.name());
    if (found != devices_.end()) {
      if (found->second.session) {
        found->second.session->close(absl::PermissionDeniedError(
            absl::StrCat("device ", request.name(), " was deleted; its credential is revoked")));
      }
      devices_.erase(found);
    }
  }
  return response;
}

absl::StatusOr<v1::DiffResponse> Controller::diff(const v1::DiffRequest& request) {
  for (const v1::Object& object : request.objects()) {
    if (absl::Status valid = check_object(object); !valid.ok()) return valid;
  }
  absl::MutexLock lock(&mutex_);
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
    for (const auto& [device_name, device] : after.devices) {
      DevicePlan plan = plan_device(after, device);
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

absl::StatusOr<v1::ComposeResponse> Controller::compose(const v1::ComposeRequest& request) {
  absl::MutexLock lock(&mutex_);
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
  *response.mutable_composition() = std::move(composed->composition);
  return response;
}

absl::StatusOr<v1::CreateBootstrapTokenResponse> Controller::create_bootstrap_token(
    const v1::CreateBootstrapTokenRequest& request) {
  absl::Duration ttl = absl::Hours(1);
  if (request.has_ttl()) {
    // From seconds and nanos as given: nanoseconds in 64 bits overflow past 292 years.
    ttl = absl::Seconds(request.ttl().seconds()) + absl::Nanoseconds(request.ttl().nanos());
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
  record.token_hash = sha256_hex(secret);
  record.device_name = request.device_name();
  record.uses_left = request.max_uses() == 0 ? 1 : request.max_uses();
  const absl::Time expire = absl::Now() + ttl;
  record.expire_unix_seconds = absl::ToUnixSeconds(expire);
  for (const auto& [key, value] : request.labels()) record.labels[key] = value;
  absl::MutexLock lock(&mutex_);
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
  *response.mutable_expire_time() = to_timestamp(expire);
  return response;
}

absl::StatusOr<v1::ConsoleChunk> Controller::read_console(const std::string& instance,
                                                          uint64_t offset, uint64_t tail_bytes,
                                                          absl::Duration wait, bool* terminal) {
  if (instance.empty()) return absl::InvalidArgumentError("instance name is empty");
  absl::MutexLock lock(&mutex_);
  const absl::Time deadline = absl::Now() + wait;
  while (true) {
    auto found = instances_.find(instance);
    if (found == instances_.end()) {
      return absl::NotFoundError(absl::StrCat("Instance ", instance, " not found"));
    }
    InstanceRuntime& runtime = found->second;
    const uint64_t end = runtime.console_offset + runtime.console.size();
    if (offset > end) {
      return absl::OutOfRangeError(
          absl::StrCat("offset ", offset, " is beyond the ", end, " bytes written"));
    }
    uint64_t start = offset;
    if (offset == 0 && tail_bytes != 0 && end > tail_bytes) start = end - tail_bytes;
    start = std::max(start, runtime.console_offset);
    *terminal = is_terminal(runtime.status.observed_state());
    if (start < end || *terminal || absl::Now() >= deadline) {
      v1::ConsoleChunk chunk;
      chunk.set_offset(start);
      chunk.set_data(runtime.console.substr(start - runtime.console_offset));
      *chunk.mutable_time() = to_timestamp(absl::Now());
      return chunk;
    }
    console_changed_.WaitWithDeadline(&mutex_, deadline);
  }
}

// ---- Agent API ----------------------------------------------------------------------------------

absl::StatusOr<v1::EnrollResponse> Controller::enroll(const v1::EnrollRequest& request) {
  v1::Object probe;
  probe.mutable_device()->mutable_metadata()->set_name(request.device_name());
  if (absl::Status valid = check_object(probe); !valid.ok()) return valid;
  if (request.bootstrap_token().empty()) {
    return absl::UnauthenticatedError("no bootstrap token");
  }
  if (request.profile().arch() == v1::ARCH_UNSPECIFIED) {
    return absl::InvalidArgumentError("profile.arch is unspecified");
  }
  const std::string& name = request.device_name();
  absl::MutexLock lock(&mutex_);
  v1::EnrollResponse response;
  std::vector<std::pair<std::string, v1::DesiredState>> to_send;
  absl::Status status = store_->transact([&](StoreTransaction& tx) -> absl::Status {
    to_send.clear();
    const std::string token_hash = sha256_hex(request.bootstrap_token());
    absl::StatusOr<std::optional<BootstrapTokenRecord>> token = tx.get_bootstrap_token(token_hash);
    if (!token.ok()) return token.status();
    if (!token->has_value() || (*token)->uses_left == 0 ||
        (*token)->expire_unix_seconds < absl::ToUnixSeconds(absl::Now())) {
      return absl::UnauthenticatedError("bootstrap token unknown, expired or used up");
    }
    BootstrapTokenRecord record = **token;
    if (!record.device_name.empty() && record.device_name != name) {
      return absl::PermissionDeniedError(
          absl::StrCat("this bootstrap token enrolls device ", record.device_name, " only"));
    }
    absl::StatusOr<std::optional<DeviceCredentialRecord>> credential =
        tx.get_device_credential(name);
    if (!credential.ok()) return credential.status();
    if (credential->has_value() && record.device_name != name) {
      return absl::AlreadyExistsError(absl::StrCat(
          "device ", name, " is already enrolled; re-enrolling needs a token bound to it"));
    }
    absl::StatusOr<std::optional<v1::Object>> stored = tx.get_object(v1::OBJECT_KIND_DEVICE, name);
    if (!stored.ok()) return stored.status();
    const absl::Time now = absl::Now();
    v1::Object object;
    if (stored->has_value()) {
      object = **stored;
    } else {
      v1::ObjectMeta* meta = object.mutable_device()->mutable_metadata();
      meta->set_name(name);
      meta->set_uid(new_uid());
      meta->set_generation(1);
      *meta->mutable_create_time() = to_timestamp(now);
      *meta->mutable_update_time() = to_timestamp(now);
    }
    v1::Device* device = object.mutable_device();
    for (const auto& [key, value] : record.labels) {
      (*device->mutable_metadata()->mutable_labels())[key] = value;
    }
    v1::DeviceStatus* device_status = device->mutable_status();
    device_status->set_connection_state(v1::CONNECTION_STATE_DISCONNECTED);
    *device_status->mutable_profile() = request.profile();
    *device_status->mutable_enroll_time() = to_timestamp(now);
    if (absl::Status put = tx.put_object(object); !put.ok()) return put;
    const std::string secret = absl::StrCat("tenon-device-", random_hex(32));
    DeviceCredentialRecord issued;
    issued.device_name = name;
    issued.credential_hash = sha256_hex(secret);
    issued.issue_unix_seconds = absl::ToUnixSeconds(now);
    if (absl::Status put = tx.put_device_credential(issued); !put.ok()) return put;
    record.uses_left -= 1;
    absl::Status token_update = record.uses_left == 0 ? tx.delete_bootstrap_token(token_hash)
                                                      : tx.put_bootstrap_token(record);
    if (!token_update.ok()) return token_update;
    response.set_device_name(name);
    response.set_device_uid(device->metadata().uid());
    response.set_credential(secret);
    return replan(tx, {name}, &to_send);
  });
  if (!status.ok()) return status;
  // A re-enrolment revokes the old credential and with it the old stream.
  auto found = devices_.find(name);
  if (found != devices_.end() && found->second.session) {
    found->second.session->close(
        absl::PermissionDeniedError("the device re-enrolled; this credential is revoked"));
    found->second.session.reset();
  }
  return response;
}

absl::Status Controller::open_session(const std::shared_ptr<AgentSession>& session,
                                      const v1::Hello& hello) {
  const std::string& name = hello.device_name();
  absl::MutexLock lock(&mutex_);
  std::optional<v1::DesiredState> desired;
  std::vector<std::pair<std::string, v1::DesiredState>> to_send;
  absl::Status status = store_->transact([&](StoreTransaction& tx) -> absl::Status {
    to_send.clear();
    absl::StatusOr<std::optional<DeviceCredentialRecord>> credential =
        tx.get_device_credential(name);
    if (!credential.ok()) return credential.status();
    if (!credential->has_value() ||
        !equal_hashes((*credential)->credential_hash, sha256_hex(hello.credential()))) {
      return absl::UnauthenticatedError(
          absl::StrCat("unknown device ", name, " or wrong credential"));
    }
    absl::StatusOr<std::optional<v1::Object>> device = tx.get_object(v1::OBJECT_KIND_DEVICE, name);
    if (!device.ok()) return device.status();
    if (!device->has_value()) {
      return absl::PermissionDeniedError(absl::StrCat("device ", name, " was deleted"));
    }
    v1::Object& object = **device;
    if (hello.has_profile() && !same_message(object.device().status().profile(), hello.profile())) {
      *object.mutable_device()->mutable_status()->mutable_profile() = hello.profile();
      if (absl::Status put = tx.put_object(object); !put.ok()) return put;
      if (absl::Status planned = replan(tx, {name}, &to_send); !planned.ok()) return planned;
    }
    absl::StatusOr<std::optional<v1::DesiredState>> stored = tx.get_desired_state(name);
    if (!stored.ok()) return stored.status();
    desired = std::move(*stored);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  DeviceRuntime& runtime = devices_[name];
  if (runtime.session && runtime.session != session) {
    runtime.session->close(absl::AbortedError(
        absl::StrCat("another agent connected as device ", name, "; this stream is superseded")));
  }
  runtime.session = session;
  runtime.last_seen = absl::Now();
  runtime.acknowledged_version = hello.acknowledged_desired_state_version();
  runtime.images = {hello.image_digests().begin(), hello.image_digests().end()};
  runtime.dirty = true;
  for (const v1::InstanceStatusUpdate& update : hello.instances()) record_status(name, update);
  v1::ControllerMessage welcome;
  v1::Welcome* body = welcome.mutable_welcome();
  *body->mutable_controller_time() = to_timestamp(absl::Now());
  *body->mutable_ping_interval() =
      TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(config_.ping_interval));
  *body->mutable_telemetry_interval() =
      TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(config_.telemetry_interval));
  body->set_max_chunk_bytes(config_.max_chunk_bytes);
  body->set_controller_version(config_.version);
  session->send(std::move(welcome));
  if (!to_send.empty()) {
    for (const auto& [device, state] : to_send) send_desired_state(device, state);
  } else if (desired.has_value()) {
    if (desired->version() > runtime.acknowledged_version) {
      send_desired_state(name, *desired);
    } else {
      subscribe_consoles(name, *desired);
    }
  }
  return absl::OkStatus();
}

void Controller::record_status(const std::string& device, const v1::InstanceStatusUpdate& update) {
  auto found = instances_.find(update.instance_name());
  if (found == instances_.end()) return;  // not an instance of this fleet (any more)
  // A migration's source still reports the paused copy it holds; only the owner counts.
  if (!found->second.device.empty() && found->second.device != device) return;
  for (auto& [id, migration] : migrations_) {
    // The source reports a failed snapshot as MIGRATING with the reason (agent.proto).
    if (migration.instance == update.instance_name() && migration.source == device &&
        migration.phase == Migration::Phase::kSnapshotting &&
        update.state() == v1::INSTANCE_STATE_MIGRATING &&
        absl::StrContains(update.message(), "failed")) {
      migration.phase = Migration::Phase::kFailed;
      migration.error = update.message();
      migration_changed_.SignalAll();
      continue;
    }
    if (migration.instance == update.instance_name() && migration.target == device &&
        migration.phase == Migration::Phase::kRestoring) {
      if (update.state() == v1::INSTANCE_STATE_RUNNING) {
        migration.target_running = true;
      } else if (is_terminal(update.state())) {
        migration.phase = Migration::Phase::kFailed;
        migration.error = absl::StrCat("the restored instance ended at ", device, ": ",
                                       update.message(), " ", update.exit_reason().message());
      }
      migration_changed_.SignalAll();
    }
  }
  v1::InstanceStatus& status = found->second.status;
  if (status.observed_state() != update.state()) {
    *status.mutable_last_transition_time() =
        update.has_time() ? update.time() : to_timestamp(absl::Now());
  }
  status.set_observed_state(update.state());
  status.set_image_digest(update.image_digest());
  if (update.has_exit_reason()) {
    *status.mutable_exit_reason() = update.exit_reason();
  }
  status.set_restart_count(update.restart_count());
  status.set_message(update.message());
  found->second.dirty = true;
  console_changed_.SignalAll();
}

absl::Status Controller::handle(const std::string& device,
                                const std::shared_ptr<AgentSession>& session,
                                const v1::AgentMessage& message) {
  absl::MutexLock lock(&mutex_);
  auto found = devices_.find(device);
  if (found == devices_.end() || found->second.session != session) {
    return absl::AbortedError("this stream is no longer the device's session");
  }
  DeviceRuntime& runtime = found->second;
  runtime.last_seen = absl::Now();  // written with the device's next change, not per message
  switch (message.kind_case()) {
    case v1::AgentMessage::kHello:
      return absl::FailedPreconditionError("a second Hello on one stream");
    case v1::AgentMessage::kInstanceStatus:
      record_status(device, message.instance_status());
      break;
    case v1::AgentMessage::kTelemetry:
      for (const v1::InstanceTelemetry& sample : message.telemetry().instances()) {
        auto instance = instances_.find(sample.instance_name());
        if (instance != instances_.end()) instance->second.telemetry = sample;
      }
      break;
    case v1::AgentMessage::kAck: {
      const v1::Ack& ack = message.ack();
      if (ack.desired_state_version() != 0) {
        if (ack.outcome() == v1::ACK_OUTCOME_REJECTED) {
          runtime.rejection = ack.message();
        } else {
          runtime.acknowledged_version =
              std::max(runtime.acknowledged_version, ack.desired_state_version());
          runtime.rejection.clear();
        }
        runtime.dirty = true;
      }
      break;
    }
    case v1::AgentMessage::kImageRequest:
      return handle_image_request(device, *session, message.image_request(), message.sequence());
    case v1::AgentMessage::kConsole: {
      auto instance = instances_.find(message.console().instance_name());
      if (instance == instances_.end()) break;
      InstanceRuntime& target = instance->second;
      const v1::ConsoleChunk& chunk = message.console().chunk();
      const uint64_t end = target.console_offset + target.console.size();
      if (chunk.offset() > end) {  // a gap: bytes were dropped on the way
        target.console.clear();
        target.console_offset = chunk.offset();
      }
      const uint64_t skip =
          std::min<uint64_t>(end - std::min(end, chunk.offset()), chunk.data().size());
      if (chunk.offset() + chunk.data().size() > end) target.console.append(chunk.data(), skip);
      if (target.console.size() > config_.console_tail_bytes) {
        const size_t drop = target.console.size() - config_.console_tail_bytes;
        target.console.erase(0, drop);
        target.console_offset += drop;
      }
      console_changed_.SignalAll();
      break;
    }
    case v1::AgentMessage::kSnapshotUpload:
      handle_snapshot_upload(device, message.snapshot_upload());
      break;
    case v1::AgentMessage::KIND_NOT_SET:
      return absl::InvalidArgumentError(
          absl::StrCat("message ", message.sequence(), " carries no kind"));
  }
  return absl::OkStatus();
}

absl::Status Controller::handle_image_request(const std::string& device, AgentSession& session,
                                              const v1::ImageRequest& request, uint64_t sequence) {
  auto reply_error = [&](int code, std::string text) {
    v1::ControllerMessage reply;
    reply.mutable_error()->set_code(code);
    reply.mutable_error()->set_message(std::move(text));
    reply.mutable_error()->set_related_sequence(sequence);
    session.send(std::move(reply));
    return absl::OkStatus();
  };
  // Only images of the device's own instances are served.
  bool wanted = false;
  absl::Status lookup = store_->transact([&](StoreTransaction& tx) -> absl::Status {
    absl::StatusOr<std::optional<v1::DesiredState>> desired = tx.get_desired_state(device);
    if (!desired.ok()) return desired.status();
    if (desired->has_value()) {
      for (const v1::DesiredInstance& instance : (*desired)->instances()) {
        if (instance.image_digest() == request.digest() ||
            instance.restore_snapshot_digest() == request.digest()) {
          wanted = true;
        }
      }
    }
    return absl::OkStatus();
  });
  if (!lookup.ok()) return lookup;
  if (!wanted) {
    return reply_error(
        5, absl::StrCat("image ", request.digest(), " is not in this device's desired state"));
  }
  absl::StatusOr<std::string> blob = blobs_->read(request.digest());
  if (!blob.ok()) return reply_error(5, std::string(blob.status().message()));
  if (request.offset() > blob->size()) {
    return reply_error(11, absl::StrCat("offset ", request.offset(), " is beyond the image's ",
                                        blob->size(), " bytes"));
  }
  if (request.offset() == 0) ++image_transfers_;
  uint64_t offset = request.offset();
  do {
    const uint64_t length = std::min<uint64_t>(config_.max_chunk_bytes, blob->size() - offset);
    v1::ControllerMessage message;
    v1::ImageChunk* chunk = message.mutable_image_chunk();
    chunk->set_digest(request.digest());
    chunk->set_offset(offset);
    chunk->set_data(blob->substr(offset, length));
    chunk->set_total_size_bytes(blob->size());
    chunk->set_chunk_sha256(sha256_hex(chunk->data()));
    offset += length;
    chunk->set_last(offset == blob->size());
    image_bytes_sent_ += length;
    session.send(std::move(message));
  } while (offset < blob->size());
  devices_[device].images.insert(request.digest());
  return absl::OkStatus();
}

void Controller::close_session(const std::string& device,
                               const std::shared_ptr<AgentSession>& session) {
  absl::MutexLock lock(&mutex_);
  auto found = devices_.find(device);
  if (found == devices_.end() || found->second.session != session) return;
  detach_session(device, found->second);
}

void Controller::detach_session(const std::string& device, DeviceRuntime& runtime) {
  runtime.session.reset();
  runtime.dirty = true;
  // Subscriptions end with the stream; the next session subscribes again.
  for (auto& [name, instance] : instances_) {
    if (instance.device == device) instance.console_subscribed = false;
  }
  console_changed_.SignalAll();
}

// ---- Housekeeping -------------------------------------------------------------------------------

void Controller::ping_all() {
  absl::MutexLock lock(&mutex_);
  const absl::Time now = absl::Now();
  const absl::Duration silence_limit = kSilentPings * config_.ping_interval;
  for (auto& [name, runtime] : devices_) {
    if (!runtime.session) continue;
    // An agent acknowledges every ping at once: one that answered nothing for this long is gone
    // (stopped, or its link lost without a reset). Its stream ends, the device is Disconnected
    // and its instances Unknown until it connects again.
    if (runtime.last_seen != absl::InfinitePast() && now - runtime.last_seen > silence_limit) {
      runtime.session->close(absl::UnavailableError(absl::StrCat(
          "device ", name, " answered nothing for ",
          absl::FormatDuration(absl::Trunc(now - runtime.last_seen, absl::Milliseconds(1))), " (",
          kSilentPings, " ping intervals); reconnect")));
      detach_session(name, runtime);
      continue;
    }
    v1::ControllerMessage message;
    *message.mutable_ping()->mutable_send_time() = to_timestamp(absl::Now());
    runtime.session->send(std::move(message));
  }
}

absl::Status Controller::flush_reported_state() {
  absl::MutexLock lock(&mutex_);
  bool any = false;
  for (const auto& [name, runtime] : devices_) any |= runtime.dirty;
  for (const auto& [name, runtime] : instances_) any |= runtime.dirty;
  if (!any) return absl::OkStatus();
  absl::Status status = store_->transact([&](StoreTransaction& tx) -> absl::Status {
    for (const auto& [name, runtime] : devices_) {
      if (!runtime.dirty) continue;
      absl::StatusOr<std::optional<v1::Object>> object =
          tx.get_object(v1::OBJECT_KIND_DEVICE, name);
      if (!object.ok()) return object.status();
      if (!object->has_value()) continue;
      v1::DeviceStatus* status = (**object).mutable_device()->mutable_status();
      if (runtime.last_seen != absl::InfinitePast()) {
        *status->mutable_last_seen() = to_timestamp(runtime.last_seen);
      }
      status->set_acknowledged_desired_state_version(runtime.acknowledged_version);
      if (absl::Status put = tx.put_object(**object); !put.ok()) return put;
    }
    for (const auto& [name, runtime] : instances_) {
      if (!runtime.dirty) continue;
      absl::StatusOr<std::optional<v1::Object>> object =
          tx.get_object(v1::OBJECT_KIND_INSTANCE, name);
      if (!object.ok()) return object.status();
      if (!object->has_value()) continue;
      *(**object).mutable_instance()->mutable_status() = runtime.status;
      if (absl::Status put = tx.put_object(**object); !put.ok()) return put;
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  for (auto& [name, runtime] : devices_) runtime.dirty = false;
  for (auto& [name, runtime] : instances_) runtime.dirty = false;
  return absl::OkStatus();
}

ControllerSnapshot Controller::snapshot() {
  ControllerSnapshot snapshot;
  absl::MutexLock lock(&mutex_);
  (void)store_->transact([&](StoreTransaction& tx) -> absl::Status {
    absl::StatusOr<std::vector<v1::Object>> devices = tx.list_objects(v1::OBJECT_KIND_DEVICE);
    if (devices.ok()) {
      for (v1::Object& object : *devices) {
        fill_device_status(object.mutable_device());
        std::string state = v1::ConnectionState_Name(object.device().status().connection_state());
        state = state.substr(std::string("CONNECTION_STATE_").size());
        std::transform(state.begin(), state.end(), state.begin(), ::tolower);
        ++snapshot.devices_by_state[state];
      }
    }
    absl::StatusOr<std::vector<v1::Object>> instances = tx.list_objects(v1::OBJECT_KIND_INSTANCE);
    if (instances.ok()) {
      for (v1::Object& object : *instances) {
        fill_instance_status(object.mutable_instance());
        ++snapshot.instances_by_state[state_label(object.instance().status().observed_state())];
        snapshot.instance_devices[object.instance().metadata().name()] =
            object.instance().spec().device();
      }
    }
    return absl::OkStatus();
  });
  for (const auto& [name, runtime] : instances_) {
    if (runtime.telemetry.has_value()) snapshot.telemetry.push_back(*runtime.telemetry);
  }
  snapshot.image_transfers = image_transfers_;
  snapshot.image_bytes_sent = image_bytes_sent_;
  snapshot.desired_states_sent = desired_states_sent_;
  snapshot.composer_cache_hits = composer_->cache_hits();
  snapshot.composer_cache_misses = composer_->cache_misses();
  return snapshot;
}

// ---- Read-side merging --------------------------------------------------------------------------

v1::Object Controller::with_runtime(v1::Object object) {
  if (object.has_device()) fill_device_status(object.mutable_device());
  if (object.has_instance()) fill_instance_status(object.mutable_instance());
  return object;
}

void Controller::fill_device_status(v1::Device* device) {
  v1::DeviceStatus* status = device->mutable_status();
  auto found = devices_.find(device->metadata().name());
  if (found != devices_.end()) {
    const DeviceRuntime& runtime = found->second;
    if (runtime.last_seen != absl::InfinitePast()) {
      *status->mutable_last_seen() = to_timestamp(runtime.last_seen);
    }
    status->set_acknowledged_desired_state_version(runtime.acknowledged_version);
    if (runtime.session) {
      status->set_connection_state(v1::CONNECTION_STATE_CONNECTED);
      return;
    }
  }
  if (status->connection_state() != v1::CONNECTION_STATE_NOT_ENROLLED) {
    status->set_connection_state(v1::CONNECTION_STATE_DISCONNECTED);
  }
}

void Controller::fill_instance_status(v1::Instance* instance) {
  auto found = instances_.find(instance->metadata().name());
  if (found != instances_.end()) {
    *instance->mutable_status() = found->second.status;
    if (found->second.telemetry.has_value()) {
      *instance->mutable_status()->mutable_latency() = latency_from(*found->second.telemetry);
    }
  }
  auto device = devices_.find(instance->spec().device());
  const bool connected = device != devices_.end() && device->second.session;
  if (!connected) instance->mutable_status()->set_observed_state(v1::INSTANCE_STATE_UNKNOWN);
}

void Controller::fill_deployment_status(v1::Deployment* deployment, const FleetView& view,
                                        const std::vector<v1::Object>& instances) {
  v1::DeploymentStatus* status = deployment->mutable_status();
  status->Clear();
  const std::string& name = deployment->metadata().name();
  status->set_observed_generation(deployment->metadata().generation());
  uint32_t matched = 0;
  for (const auto& [device_name, device] : view.devices) {
    if (selector_matches(deployment->spec().selector(), device.metadata().labels())) ++matched;
  }
  status->set_matched_devices(matched);
  std::set<std::string> compositions;
  uint32_t running = 0, updated = 0, failed = 0;
  for (const v1::Object& object : instances) {
    v1::Instance instance = object.instance();
    if (instance.spec().deployment() != name) continue;
    fill_instance_status(&instance);
    compositions.insert(instance.spec().composition());
    const v1::InstanceState state = instance.status().observed_state();
    if (state == v1::INSTANCE_STATE_RUNNING) ++running;
    if (state == v1::INSTANCE_STATE_FAULTED || state == v1::INSTANCE_STATE_CRASHED) ++failed;
    if (instance.status().image_digest() == instance.spec().image_digest() &&
        instance.spec().deployment_generation() == deployment->metadata().generation()) {
      ++updated;
    }
  }
  status->set_running_instances(running);
  status->set_updated_instances(updated);
  status->set_failed_instances(failed);
  for (const std::string& composition : compositions) status->add_compositions(composition);
  std::vector<std::string> problems;
  if (auto errors = plan_errors_.find(name); errors != plan_errors_.end()) {
    for (const auto& [device, error] : errors->second) {
      problems.push_back(absl::StrCat(device, ": ", error));
    }
  }
  const bool complete = problems.empty() && running == matched && updated == matched;
  status->set_phase(complete ? v1::ROLLOUT_PHASE_COMPLETE : v1::ROLLOUT_PHASE_PROGRESSING);
  status->set_message(problems.empty()
                          ? absl::StrFormat("%d of %d matched devices run the current generation",
                                            std::min(running, updated), matched)
                          : absl::StrJoin(problems, "; "));
  *status->mutable_update_time() = to_timestamp(absl::Now());
}

}  // namespace tenon::controller

namespace tenon::controller {

namespace v1 = tenon::v1;

absl::Status Controller::replan_and_send(const std::set<std::string>& devices) {
  std::vector<std::pair<std::string, v1::DesiredState>> to_send;
  absl::Status status = store_->transact([&](StoreTransaction& tx) {
    to_send.clear();
    return replan(tx, devices, &to_send);
  });
  if (!status.ok()) return status;
  for (const auto& [device, state] : to_send) send_desired_state(device, state);
  return absl::OkStatus();
}

void Controller::handle_snapshot_upload(const std::string& device,
                                        const v1::SnapshotUpload& upload) {
  auto found = migrations_.find(upload.migration_id());
  if (found == migrations_.end() || found->second.source != device ||
      found->second.phase != Migration::Phase::kSnapshotting) {
    return;  // late or foreign: the migration it belongs to is over
  }
  Migration& migration = found->second;
  const v1::ImageChunk& chunk = upload.chunk();
  constexpr uint64_t kMaxSnapshotBytes = 1ull << 30;
  auto fail = [&](std::string why) {
    migration.phase = Migration::Phase::kFailed;
    migration.error = absl::StrCat("snapshot upload from ", device, ": ", why);
    migration_changed_.SignalAll();
  };
  if (chunk.offset() != migration.snapshot.size()) {
    return fail(
        absl::StrCat("chunk at offset ", chunk.offset(), ", expected ", migration.snapshot.size()));
  }
  if (chunk.total_size_bytes() > kMaxSnapshotBytes ||
      migration.snapshot.size() + chunk.data().size() > kMaxSnapshotBytes) {
    return fail("larger than the 1 GiB limit");
  }
  if (!chunk.chunk_sha256().empty() && chunk.chunk_sha256() != sha256_hex(chunk.data())) {
    return fail(absl::StrCat("chunk at offset ", chunk.offset(), " does not match its sha256"));
  }
  migration.snapshot.append(chunk.data());
  if (!chunk.last()) return;
  const std::string digest = "sha256:" + sha256_hex(migration.snapshot);
  if (digest != chunk.digest()) {
    return fail(absl::StrCat("the snapshot hashes to ", digest, ", not ", chunk.digest()));
  }
  if (absl::Status stored = blobs_->put_verified(digest, migration.snapshot); !stored.ok()) {
    return fail(std::string(stored.message()));
  }
  migration.snapshot_digest = digest;
  migration.snapshot.clear();
  migration.snapshot.shrink_to_fit();
  migration.phase = Migration::Phase::kRestoring;
  migration_changed_.SignalAll();
}

absl::StatusOr<v1::MigrateResponse> Controller::migrate(const v1::MigrateRequest& request,
                                                        absl::Duration step_limit) {
  if (request.instance().empty() || request.target_device().empty()) {
    return absl::InvalidArgumentError("Migrate needs an instance and a target device");
  }
  absl::MutexLock lock(&mutex_);
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
  if (active_migration(request.instance()) != nullptr) {
    return absl::AbortedError("another migration of this instance is under way");
  }
  const v1::InstanceState state = instances_[request.instance()].status.observed_state();
  const auto connected = [&](const std::string& device) {
    auto found = devices_.find(device);
    return found != devices_.end() && found->second.session != nullptr;
  };
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

  const std::string id = random_hex(8);
  Migration& migration = migrations_[id];
  migration.id = id;
  migration.instance = request.instance();
  migration.source = source;
  migration.target = target;
  v1::MigrationReport report;
  report.set_source_device(source);
  report.set_target_device(target);
  const absl::Time started = absl::Now();
  auto wait_for = [&](auto done) {
    const absl::Time deadline = absl::Now() + step_limit;
    while (!done() && migration.phase != Migration::Phase::kFailed) {
      if (!connected(source) || !connected(target)) {
        migration.phase = Migration::Phase::kFailed;
        migration.error = "a device disconnected";
        break;
      }
      if (migration_changed_.WaitWithDeadline(&mutex_, deadline)) break;
    }
    return done();
  };
  // Any failure: the instance belongs to the source again and runs there; the target drops its
  // copy. The migration record stays (phase kFailed) for the error message.
  auto roll_back = [&](const std::string& step, absl::StatusCode code) -> absl::Status {
    const std::string why = migration.error.empty() ? "it did not finish in time" : migration.error;
    migration.phase = Migration::Phase::kFailed;
    absl::Status reverted = store_->transact([&](StoreTransaction& tx) -> absl::Status {
      absl::StatusOr<std::optional<v1::Object>> object =
          tx.get_object(v1::OBJECT_KIND_INSTANCE, migration.instance);
      if (!object.ok()) return object.status();
      if (!object->has_value()) return absl::OkStatus();
      (**object).mutable_instance()->mutable_spec()->set_device(source);
      return tx.put_object(**object);
    });
    instances_[migration.instance].device = source;
    if (reverted.ok()) reverted = replan_and_send({source, target});
    const std::string text = absl::StrCat(
        "migration of ", migration.instance, " failed at step '", step, "': ", why,
        reverted.ok()
            ? "; it runs on " + source + " again"
            : "; resuming it at the source failed too: " + std::string(reverted.message()));
    migrations_.erase(id);
    return absl::Status(code, text);
  };

  // 1. Hold the instance paused at the source and have the source snapshot and upload it.
  if (absl::Status held = replan_and_send({source}); !held.ok()) {
    migrations_.erase(id);
    return held;
  }
  v1::ControllerMessage command;
  command.mutable_snapshot()->set_instance_name(migration.instance);
  command.mutable_snapshot()->set_migration_id(id);
  devices_[source].session->send(std::move(command));
  if (!wait_for([&] { return migration.phase == Migration::Phase::kRestoring; })) {
    return roll_back("snapshot", migration.phase == Migration::Phase::kFailed
                                     ? absl::StatusCode::kFailedPrecondition
                                     : absl::StatusCode::kDeadlineExceeded);
  }
  const absl::Time snapshotted = absl::Now();
  *report.mutable_snapshot_time() =
      TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(snapshotted - started));
  absl::StatusOr<uint64_t> snapshot_size = blobs_->size(migration.snapshot_digest);
  report.set_snapshot_bytes(snapshot_size.ok() ? *snapshot_size : 0);
  report.set_snapshot_digest(migration.snapshot_digest);

  // 2. The instance now belongs to the target, which restores the snapshot and resumes it.
  absl::Status moved = store_->transact([&](StoreTransaction& tx) -> absl::Status {
    absl::StatusOr<std::optional<v1::Object>> object =
        tx.get_object(v1::OBJECT_KIND_INSTANCE, migration.instance);
    if (!object.ok()) return object.status();
    if (!object->has_value()) return absl::AbortedError("the instance was deleted meanwhile");
    v1::Instance* stored = (**object).mutable_instance();
    stored->mutable_spec()->set_device(target);
    stored->mutable_status()->set_migrated_from(source);
    return tx.put_object(**object);
  });
  if (!moved.ok()) {
    migration.error = std::string(moved.message());
    return roll_back("transfer", absl::StatusCode::kAborted);
  }
  InstanceRuntime& runtime = instances_[migration.instance];
  runtime.device = target;
  runtime.status.set_migrated_from(source);
  if (absl::Status sent = replan_and_send({source, target}); !sent.ok()) {
    migration.error = std::string(sent.message());
    return roll_back("transfer", absl::StatusCode::kAborted);
  }
  const absl::Time restore_requested = absl::Now();
  if (!wait_for([&] { return migration.target_running; })) {
    return roll_back("restore", migration.phase == Migration::Phase::kFailed
                                    ? absl::StatusCode::kFailedPrecondition
                                    : absl::StatusCode::kDeadlineExceeded);
  }
  const absl::Time resumed = absl::Now();
  *report.mutable_transfer_time() =
      TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(restore_requested - snapshotted));
  *report.mutable_restore_time() =
      TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(resumed - restore_requested));
  *report.mutable_downtime() =
      TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(resumed - started));

  // 3. Done: the source drops its paused copy, the target no longer needs the snapshot digest.
  migration.phase = Migration::Phase::kDone;
  absl::Status finished = replan_and_send({source, target});
  migrations_.erase(id);
  if (!finished.ok()) return finished;
  v1::MigrateResponse response;
  absl::Status read = store_->transact([&](StoreTransaction& tx) -> absl::Status {
    absl::StatusOr<std::optional<v1::Object>> object =
        tx.get_object(v1::OBJECT_KIND_INSTANCE, request.instance());
    if (!object.ok()) return object.status();
    if (object->has_value()) *response.mutable_instance() = (**object).instance();
    return absl::OkStatus();
  });
  if (!read.ok()) return read;
  fill_instance_status(response.mutable_instance());
  *response.mutable_report() = report;
  return response;
}

}  // namespace tenon::controller
