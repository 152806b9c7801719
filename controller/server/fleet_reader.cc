// See fleet_reader.h.
#include "fleet_reader.h"

#include <algorithm>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "object_meta.h"
#include "planner.h"
#include "time/proto_time.h"

namespace tenon::controller {

namespace v1 = tenon::v1;

namespace {

// A list or watch selector: unset or empty selects everything (unlike a deployment's).
bool list_selects(const v1::LabelSelector& selector, const v1::Object& object) {
  if (selector.match_labels().empty() && selector.match_expressions().empty()) return true;
  return selector_matches(selector, object_meta(object).labels());
}

std::string lowercase_suffix(const std::string& name, const std::string& prefix) {
  std::string label = name.substr(prefix.size());
  std::transform(label.begin(), label.end(), label.begin(), ::tolower);
  return label;
}

}  // namespace

absl::StatusOr<v1::Object> FleetReader::get(const v1::GetRequest& request) const {
  if (request.kind() == v1::OBJECT_KIND_UNSPECIFIED || request.name().empty()) {
    return absl::InvalidArgumentError("Get needs a kind and a name");
  }
  CachedObject object = cache_->get(request.kind(), request.name());
  if (object == nullptr) {
    return absl::NotFoundError(
        absl::StrCat(kind_name(request.kind()), " ", request.name(), " not found"));
  }
  return with_status(*object);
}

absl::StatusOr<v1::ListResponse> FleetReader::list(const v1::ListRequest& request) const {
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
  auto keep = [&](const v1::Object& object) {
    if (!list_selects(request.selector(), object)) return false;
    if (!request.device().empty() && object.instance().spec().device() != request.device()) {
      return false;
    }
    return request.deployment().empty() ||
           object.instance().spec().deployment() == request.deployment();
  };
  bool more = false;
  uint64_t version = 0;
  const std::vector<CachedObject> page =
      cache_->list(request.kind(), after, page_size, keep, &more, &version);
  v1::ListResponse response;
  response.set_resource_version(version);
  for (const CachedObject& object : page) *response.add_objects() = with_status(*object);
  if (more && !page.empty()) {
    response.set_next_page_token(absl::StrCat(token_prefix, object_meta(*page.back()).name()));
  }
  return response;
}

absl::StatusOr<WatchBatch> FleetReader::watch(const v1::WatchRequest& request,
                                              absl::Duration wait) const {
  if (request.kind() == v1::OBJECT_KIND_UNSPECIFIED) {
    return absl::InvalidArgumentError("Watch needs a kind");
  }
  WatchBatch batch;
  const uint64_t after =
      request.resource_version() != 0 ? request.resource_version() : cache_->resource_version();
  absl::StatusOr<std::vector<CacheEvent>> events =
      cache_->events_after(request.kind(), after, absl::Now() + wait, &batch.resource_version);
  if (!events.ok()) return events.status();
  for (const CacheEvent& event : *events) {
    if (!list_selects(request.selector(), *event.object)) continue;
    v1::WatchEvent& out = batch.events.emplace_back();
    switch (event.type) {
      case CacheEvent::Type::kAdded:
        out.set_type(v1::WatchEvent::TYPE_ADDED);
        break;
      case CacheEvent::Type::kModified:
        out.set_type(v1::WatchEvent::TYPE_MODIFIED);
        break;
      case CacheEvent::Type::kDeleted:
        out.set_type(v1::WatchEvent::TYPE_DELETED);
        break;
    }
    *out.mutable_object() = *event.object;
    out.set_resource_version(event.resource_version);
  }
  return batch;
}

std::vector<FleetReader::Observed> FleetReader::observe(
    const std::vector<CachedObject>& instances) const {
  std::vector<std::string> names, devices;
  names.reserve(instances.size());
  devices.reserve(instances.size());
  for (const CachedObject& object : instances) {
    names.push_back(object->instance().metadata().name());
    devices.push_back(object->instance().spec().device());
  }
  // What the agents reported, and which devices are connected: each part's lock taken once.
  std::vector<std::optional<ReportedState::Summary>> reported = reported_->summaries(names);
  const std::vector<bool> connected = sessions_->connected(devices);
  std::vector<Observed> observed(instances.size());
  for (size_t i = 0; i < instances.size(); ++i) {
    const v1::InstanceStatus& stored = instances[i]->instance().status();
    if (reported[i].has_value()) {
      observed[i].state = reported[i]->state;
      observed[i].image_digest = std::move(reported[i]->image_digest);
    } else {
      observed[i].state = stored.observed_state();
      observed[i].image_digest = stored.image_digest();
    }
    if (!connected[i]) observed[i].state = v1::INSTANCE_STATE_UNKNOWN;
  }
  return observed;
}

ControllerSnapshot FleetReader::snapshot() const {
  ControllerSnapshot snapshot;
  // Counted without copying objects, each part's lock taken once per scrape.
  const std::vector<CachedObject> devices = cache_->all(v1::OBJECT_KIND_DEVICE);
  std::vector<std::string> device_names;
  device_names.reserve(devices.size());
  for (const CachedObject& object : devices)
    device_names.push_back(object->device().metadata().name());
  const std::vector<bool> devices_connected = sessions_->connected(device_names);
  for (size_t i = 0; i < devices.size(); ++i) {
    v1::ConnectionState state = devices[i]->device().status().connection_state();
    if (devices_connected[i]) {
      state = v1::CONNECTION_STATE_CONNECTED;
    } else if (state != v1::CONNECTION_STATE_NOT_ENROLLED) {
      state = v1::CONNECTION_STATE_DISCONNECTED;
    }
    ++snapshot
          .devices_by_state[lowercase_suffix(v1::ConnectionState_Name(state), "CONNECTION_STATE_")];
  }
  const std::vector<CachedObject> instances = cache_->all(v1::OBJECT_KIND_INSTANCE);
  const std::vector<Observed> observed = observe(instances);
  for (size_t i = 0; i < instances.size(); ++i) {
    const v1::Instance& instance = instances[i]->instance();
    ++snapshot.instances_by_state[lowercase_suffix(v1::InstanceState_Name(observed[i].state),
                                                   "INSTANCE_STATE_")];
    snapshot.instance_devices.emplace(instance.metadata().name(), instance.spec().device());
  }
  snapshot.telemetry = reported_->telemetry();
  for (const CachedObject& object : cache_->all(v1::OBJECT_KIND_DEPLOYMENT)) {
    v1::Deployment deployment = object->deployment();
    fill_deployment_status(&deployment);  // from the roll-up cache while nothing changed
    const v1::DeploymentStatus& status = deployment.status();
    snapshot.rollouts.push_back(ControllerSnapshot::Rollout{deployment.metadata().name(),
                                                            status.phase(), status.revision(),
                                                            status.wave(), status.waves()});
  }
  return snapshot;
}

void FleetReader::set_plan_errors(
    const std::map<std::string, std::map<std::string, std::string>>& errors_by_device) {
  absl::MutexLock lock(&plan_errors_mutex_);
  ++plan_errors_version_;
  for (auto it = plan_errors_.begin(); it != plan_errors_.end();) {
    for (const auto& [device, errors] : errors_by_device) it->second.erase(device);
    it = it->second.empty() ? plan_errors_.erase(it) : std::next(it);
  }
  for (const auto& [device, errors] : errors_by_device) {
    for (const auto& [deployment, error] : errors) plan_errors_[deployment][device] = error;
  }
}

v1::Object FleetReader::with_status(const v1::Object& stored) const {
  v1::Object object = stored;
  if (object.has_device()) fill_device_status(object.mutable_device());
  if (object.has_instance()) fill_instance_status(object.mutable_instance());
  if (object.has_deployment()) fill_deployment_status(object.mutable_deployment());
  return object;
}

void FleetReader::fill_device_status(v1::Device* device) const {
  v1::DeviceStatus* status = device->mutable_status();
  if (std::optional<DeviceConnection> connection =
          sessions_->connection(device->metadata().name())) {
    if (connection->last_seen != absl::InfinitePast()) {
      *status->mutable_last_seen() = time::to_proto(connection->last_seen);
    }
    status->set_acknowledged_desired_state_version(connection->acknowledged_version);
    if (connection->connected) {
      status->set_connection_state(v1::CONNECTION_STATE_CONNECTED);
      return;
    }
  }
  if (status->connection_state() != v1::CONNECTION_STATE_NOT_ENROLLED) {
    status->set_connection_state(v1::CONNECTION_STATE_DISCONNECTED);
  }
}

void FleetReader::fill_instance_status(v1::Instance* instance) const {
  reported_->overlay(instance);
  if (!sessions_->connected(instance->spec().device())) {
    instance->mutable_status()->set_observed_state(v1::INSTANCE_STATE_UNKNOWN);
  }
}

void FleetReader::fill_deployment_status(v1::Deployment* deployment) const {
  Rollup key;
  key.cache_version = cache_->resource_version();
  key.deployment_version = deployment->metadata().resource_version();
  key.reported_version = reported_->version();
  key.sessions_version = sessions_->version();
  key.plan_errors_version = plan_errors_version_.load();
  const absl::Time now = absl::Now();
  const std::string& name = deployment->metadata().name();
  {
    absl::MutexLock lock(&rollups_mutex_);
    auto found = rollups_.find(name);
    if (found != rollups_.end()) {
      const Rollup& cached = found->second;
      const bool unchanged = cached.cache_version == key.cache_version &&
                             cached.reported_version == key.reported_version &&
                             cached.sessions_version == key.sessions_version &&
                             cached.plan_errors_version == key.plan_errors_version;
      if (cached.deployment_version == key.deployment_version &&
          (unchanged || now - cached.computed < kRollupMaxAge)) {
        *deployment->mutable_status() = cached.status;
        return;
      }
    }
  }
  key.computed = now;
  key.status = roll_up(*deployment);
  *deployment->mutable_status() = key.status;
  absl::MutexLock lock(&rollups_mutex_);
  rollups_[name] = std::move(key);
  // Roll-ups of deleted deployments go when they would outnumber the living ones.
  if (rollups_.size() > 2 * cache_->count(v1::OBJECT_KIND_DEPLOYMENT) + 8) {
    std::erase_if(rollups_, [&](const auto& entry) {
      return cache_->get(v1::OBJECT_KIND_DEPLOYMENT, entry.first) == nullptr;
    });
  }
}

v1::DeploymentStatus FleetReader::roll_up(const v1::Deployment& deployment_object) const {
  // The rollout engine's part (revisions, wave, a stopped rollout's phase and reason) is stored
  // with the deployment; the counts are the devices' and are computed here.
  v1::DeploymentStatus rolled_up = deployment_object.status();
  v1::DeploymentStatus* status = &rolled_up;
  const v1::Deployment* deployment = &deployment_object;
  const uint64_t revision = status->revision();
  const std::string& name = deployment->metadata().name();
  status->set_observed_generation(deployment->metadata().generation());
  const uint32_t matched = cache_->count_devices([&](const v1::Device& device) {
    return selector_matches(deployment->spec().selector(), device.metadata().labels());
  });
  status->set_matched_devices(matched);
  std::set<std::string> compositions;
  uint32_t running = 0, updated = 0, failed = 0;
  const std::vector<CachedObject> instances = cache_->instances_of(name);
  const std::vector<Observed> observed = observe(instances);
  for (size_t i = 0; i < instances.size(); ++i) {
    const v1::Instance& instance = instances[i]->instance();
    compositions.insert(instance.spec().composition());
    const v1::InstanceState state = observed[i].state;
    if (state == v1::INSTANCE_STATE_RUNNING) ++running;
    if (state == v1::INSTANCE_STATE_FAULTED || state == v1::INSTANCE_STATE_CRASHED) ++failed;
    // Updated: it runs what the deployment's current revision (or, for deployments made
    // before revisions were kept, its current generation) says.
    const bool current = revision != 0 ? instance.spec().revision() == revision
                                       : instance.spec().deployment_generation() ==
                                             deployment->metadata().generation();
    if (observed[i].image_digest == instance.spec().image_digest() && current) ++updated;
  }
  status->set_running_instances(running);
  status->set_updated_instances(updated);
  status->set_failed_instances(failed);
  for (const std::string& composition : compositions) status->add_compositions(composition);
  std::vector<std::string> problems;
  {
    absl::MutexLock lock(&plan_errors_mutex_);
    if (auto errors = plan_errors_.find(name); errors != plan_errors_.end()) {
      for (const auto& [device, error] : errors->second) {
        problems.push_back(absl::StrCat(device, ": ", error));
      }
    }
  }
  const v1::RolloutPhase stored_phase = status->phase();
  const bool stopped = stored_phase == v1::ROLLOUT_PHASE_HALTED ||
                       stored_phase == v1::ROLLOUT_PHASE_PAUSED ||
                       stored_phase == v1::ROLLOUT_PHASE_ROLLED_BACK;
  const bool in_waves = stored_phase == v1::ROLLOUT_PHASE_PROGRESSING && status->wave() > 0;
  if (stopped || in_waves) {
    // The engine's phase and its reason stand; plan errors come after it.
    if (!problems.empty()) {
      status->set_message(absl::StrCat(status->message(), "; ", absl::StrJoin(problems, "; ")));
    }
  } else {
    const bool complete = problems.empty() && running == matched && updated == matched;
    status->set_phase(complete ? v1::ROLLOUT_PHASE_COMPLETE : v1::ROLLOUT_PHASE_PROGRESSING);
    status->set_message(problems.empty()
                            ? absl::StrFormat("%d of %d matched devices run the current revision",
                                              std::min(running, updated), matched)
                            : absl::StrJoin(problems, "; "));
  }
  *status->mutable_update_time() = time::to_proto(absl::Now());
  return rolled_up;
}

}  // namespace tenon::controller
