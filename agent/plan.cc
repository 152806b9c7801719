// See plan.h. The rules, per desired instance:
//   - no VM of its name: fetch the image if it is not held, else create it (unless a restart is
//     scheduled for later);
//   - a VM of its name that is not this instance (another uid, another image): replace it, but
//     only once the new image is held, so the old one runs until the new one can start;
//   - its VM: start it, pause or resume it as desired; a terminal VM is reported once and
//     restarted per restart policy after a growing delay.
// Every VM whose name is not desired is destroyed; records of instances that are gone are dropped.
#include "plan.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "backoff.h"
#include "crypto/sha256.h"
#include "time/proto_time.h"

namespace tenon::agent {
namespace {

using tenon::v1::DesiredInstance;
using tenon::v1::DesiredState;
using tenon::v1::ExitKind;
using tenon::v1::InstanceState;
using tenon::v1::RestartPolicy;
using tenon::v1::Vm;
using tenon::v1::VmState;

constexpr uint64_t kMaxImageBytes = 64ull << 20;

bool wants_paused(const DesiredInstance& desired) {
  return desired.state() == tenon::v1::DESIRED_INSTANCE_STATE_PAUSED;
}


bool valid_vm_name(const std::string& name) {
  if (name.empty() || name.size() > 63) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

std::string policy_name(RestartPolicy policy) {
  switch (policy) {
    case tenon::v1::RESTART_POLICY_NEVER:
      return "NEVER";
    case tenon::v1::RESTART_POLICY_ALWAYS:
      return "ALWAYS";
    default:
      return "ON_FAILURE";
  }
}

}  // namespace

bool is_terminal(VmState state) {
  return state == tenon::v1::VM_STATE_EXITED || state == tenon::v1::VM_STATE_FAULTED ||
         state == tenon::v1::VM_STATE_CRASHED;
}

InstanceState instance_state_of(VmState state) {
  switch (state) {
    case tenon::v1::VM_STATE_CREATED:
      return tenon::v1::INSTANCE_STATE_CREATED;
    case tenon::v1::VM_STATE_RUNNING:
      return tenon::v1::INSTANCE_STATE_RUNNING;
    case tenon::v1::VM_STATE_PAUSED:
      return tenon::v1::INSTANCE_STATE_PAUSED;
    case tenon::v1::VM_STATE_EXITED:
      return tenon::v1::INSTANCE_STATE_EXITED;
    case tenon::v1::VM_STATE_FAULTED:
      return tenon::v1::INSTANCE_STATE_FAULTED;
    case tenon::v1::VM_STATE_CRASHED:
      return tenon::v1::INSTANCE_STATE_CRASHED;
    default:
      return tenon::v1::INSTANCE_STATE_UNSPECIFIED;
  }
}

bool restart_wanted(RestartPolicy policy, const Vm& vm) {
  if (policy == tenon::v1::RESTART_POLICY_NEVER) return false;
  if (policy == tenon::v1::RESTART_POLICY_ALWAYS) return true;
  // ON_FAILURE (and UNSPECIFIED): a fault, panic, violation or crash, or an exit with a failure
  // status; not a clean exit, a time limit that ran out, or a stop someone asked for.
  if (vm.state() == tenon::v1::VM_STATE_FAULTED || vm.state() == tenon::v1::VM_STATE_CRASHED) {
    return true;
  }
  switch (vm.exit_reason().kind()) {
    case tenon::v1::EXIT_KIND_GUEST_EXIT:
      return vm.exit_reason().status() != 0;
    case tenon::v1::EXIT_KIND_GUEST_FAULT:
    case tenon::v1::EXIT_KIND_GUEST_PANIC:
    case tenon::v1::EXIT_KIND_VIOLATION:
    case tenon::v1::EXIT_KIND_VMM_CRASHED:
    case tenon::v1::EXIT_KIND_HYPERVISOR_ERROR:
      return true;
    default:
      return false;
  }
}

absl::Status validate_desired_state(const DesiredState& desired, uint32_t realtime_cores) {
  std::set<std::string> names;
  uint32_t dedicated = 0;
  for (const DesiredInstance& instance : desired.instances()) {
    const std::string& name = instance.name();
    if (!valid_vm_name(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("instance name \"", name, "\" is not 1-63 characters of [a-z0-9-]"));
    }
    if (!names.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat("instance \"", name, "\" is listed twice"));
    }
    if (absl::Status digest = crypto::digest_hex(instance.image_digest()).status(); !digest.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("instance \"", name, "\": ", digest.message()));
    }
    if (instance.image_size_bytes() > kMaxImageBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("instance \"", name, "\": image of ", instance.image_size_bytes(),
                       " bytes exceeds the agent's limit of ", kMaxImageBytes, " bytes"));
    }
    const uint64_t memory = instance.placement().memory_bytes();
    if (memory == 0 || memory % 4096 != 0) {
      return absl::InvalidArgumentError(absl::StrCat("instance \"", name,
                                                     "\": placement.memory_bytes ", memory,
                                                     " is not a positive multiple of 4096"));
    }
    if (instance.placement().rt_priority() > 99) {
      return absl::InvalidArgumentError(absl::StrCat("instance \"", name, "\": rt_priority ",
                                                     instance.placement().rt_priority(),
                                                     " is above 99"));
    }
    if (!instance.restore_snapshot_digest().empty()) {
      if (absl::Status digest = crypto::digest_hex(instance.restore_snapshot_digest()).status();
          !digest.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("instance \"", name, "\": restore_snapshot_digest: ", digest.message()));
      }
    }
    if (instance.placement().dedicated_core()) ++dedicated;
  }
  if (dedicated > realtime_cores) {
    return absl::ResourceExhaustedError(
        absl::StrCat(dedicated, " instances ask for a dedicated core but the device has ",
                     realtime_cores, " real-time core", realtime_cores == 1 ? "" : "s"));
  }
  return absl::OkStatus();
}

