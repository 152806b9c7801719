// The planner: pure functions from a fleet view to what each device must run. No locks, no
// store, no sessions: the caller loads the inputs, calls these, and performs the result (see
// controller.cc's replan). Composition goes through an injected function (FleetComposer's
// cache in the daemon), so every rule here is testable without linking images.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "fleet_composer.h"
#include "tenon/v1/agent.pb.h"
#include "tenon/v1/fleet.pb.h"

namespace tenon::controller {

// The objects a plan reads: the store's, overlaid with a request's.
struct FleetView {
  std::map<std::string, tenon::v1::Device> devices;
  std::map<std::string, tenon::v1::App> apps;
  std::map<std::string, tenon::v1::Deployment> deployments;
};

struct PlannedInstance {
  tenon::v1::DesiredInstance desired;  // uid unset
  tenon::v1::InstanceSpec spec;
  // Null for an instance kept as it is (migrated).
  std::shared_ptr<const tenon::v1::Composition> composition;
};

struct DevicePlan {
  std::vector<PlannedInstance> instances;
  std::map<std::string, std::string> errors;  // deployment -> why it cannot run here
};

// What the planner needs to know of a migration under way.
struct MigrationInProgress {
  std::string instance;
  std::string source;
  std::string target;
  std::string snapshot_digest;  // set once the snapshot is uploaded
};

// The stored instances a replan may keep, by name, and for each device the names of the ones
// that concern it (it runs them, or they are migrating away from it): indexed once per replan,
// so that planning a device costs what concerns that device, not the whole fleet.
struct ExistingInstances {
  const std::map<std::string, tenon::v1::Instance>* by_name = nullptr;  // borrowed
  std::map<std::string, std::vector<std::string>> by_device;
};

using ComposeFunction = std::function<absl::StatusOr<ComposedApp>(
    const std::string& app_name, const tenon::v1::AppSpec& app,
    const tenon::v1::DeviceProfile& profile, const tenon::v1::Placement& placement)>;
using ImageSizeFunction = std::function<uint64_t(const std::string& digest)>;

// What a deployment's instances are to run (the rollout engine's part of a plan): a revision's
// spec and app, and while a staged rollout runs or is halted, the devices its waves have reached.
struct RevisionPlan {
  uint64_t revision = 0;  // stamped into InstanceSpec.revision
  tenon::v1::DeploymentSpec spec;
  tenon::v1::AppSpec app;
  // Set while waves restrict the rollout: a device outside keeps the instance it runs, as it is;
  // a device that runs none gets this revision.
  std::shared_ptr<const std::set<std::string>> admitted;
};

struct PlannerInputs {
  const FleetView* view = nullptr;
  const std::vector<MigrationInProgress>* migrations = nullptr;
  // By deployment; a deployment without one runs its stored spec and app (revision 0).
  const std::map<std::string, RevisionPlan>* revisions = nullptr;
  // Apply's check: compose each revision also for devices its waves have not reached, so that a
  // revision that cannot run on one of them is refused now, not when its wave comes.
  bool check_unreached = false;
  ComposeFunction compose;
  ImageSizeFunction image_size;
};

ExistingInstances index_existing(const std::map<std::string, tenon::v1::Instance>& instances,
                                 const std::vector<MigrationInProgress>& migrations);

// What `device` must run. With `existing`, instances that migrated stay where they went; each
// existing instance looked at adds one to *examined (the planner's work, which must grow with
// the fleet, not with its square).
DevicePlan plan_device(const PlannerInputs& inputs, const tenon::v1::Device& device,
                       const ExistingInstances* existing, uint64_t* examined);

// Whether an instance may keep its uid: the device runs the same thing.
bool same_instance(const tenon::v1::InstanceSpec& stored, const tenon::v1::InstanceSpec& planned);

// Whether a device with these labels is selected (an empty selector selects none).
bool selector_matches(const tenon::v1::LabelSelector& selector,
                      const google::protobuf::Map<std::string, std::string>& labels);
// "<deployment>-" and 12 hex digits of sha256(deployment "/" device).
std::string instance_name(const std::string& deployment, const std::string& device);
bool is_enrolled(const tenon::v1::Device& device);
// A desired state without its version and time, for "did anything change".
std::string desired_content(const tenon::v1::DesiredState& state);

}  // namespace tenon::controller
