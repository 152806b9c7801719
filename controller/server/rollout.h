// The rollout engine's rules as pure functions, like the planner's: when a deployment gets a new
// revision, the order in which devices join waves, how many a wave has admitted, and the health
// gate's verdict on the devices updated so far. The controller (rollout_engine.cc) loads the
// inputs, calls these, stores the result in the deployment's status and replans.
//
// A deployment's status carries its rollout (fleet.proto, DeploymentStatus): the revision being
// rolled out, the one before it, the wave reached and when it started, the phase, and its last
// few revisions. It is stored with the deployment, so a restarted controller resumes the rollout
// where it stopped.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "tenon/v1/fleet.pb.h"

namespace tenon::controller {

// Revisions a deployment keeps (the current one, and the ones before it to roll back to).
inline constexpr size_t kRevisionsKept = 5;
// Rollout events a deployment keeps.
inline constexpr size_t kRolloutEventsKept = 20;

// Appends an event (the status's current revision and wave), dropping the oldest beyond
// kRolloutEventsKept.
void record_event(absl::Time now, const std::string& reason, const std::string& message,
                  tenon::v1::DeploymentStatus* status);

// "sha256:" over the spec (without its rollout policy) and the app spec: equal digests run the
// same instances.
std::string revision_digest(const tenon::v1::DeploymentSpec& spec, const tenon::v1::AppSpec& app);

// Whether the spec asks for staged rollouts (a rollout policy with anything set).
bool has_rollout_policy(const tenon::v1::DeploymentSpec& spec);

// The revision numbered `number` among the kept ones, or null.
const tenon::v1::DeploymentRevision* find_revision(const tenon::v1::DeploymentStatus& status,
                                                   uint64_t number);

// Records (spec, app) as the deployment's newest revision when they differ from the revision its
// instances are meant to run, and starts rolling it out: in waves when the spec has a rollout
// policy and an earlier revision exists (`matched_devices` sizes the waves), else at once. A
// failed rollout of it returns to the last revision that reached every device
// (status.previous_revision). When they equal a revision rolled back to, the rollback is settled
// (the phase is the roll-up's again). Returns whether the status changed.
bool start_revision(const tenon::v1::DeploymentSpec& spec, const tenon::v1::AppSpec& app,
                    size_t matched_devices, absl::Time now, tenon::v1::DeploymentStatus* status);

// Whether a staged rollout is running or stopped part way (PROGRESSING with waves, PAUSED or
// HALTED): devices outside its waves keep the previous revision.
bool rollout_restricts_devices(const tenon::v1::DeploymentStatus& status);

// The selected devices (name and labels) in the order they join waves: `canary: "true"` first,
// then by sha256(deployment "/" device), so the order is fixed for a deployment and device.
std::vector<std::string> wave_order(
    const std::string& deployment,
    const std::vector<
        std::pair<std::string, const google::protobuf::Map<std::string, std::string>*>>& devices);

// How many of `matched` devices in wave order the first `wave` of `waves` waves admit (the last
// wave all of them, whatever the policy became since the rollout started).
size_t admitted_count(uint32_t wave, uint32_t waves, size_t matched);

// One admitted device as the gate sees it: its instance of the deployment.
struct WaveMember {
  std::string device;
  bool on_revision = false;  // planned from the revision being rolled out
  // Its device is connected and reported RUNNING that revision's image since the instance was
  // last planned (an older report of the same image does not count).
  bool running = false;
  bool failed = false;  // reported FAULTED or CRASHED on that revision
  uint64_t jobs = 0;    // over the latest telemetry window
  uint64_t deadline_misses = 0;
};

struct RolloutDecision {
  enum class Kind { kWait, kNextWave, kComplete, kHalt, kRollBack };
  Kind kind = Kind::kWait;
  std::string message;  // one line: what the rollout waits for, or the gate's figures
};

// The next step of a PROGRESSING staged rollout, from its admitted devices.
RolloutDecision decide_rollout(const tenon::v1::RolloutPolicy& policy,
                               const tenon::v1::DeploymentStatus& status, absl::Time now,
                               const std::vector<WaveMember>& admitted);

// An operator's action on the rollout (fleet.proto, ControlRollout), written into the status.
// INVALID_ARGUMENT or FAILED_PRECONDITION, the status untouched, when it is not legal now.
absl::Status apply_control(const tenon::v1::ControlRolloutRequest& request, absl::Time now,
                           tenon::v1::DeploymentStatus* status);

// Writes `decision` into the status (the next wave, COMPLETE, HALTED, or ROLLED_BACK with the
// previous revision current again). Waiting changes only the message.
void apply_decision(const RolloutDecision& decision, absl::Time now,
                    tenon::v1::DeploymentStatus* status);

}  // namespace tenon::controller