std::vector<Action> plan(const PlanInput& input) {
  std::vector<Action> destroys;
  std::vector<Action> actions;
  std::set<std::string> desired_names;
  if (input.desired != nullptr) {
    for (const DesiredInstance& desired : input.desired->instances()) {
      desired_names.insert(desired.name());
    }
  }

  if (input.desired != nullptr) {
    for (const DesiredInstance& desired : input.desired->instances()) {
      const std::string& name = desired.name();
      const auto vm_entry = input.vms.find(name);
      const auto record_entry = input.records.find(name);
      const InstanceRecord* record =
          record_entry == input.records.end() ? nullptr : &record_entry->second;
      const bool held = input.images_held.contains(desired.image_digest());
      const bool same_instance = record != nullptr && record->instance_uid == desired.uid();

      if (vm_entry == input.vms.end()) {
        // Migrating in: the instance is created from the snapshot, not booted from its image.
        if (!desired.restore_snapshot_digest().empty() && !same_instance) {
          const std::string& snapshot = desired.restore_snapshot_digest();
          actions.push_back({.kind = input.images_held.contains(snapshot) ? ActionKind::kRestore
                                                                          : ActionKind::kFetchImage,
                             .name = name,
                             .image_digest = snapshot,
                             .reason = "migrating in"});
          continue;
        }
        if (!held) {
          actions.push_back({.kind = ActionKind::kFetchImage,
                             .name = name,
                             .image_digest = desired.image_digest(),
                             .reason = "image not held"});
          continue;
        }
        if (same_instance && record->restart_at.has_value() && *record->restart_at > input.now) {
          continue;  // a restart is scheduled; its time has not come
        }
        actions.push_back({.kind = ActionKind::kCreate,
                           .name = name,
                           .image_digest = desired.image_digest(),
                           .reason = same_instance && !record->vm_uid.empty()
                                         ? "its VM is gone from mortised"
                                         : "desired and not running",
                           .counts_as_restart = same_instance && !record->vm_uid.empty()});
        continue;
      }

      const Vm& vm = vm_entry->second;
      const bool same_image = vm.image_digest() == desired.image_digest();
      if (record == nullptr && same_image) {
        // A VM of the right name and image the records do not know (the agent stopped between
        // Create and recording it, or lost its database): take it over rather than restart it.
        actions.push_back({.kind = ActionKind::kAdopt, .name = name, .reason = "unrecorded VM"});
        continue;
      }
      if (!same_instance || !same_image) {
        const std::string why = !same_instance
                                    ? absl::StrCat("replaced by uid ", desired.uid())
                                    : absl::StrCat("replaced by image ", desired.image_digest());
        if (!held) {
          actions.push_back({.kind = ActionKind::kFetchImage,
                             .name = name,
                             .image_digest = desired.image_digest(),
                             .reason = why});
        } else {
          destroys.push_back({.kind = ActionKind::kDestroy, .name = name, .reason = why});
        }
        continue;
      }
      if (record->vm_uid != vm.uid()) {
        actions.push_back(
            {.kind = ActionKind::kAdopt, .name = name, .reason = "VM uid not recorded"});
        continue;
      }
      switch (vm.state()) {
        case tenon::v1::VM_STATE_CREATED:
          actions.push_back({.kind = ActionKind::kStart, .name = name, .reason = "created"});
          break;
        case tenon::v1::VM_STATE_RUNNING:
          if (wants_paused(desired)) {
            actions.push_back(
                {.kind = ActionKind::kPause, .name = name, .reason = "desired paused"});
          }
          break;
        case tenon::v1::VM_STATE_PAUSED:
          if (!wants_paused(desired)) {
            actions.push_back(
                {.kind = ActionKind::kResume, .name = name, .reason = "desired running"});
          }
          break;
        case tenon::v1::VM_STATE_EXITED:
        case tenon::v1::VM_STATE_FAULTED:
        case tenon::v1::VM_STATE_CRASHED: {
          if (record->exit_handled_vm_uid != vm.uid()) {
            Action action{.kind = ActionKind::kHandleExit, .name = name, .reason = "ended"};
            if (restart_wanted(desired.restart_policy(), vm)) {
              bool ran_long = false;
              if (vm.has_start_time() && vm.exit_reason().has_time()) {
                absl::StatusOr<absl::Time> started = time::from_proto(vm.start_time(), "start_time");
                absl::StatusOr<absl::Time> ended =
                    time::from_proto(vm.exit_reason().time(), "exit_reason.time");
                // Times mortised cannot have written count as a short run.
                ran_long = started.ok() && ended.ok() && *ended - *started >= input.healthy_run;
              }
              action.consecutive_failures = ran_long ? 0 : record->consecutive_failures;
              action.restart_at = input.now + capped_exponential(input.restart_backoff_base,
                                                                 input.restart_backoff_max,
                                                                 action.consecutive_failures);
            } else {
              action.consecutive_failures = record->consecutive_failures;
            }
            actions.push_back(action);
          } else if (record->restart_at.has_value() && *record->restart_at <= input.now) {
            actions.push_back({.kind = ActionKind::kRestart,
                               .name = name,
                               .image_digest = desired.image_digest(),
                               .reason = "restart policy"});
          }
          break;
        }
        default:
          break;
      }
    }

    for (const auto& [name, vm] : input.vms) {
      if (!desired_names.contains(name)) {
        destroys.push_back(
            {.kind = ActionKind::kDestroy,
             .name = name,
             .reason = absl::StrCat("not in desired state version ", input.desired->version())});
      }
    }
  }
  // Without a stored desired state the agent has had no instructions yet and touches no VM; it
  // still drops records of instances that are neither desired nor running.
  for (const auto& [name, record] : input.records) {
    if (!desired_names.contains(name) && !input.vms.contains(name)) {
      actions.push_back({.kind = ActionKind::kForget, .name = name, .reason = "gone"});
    }
  }
  // Destroy first: it frees memory and cores the creates may need.
  destroys.insert(destroys.end(), actions.begin(), actions.end());
  return destroys;
}

