// The agent's reconcile rules (agent/plan.h), without gRPC or KVM.
#include "plan.h"

#include <gtest/gtest.h>

#include "crypto/sha256.h"

namespace tenon::agent {
namespace {

using tenon::v1::DesiredInstance;
using tenon::v1::DesiredState;
using tenon::v1::Vm;

const std::string kImage = crypto::sha256_digest("image one");
const std::string kOtherImage = crypto::sha256_digest("image two");
const absl::Time kNow = absl::FromUnixSeconds(1700000000);

DesiredInstance instance(const std::string& name, const std::string& uid,
                         const std::string& image = kImage) {
  DesiredInstance desired;
  desired.set_name(name);
  desired.set_uid(uid);
  desired.set_image_digest(image);
  desired.mutable_placement()->set_memory_bytes(256 << 10);
  return desired;
}

Vm vm(const std::string& name, const std::string& uid, tenon::v1::VmState state,
      const std::string& image = kImage) {
  Vm result;
  result.set_name(name);
  result.set_uid(uid);
  result.set_state(state);
  result.set_image_digest(image);
  return result;
}

InstanceRecord record(const std::string& name, const std::string& instance_uid,
                      const std::string& vm_uid) {
  InstanceRecord result;
  result.name = name;
  result.instance_uid = instance_uid;
  result.vm_uid = vm_uid;
  result.image_digest = kImage;
  return result;
}

struct Planner {
  DesiredState desired;
  PlanInput input;
  Planner() {
    desired.set_version(7);
    input.now = kNow;
  }
  std::vector<Action> run() {
    input.desired = &desired;
    return plan(input);
  }
};

std::string kinds(const std::vector<Action>& actions) {
  std::string text;
  for (const Action& action : actions) {
    if (!text.empty()) text += ",";
    switch (action.kind) {
      case ActionKind::kFetchImage:
        text += "fetch";
        break;
      case ActionKind::kCreate:
        text += "create";
        break;
      case ActionKind::kStart:
        text += "start";
        break;
      case ActionKind::kPause:
        text += "pause";
        break;
      case ActionKind::kResume:
        text += "resume";
        break;
      case ActionKind::kDestroy:
        text += "destroy";
        break;
      case ActionKind::kAdopt:
        text += "adopt";
        break;
      case ActionKind::kHandleExit:
        text += "exit";
        break;
      case ActionKind::kRestart:
        text += "restart";
        break;
      case ActionKind::kForget:
        text += "forget";
        break;
      case ActionKind::kRestore:
        text += "restore";
        break;
    }
    text += ":" + action.name;
  }
  return text;
}

TEST(PlanTest, FetchesAMissingImageBeforeCreating) {
  Planner planner;
  *planner.desired.add_instances() = instance("a", "u1");
  EXPECT_EQ(kinds(planner.run()), "fetch:a");
  planner.input.images_held.insert(kImage);
  EXPECT_EQ(kinds(planner.run()), "create:a");
}

TEST(PlanTest, AMigratingInstanceIsRestoredFromItsSnapshotThenResumed) {
  const std::string snapshot = "sha256:" + std::string(64, 'e');
  Planner planner;
  DesiredInstance desired = instance("a", "u1");
  desired.set_restore_snapshot_digest(snapshot);
  *planner.desired.add_instances() = desired;
  std::vector<Action> actions = planner.run();
  EXPECT_EQ(kinds(actions), "fetch:a");
  EXPECT_EQ(actions[0].image_digest, snapshot) << "the snapshot, not the image";
  planner.input.images_held.insert(snapshot);
  EXPECT_EQ(kinds(planner.run()), "restore:a");
  // Restored (PAUSED) and recorded: resumed like any paused instance, never restored again.
  planner.input.records["a"] = record("a", "u1", "vm1");
  planner.input.vms["a"] = vm("a", "vm1", tenon::v1::VM_STATE_PAUSED);
  EXPECT_EQ(kinds(planner.run()), "resume:a");
}

TEST(PlanTest, StartsACreatedVmAndPausesOrResumesAsDesired) {
  Planner planner;
  DesiredInstance desired = instance("a", "u1");
  *planner.desired.add_instances() = desired;
  planner.input.images_held.insert(kImage);
  planner.input.records["a"] = record("a", "u1", "vm1");
  planner.input.vms["a"] = vm("a", "vm1", tenon::v1::VM_STATE_CREATED);
  EXPECT_EQ(kinds(planner.run()), "start:a");
  planner.input.vms["a"] = vm("a", "vm1", tenon::v1::VM_STATE_RUNNING);
  EXPECT_EQ(kinds(planner.run()), "");
  planner.desired.mutable_instances(0)->set_state(tenon::v1::DESIRED_INSTANCE_STATE_PAUSED);
  EXPECT_EQ(kinds(planner.run()), "pause:a");
  planner.input.vms["a"] = vm("a", "vm1", tenon::v1::VM_STATE_PAUSED);
  EXPECT_EQ(kinds(planner.run()), "");
  planner.desired.mutable_instances(0)->set_state(tenon::v1::DESIRED_INSTANCE_STATE_RUNNING);
  EXPECT_EQ(kinds(planner.run()), "resume:a");
}

TEST(PlanTest, DestroysUndesiredVmsFirstAndForgetsTheirRecords) {
  Planner planner;
  *planner.desired.add_instances() = instance("b", "u2");
  planner.input.vms["a"] = vm("a", "vm1", tenon::v1::VM_STATE_RUNNING);
  planner.input.records["a"] = record("a", "u1", "vm1");
  planner.input.records["gone"] = record("gone", "u0", "vm0");
  planner.input.images_held.insert(kImage);
  EXPECT_EQ(kinds(planner.run()), "destroy:a,create:b,forget:gone");
}

TEST(PlanTest, WithoutAnyDesiredStateTouchesNoVm) {
  PlanInput input;
  input.now = kNow;
  input.vms["manual"] = vm("manual", "vm1", tenon::v1::VM_STATE_RUNNING);
  EXPECT_EQ(kinds(plan(input)), "");
}

TEST(PlanTest, AnEmptyDesiredStateDestroysEverything) {
  Planner planner;
  planner.input.vms["a"] = vm("a", "vm1", tenon::v1::VM_STATE_RUNNING);
  EXPECT_EQ(kinds(planner.run()), "destroy:a");
}

TEST(PlanTest, AdoptsARunningVmAfterAnAgentRestartInsteadOfRestartingIt) {
  Planner planner;
  *planner.desired.add_instances() = instance("a", "u1");
  planner.input.images_held.insert(kImage);
  planner.input.vms["a"] = vm("a", "vm1", tenon::v1::VM_STATE_RUNNING);
  // Records say it: nothing to do.
  planner.input.records["a"] = record("a", "u1", "vm1");
  EXPECT_EQ(kinds(planner.run()), "");
  // No record (killed between Create and recording): adopt, never recreate.
  planner.input.records.clear();
  EXPECT_EQ(kinds(planner.run()), "adopt:a");
  // A record of the instance with another VM uid: adopt the VM that runs.
  planner.input.records["a"] = record("a", "u1", "vm-older");
  EXPECT_EQ(kinds(planner.run()), "adopt:a");
}

TEST(PlanTest, ANewUidUnderAnOldNameReplacesTheVmOnceTheImageIsHeld) {
  Planner planner;
  *planner.desired.add_instances() = instance("a", "u2", kOtherImage);
  planner.input.images_held.insert(kImage);
  planner.input.vms["a"] = vm("a", "vm1", tenon::v1::VM_STATE_RUNNING);
  planner.input.records["a"] = record("a", "u1", "vm1");
  EXPECT_EQ(kinds(planner.run()), "fetch:a");  // the old one runs until the new one can start
  planner.input.images_held.insert(kOtherImage);
  EXPECT_EQ(kinds(planner.run()), "destroy:a");
  planner.input.vms.clear();
  const std::vector<Action> actions = planner.run();
  ASSERT_EQ(kinds(actions), "create:a");
  EXPECT_FALSE(actions[0].counts_as_restart);
}

TEST(PlanTest, ANewImageUnderTheSameUidAlsoReplaces) {
  Planner planner;
  *planner.desired.add_instances() = instance("a", "u1", kOtherImage);
  planner.input.images_held = {kImage, kOtherImage};
  planner.input.vms["a"] = vm("a", "vm1", tenon::v1::VM_STATE_RUNNING);
  planner.input.records["a"] = record("a", "u1", "vm1");
  EXPECT_EQ(kinds(planner.run()), "destroy:a");
}

TEST(PlanTest, ACrashIsHandledOnceThenRestartedAfterTheBackoff) {
  Planner planner;
  *planner.desired.add_instances() = instance("a", "u1");
  planner.input.images_held.insert(kImage);
  Vm crashed = vm("a", "vm1", tenon::v1::VM_STATE_CRASHED);
  crashed.mutable_exit_reason()->set_kind(tenon::v1::EXIT_KIND_VMM_CRASHED);
  planner.input.vms["a"] = crashed;
  InstanceRecord recorded = record("a", "u1", "vm1");
  recorded.consecutive_failures = 2;
  planner.input.records["a"] = recorded;
  std::vector<Action> actions = planner.run();
  ASSERT_EQ(kinds(actions), "exit:a");
  ASSERT_TRUE(actions[0].restart_at.has_value());
  EXPECT_EQ(*actions[0].restart_at, kNow + absl::Seconds(4));  // 1 s doubled twice

  recorded.exit_handled_vm_uid = "vm1";
  recorded.restart_at = *actions[0].restart_at;
  planner.input.records["a"] = recorded;
  EXPECT_EQ(kinds(planner.run()), "");  // not yet
  planner.input.now = kNow + absl::Seconds(4);
  EXPECT_EQ(kinds(planner.run()), "restart:a");
}

TEST(PlanTest, RestartBackoffIsCapped) {
  Planner planner;
  planner.input.restart_backoff_max = absl::Seconds(30);
  *planner.desired.add_instances() = instance("a", "u1");
  planner.input.images_held.insert(kImage);
  planner.input.vms["a"] = vm("a", "vm1", tenon::v1::VM_STATE_FAULTED);
  InstanceRecord recorded = record("a", "u1", "vm1");
  recorded.consecutive_failures = 20;
  planner.input.records["a"] = recorded;
  const std::vector<Action> actions = planner.run();
  ASSERT_EQ(kinds(actions), "exit:a");
  EXPECT_EQ(*actions[0].restart_at, kNow + absl::Seconds(30));
}

TEST(PlanTest, RestartPolicies) {
  Vm clean = vm("a", "vm1", tenon::v1::VM_STATE_EXITED);
  clean.mutable_exit_reason()->set_kind(tenon::v1::EXIT_KIND_GUEST_EXIT);
  Vm failed_exit = clean;
  failed_exit.mutable_exit_reason()->set_status(3);
  Vm time_limit = vm("a", "vm1", tenon::v1::VM_STATE_EXITED);
  time_limit.mutable_exit_reason()->set_kind(tenon::v1::EXIT_KIND_TIME_LIMIT);
  Vm panic = vm("a", "vm1", tenon::v1::VM_STATE_FAULTED);
  panic.mutable_exit_reason()->set_kind(tenon::v1::EXIT_KIND_GUEST_PANIC);

  for (auto policy :
       {tenon::v1::RESTART_POLICY_UNSPECIFIED, tenon::v1::RESTART_POLICY_ON_FAILURE}) {
    EXPECT_FALSE(restart_wanted(policy, clean));
    EXPECT_FALSE(restart_wanted(policy, time_limit));
    EXPECT_TRUE(restart_wanted(policy, failed_exit));
    EXPECT_TRUE(restart_wanted(policy, panic));
  }
  EXPECT_FALSE(restart_wanted(tenon::v1::RESTART_POLICY_NEVER, panic));
  EXPECT_TRUE(restart_wanted(tenon::v1::RESTART_POLICY_ALWAYS, clean));
}

TEST(PlanTest, ACleanExitUnderOnFailureIsReportedAndLeftAlone) {
  Planner planner;
  *planner.desired.add_instances() = instance("a", "u1");
  planner.input.images_held.insert(kImage);
  Vm exited = vm("a", "vm1", tenon::v1::VM_STATE_EXITED);
  exited.mutable_exit_reason()->set_kind(tenon::v1::EXIT_KIND_GUEST_EXIT);
  planner.input.vms["a"] = exited;
  planner.input.records["a"] = record("a", "u1", "vm1");
  std::vector<Action> actions = planner.run();
  ASSERT_EQ(kinds(actions), "exit:a");
  EXPECT_FALSE(actions[0].restart_at.has_value());
  InstanceRecord handled = record("a", "u1", "vm1");
  handled.exit_handled_vm_uid = "vm1";
  planner.input.records["a"] = handled;
  EXPECT_EQ(kinds(planner.run()), "");

  const tenon::v1::InstanceStatusUpdate status =
      status_of(planner.desired.instances(0), &exited, &handled, 7, "");
  EXPECT_EQ(status.state(), tenon::v1::INSTANCE_STATE_EXITED);
  EXPECT_EQ(status.exit_reason().kind(), tenon::v1::EXIT_KIND_GUEST_EXIT);
  EXPECT_EQ(status.desired_state_version(), 7u);
  EXPECT_EQ(status.message(), "not restarted (restart policy ON_FAILURE)");
}

TEST(PlanTest, AVanishedVmIsCreatedAgainAndCountsAsARestart) {
  Planner planner;
  *planner.desired.add_instances() = instance("a", "u1");
  planner.input.images_held.insert(kImage);
  planner.input.records["a"] = record("a", "u1", "vm1");
  const std::vector<Action> actions = planner.run();
  ASSERT_EQ(kinds(actions), "create:a");
  EXPECT_TRUE(actions[0].counts_as_restart);
}

TEST(PlanTest, StatusIsPendingWhileTheImageIsFetched) {
  const DesiredInstance desired = instance("a", "u1");
  const tenon::v1::InstanceStatusUpdate status =
      status_of(desired, nullptr, nullptr, 3, "fetching image");
  EXPECT_EQ(status.state(), tenon::v1::INSTANCE_STATE_PENDING);
  EXPECT_EQ(status.instance_uid(), "u1");
  EXPECT_EQ(status.message(), "fetching image");
}

TEST(PlanTest, CreateRequestCarriesPlacementAndRuntime) {
  DesiredInstance desired = instance("a", "u1");
  desired.mutable_placement()->set_rt_priority(50);
  desired.mutable_runtime()->set_stack_bytes(32768);
  desired.mutable_runtime()->mutable_app_run_time()->set_seconds(2);
  tenon::v1::CreateVmRequest request = create_request_of(desired);
  EXPECT_EQ(request.name(), "a");
  EXPECT_EQ(request.image_digest(), kImage);
  EXPECT_EQ(request.memory_bytes(), 256u << 10);
  EXPECT_EQ(request.cpu().policy(), tenon::v1::CPU_POLICY_REALTIME);
  EXPECT_EQ(request.cpu().rt_priority(), 50u);
  EXPECT_EQ(request.stack_bytes(), 32768u);
  EXPECT_EQ(request.app_run_time().seconds(), 2);
  desired.mutable_placement()->set_dedicated_core(true);
  EXPECT_EQ(create_request_of(desired).cpu().policy(), tenon::v1::CPU_POLICY_DEDICATED);
  desired.mutable_placement()->set_dedicated_core(false);
  desired.mutable_placement()->set_rt_priority(0);
  EXPECT_EQ(create_request_of(desired).cpu().policy(), tenon::v1::CPU_POLICY_ANYWHERE);
}

TEST(ValidateDesiredStateTest, RefusesWhatTheDeviceCannotDo) {
  DesiredState desired;
  desired.set_version(1);
  *desired.add_instances() = instance("a", "u1");
  *desired.add_instances() = instance("b", "u2");
  EXPECT_TRUE(validate_desired_state(desired, 1).ok());

  DesiredState two_dedicated = desired;
  two_dedicated.mutable_instances(0)->mutable_placement()->set_dedicated_core(true);
  two_dedicated.mutable_instances(1)->mutable_placement()->set_dedicated_core(true);
  EXPECT_TRUE(validate_desired_state(two_dedicated, 2).ok());
  const absl::Status refused = validate_desired_state(two_dedicated, 1);
  EXPECT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("dedicated"), std::string::npos) << refused;

  DesiredState duplicate = desired;
  duplicate.mutable_instances(1)->set_name("a");
  EXPECT_FALSE(validate_desired_state(duplicate, 1).ok());

  DesiredState bad_digest = desired;
  bad_digest.mutable_instances(0)->set_image_digest("sha256:../../etc/passwd");
  EXPECT_FALSE(validate_desired_state(bad_digest, 1).ok());

  DesiredState bad_name = desired;
  bad_name.mutable_instances(0)->set_name("Not/A/Name");
  EXPECT_FALSE(validate_desired_state(bad_name, 1).ok());

  DesiredState no_memory = desired;
  no_memory.mutable_instances(0)->mutable_placement()->set_memory_bytes(0);
  EXPECT_FALSE(validate_desired_state(no_memory, 1).ok());
}

}  // namespace
}  // namespace tenon::agent
