// The reconcile decisions of the agent as pure functions: given the desired state, the VMs mortised
// reports and what the agent recorded about each instance, which actions bring the device closer
// to the desired state. No I/O here, so every rule is unit-tested without gRPC or KVM; the agent
// (agent.cc) performs the actions and observes again.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "tenon/v1/agent.pb.h"
#include "tenon/v1/mortise.pb.h"

namespace tenon::agent {

// What the agent keeps (in agent.db) about each instance it runs, by instance name.
struct InstanceRecord {
  std::string name;
  std::string instance_uid;  // the fleet uid the VM was created for
  std::string vm_uid;        // mortised's uid of that VM (new for every Create)
  std::string image_digest;
  uint32_t restart_count = 0;
  // Restarts since the instance last ran for long; the exponent of the restart backoff.
  uint32_t consecutive_failures = 0;
  std::optional<tenon::v1::ExitReason> last_exit;
  // The terminal VM whose exit has been reported and decided on (so it is decided once).
  std::string exit_handled_vm_uid;
  // Set while a restart is scheduled.
  std::optional<absl::Time> restart_at;
};

enum class ActionKind {
  kFetchImage,  // image_digest is not held: ask the controller for it
  kCreate,      // create the VM of the desired instance `name`, then (next pass) start it
  kStart,
  kPause,
  kResume,
  kDestroy,     // a VM that must go: not desired, or replaced by a new uid or image
  kAdopt,       // a VM of the desired instance the record does not name yet: record its uid
  kHandleExit,  // a terminal VM seen for the first time: record the exit, schedule a restart
  kRestart,     // the scheduled restart is due: destroy the terminal VM and create it again
  kForget,      // a record of an instance neither desired nor running
  kRestore,     // create the VM of a migrating-in instance from its snapshot (image_digest)
};

struct Action {
  ActionKind kind;
  std::string name;
  std::string image_digest;  // kFetchImage, kCreate, kRestart
  std::string reason;        // one line for the log
  // kHandleExit: when to restart (unset: not restarted) and the new failure count.
  std::optional<absl::Time> restart_at;
  uint32_t consecutive_failures = 0;
  // kCreate: the instance had a VM that vanished (mortised restarted): count it as a restart.
  bool counts_as_restart = false;
};

struct PlanInput {
  const tenon::v1::DesiredState* desired = nullptr;  // nullptr: nothing stored yet
  std::map<std::string, tenon::v1::Vm> vms;          // by VM name
  std::map<std::string, InstanceRecord> records;     // by instance name
  std::set<std::string> images_held;                 // digests
  absl::Time now;
  absl::Duration restart_backoff_base = absl::Seconds(1);
  absl::Duration restart_backoff_max = absl::Seconds(30);
  // A VM that ran at least this long before it ended starts its backoff from the base again.
  absl::Duration healthy_run = absl::Seconds(60);
};

std::vector<Action> plan(const PlanInput& input);

// Whether the restart policy restarts an instance whose VM ended like `vm` did.
bool restart_wanted(tenon::v1::RestartPolicy policy, const tenon::v1::Vm& vm);

// Checks a desired state before it is accepted: names unique and valid for mortised, digests
// well formed, memory set, and no more dedicated cores than the device's real-time cores.
absl::Status validate_desired_state(const tenon::v1::DesiredState& desired,
                                    uint32_t realtime_cores);

tenon::v1::InstanceState instance_state_of(tenon::v1::VmState state);
bool is_terminal(tenon::v1::VmState state);

// The status to report for a desired instance, from the VM that implements it (or none), the
// record, and a note from the agent (image transfer progress, the last failed action). `time` is
// left unset: callers compare statuses without it and stamp it when they send.
tenon::v1::InstanceStatusUpdate status_of(const tenon::v1::DesiredInstance& desired,
                                          const tenon::v1::Vm* vm, const InstanceRecord* record,
                                          uint64_t desired_state_version, const std::string& note);

// The mortise CreateVmRequest for a desired instance, without the image.
tenon::v1::CreateVmRequest create_request_of(const tenon::v1::DesiredInstance& desired);

}  // namespace tenon::agent