tenon::v1::InstanceStatusUpdate status_of(const DesiredInstance& desired, const Vm* vm,
                                          const InstanceRecord* record,
                                          uint64_t desired_state_version, const std::string& note) {
  tenon::v1::InstanceStatusUpdate status;
  status.set_instance_name(desired.name());
  status.set_instance_uid(desired.uid());
  status.set_desired_state_version(desired_state_version);
  status.set_image_digest(desired.image_digest());
  const bool same_instance = record != nullptr && record->instance_uid == desired.uid();
  if (same_instance) {
    status.set_restart_count(record->restart_count);
    if (record->last_exit.has_value()) *status.mutable_exit_reason() = *record->last_exit;
  }
  const bool owned = vm != nullptr && same_instance && vm->image_digest() == desired.image_digest();
  if (owned) {
    status.set_state(instance_state_of(vm->state()));
    if (is_terminal(vm->state())) {
      *status.mutable_exit_reason() = vm->exit_reason();
      if (record->exit_handled_vm_uid == vm->uid()) {
        if (record->restart_at.has_value()) {
          status.set_message(absl::StrCat(
              "restart at ",
              absl::FormatTime("%H:%M:%E3SZ", *record->restart_at, absl::UTCTimeZone())));
        } else {
          status.set_message(absl::StrCat("not restarted (restart policy ",
                                          policy_name(desired.restart_policy()), ")"));
        }
      }
    }
  } else {
    status.set_state(tenon::v1::INSTANCE_STATE_PENDING);
    if (vm != nullptr) status.set_message("replacing the previous instance of this name");
  }
  if (!note.empty()) status.set_message(note);
  return status;
}

tenon::v1::CreateVmRequest create_request_of(const DesiredInstance& desired) {
  tenon::v1::CreateVmRequest request;
  request.set_name(desired.name());
  request.set_image_digest(desired.image_digest());
  request.set_memory_bytes(desired.placement().memory_bytes());
  tenon::v1::CpuRequest* cpu = request.mutable_cpu();
  if (desired.placement().dedicated_core()) {
    cpu->set_policy(tenon::v1::CPU_POLICY_DEDICATED);
  } else if (desired.placement().rt_priority() > 0) {
    cpu->set_policy(tenon::v1::CPU_POLICY_REALTIME);
  } else {
    cpu->set_policy(tenon::v1::CPU_POLICY_ANYWHERE);
  }
  cpu->set_rt_priority(desired.placement().rt_priority());
  request.set_stack_bytes(desired.runtime().stack_bytes());
  const google::protobuf::Duration& run_time = desired.runtime().app_run_time();
  if (run_time.seconds() != 0 || run_time.nanos() != 0) {
    *request.mutable_app_run_time() = run_time;
  }
  *request.mutable_channels() = desired.channels();
  return request;
}

}  // namespace tenon::agent
