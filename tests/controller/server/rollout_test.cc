// Staged rollouts: the rollout engine's rules (rollout.h) as pure functions, and the controller
// rolling a revision out in waves to simulated devices over a real store: waves in order with
// the canary first, a gate tripped by reported deadline misses rolling the canary back (or
// halting) while devices outside it are never touched, and a restarted controller resuming.
#include "rollout.h"

#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "api_metrics.h"
#include "controller_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tenon::controller {
namespace {

using ::testing::HasSubstr;

v1::RolloutPolicy policy(uint32_t wave_size, absl::Duration bake, double ratio, bool rollback) {
  v1::RolloutPolicy result;
  result.set_wave_size(wave_size);
  result.mutable_bake_time()->set_seconds(absl::ToInt64Seconds(bake));
  result.set_max_deadline_miss_ratio(ratio);
  result.set_rollback_on_failure(rollback);
  return result;
}

// ---- The rules ----------------------------------------------------------------------------------

TEST(RolloutRulesTest, ARevisionIsMadeOnlyWhenWhatReachesInstancesChanges) {
  v1::DeploymentSpec spec;
  spec.set_app("control");
  v1::AppSpec app;
  app.set_program("control-loop");
  v1::DeploymentStatus status;
  const absl::Time now = absl::FromUnixSeconds(1'000'000);
  ASSERT_TRUE(start_revision(spec, app, 6, now, &status));
  EXPECT_EQ(status.revision(), 1u);
  EXPECT_EQ(status.wave(), 0u) << "the first revision has nothing to protect: at once";
  *spec.mutable_rollout() = policy(2, absl::Seconds(10), 0.0, true);
  EXPECT_FALSE(start_revision(spec, app, 6, now, &status)) << "the policy alone is no revision";
  app.set_program("control-loop-2");
  ASSERT_TRUE(start_revision(spec, app, 5, now, &status));
  EXPECT_EQ(status.revision(), 2u);
  EXPECT_EQ(status.previous_revision(), 1u);
  EXPECT_EQ(status.phase(), v1::ROLLOUT_PHASE_PROGRESSING);
  EXPECT_EQ(status.wave(), 1u);
  EXPECT_EQ(status.waves(), 3u) << "5 devices in waves of 2";
  for (int i = 0; i < 10; ++i) {
    app.set_program(absl::StrCat("p", i));
    start_revision(spec, app, 5, now, &status);
  }
  EXPECT_EQ(status.revisions_size(), static_cast<int>(kRevisionsKept));
  EXPECT_EQ(status.revisions().rbegin()->number(), 12u);
}

TEST(RolloutRulesTest, RegressionTrimmingNeverDropsTheRevisionAFailureFallsBackOn) {
  // Rolled back to revision 1 five times: revision 1 is current and the oldest kept. The next
  // revision used to trim it (and read it after freeing it), leaving nothing to fall back on.
  v1::DeploymentSpec spec;
  spec.set_app("control");
  *spec.mutable_rollout() = policy(1, absl::ZeroDuration(), 0, true);
  v1::AppSpec app;
  v1::DeploymentStatus status;
  const absl::Time now = absl::FromUnixSeconds(1'000'000);
  for (int i = 1; i <= 5; ++i) {
    app.set_program(absl::StrCat("p", i));
    ASSERT_TRUE(start_revision(spec, app, 3, now, &status));
  }
  v1::ControlRolloutRequest undo;
  undo.set_action(v1::ControlRolloutRequest::ACTION_UNDO);
  undo.set_revision(1);
  ASSERT_TRUE(apply_control(undo, now, &status).ok());
  app.set_program("p6");
  ASSERT_TRUE(start_revision(spec, app, 3, now, &status));
  EXPECT_EQ(status.revision(), 6u);
  EXPECT_EQ(status.previous_revision(), 1u);
  ASSERT_NE(find_revision(status, 1), nullptr);
  EXPECT_EQ(find_revision(status, 1)->app().program(), "p1");
  EXPECT_EQ(status.revisions_size(), static_cast<int>(kRevisionsKept));
}

TEST(RolloutRulesTest, AFailedRolloutFallsBackOnTheLastRevisionThatReachedEveryDevice) {
  v1::DeploymentSpec spec;
  spec.set_app("control");
  *spec.mutable_rollout() = policy(1, absl::ZeroDuration(), 0, false);
  v1::AppSpec app;
  v1::DeploymentStatus status;
  const absl::Time now = absl::FromUnixSeconds(1'000'000);
  app.set_program("good");
  start_revision(spec, app, 3, now, &status);  // 1, everywhere at once
  app.set_program("bad");
  start_revision(spec, app, 3, now, &status);  // 2, halted on its canary
  RolloutDecision halt{RolloutDecision::Kind::kHalt, "canary failed"};
  apply_decision(halt, now, &status);
  ASSERT_EQ(status.phase(), v1::ROLLOUT_PHASE_HALTED);
  app.set_program("worse");
  start_revision(spec, app, 3, now, &status);  // 3, applied over the halted 2
  EXPECT_EQ(status.revision(), 3u);
  EXPECT_EQ(status.previous_revision(), 1u) << "2 never reached every device";
  // Rolled back, then the manifest reverted to revision 1's spec: the rollback is settled.
  RolloutDecision rollback{RolloutDecision::Kind::kRollBack, "canary failed"};
  apply_decision(rollback, now, &status);
  ASSERT_EQ(status.revision(), 1u);
  app.set_program("good");
  EXPECT_TRUE(start_revision(spec, app, 3, now, &status));
  EXPECT_EQ(status.revision(), 1u);
  EXPECT_EQ(status.phase(), v1::ROLLOUT_PHASE_UNSPECIFIED);
  EXPECT_EQ(status.events().rbegin()->reason(), "SpecRestored");
  EXPECT_FALSE(start_revision(spec, app, 3, now, &status)) << "nothing more to settle";
}

TEST(RolloutRulesTest, CanariesComeFirstAndTheOrderIsFixedPerDeployment) {
  std::map<std::string, google::protobuf::Map<std::string, std::string>> labels;
  for (int i = 0; i < 8; ++i) labels[absl::StrCat("edge-", i)];
  labels["edge-6"]["canary"] = "true";
  labels["edge-2"]["canary"] = "true";
  std::vector<std::pair<std::string, const google::protobuf::Map<std::string, std::string>*>>
      devices;
  for (const auto& [name, device_labels] : labels) devices.emplace_back(name, &device_labels);
  const std::vector<std::string> order = wave_order("control", devices);
  ASSERT_EQ(order.size(), 8u);
  EXPECT_EQ(std::set<std::string>(order.begin(), order.begin() + 2),
            (std::set<std::string>{"edge-2", "edge-6"}));
  std::reverse(devices.begin(), devices.end());
  EXPECT_EQ(wave_order("control", devices), order) << "the input order does not matter";
  EXPECT_EQ(admitted_count(1, 3, 8), 3u);
  EXPECT_EQ(admitted_count(2, 3, 8), 6u);
  EXPECT_EQ(admitted_count(3, 3, 8), 8u);
  EXPECT_EQ(admitted_count(1, 1, 8), 8u);
  EXPECT_EQ(admitted_count(0, 3, 8), 0u);
}

TEST(RolloutRulesTest, TheGateWaitsForEveryDeviceAndTheBakeThenPassesOrFails) {
  v1::DeploymentStatus status;
  status.set_phase(v1::ROLLOUT_PHASE_PROGRESSING);
  status.set_revision(2);
  status.set_previous_revision(1);
  status.set_wave(1);
  status.set_waves(2);
  const absl::Time start = absl::FromUnixSeconds(1'000'000);
  status.mutable_wave_start_time()->set_seconds(absl::ToUnixSeconds(start));
  const v1::RolloutPolicy gate = policy(2, absl::Seconds(10), 0.01, true);
  std::vector<WaveMember> members(2);
  members[0] = {"a", true, true, false, 1000, 5};
  members[1] = {"b", true, false, false, 0, 0};
  RolloutDecision decision = decide_rollout(gate, status, start + absl::Seconds(30), members);
  EXPECT_EQ(decision.kind, RolloutDecision::Kind::kWait);
  EXPECT_THAT(decision.message, HasSubstr("1 of 2 devices run revision 2"));
  members[1] = {"b", true, true, false, 1000, 0};
  decision = decide_rollout(gate, status, start + absl::Seconds(5), members);
  EXPECT_EQ(decision.kind, RolloutDecision::Kind::kWait);
  EXPECT_THAT(decision.message, HasSubstr("baking until"));
  decision = decide_rollout(gate, status, start + absl::Seconds(10), members);
  EXPECT_EQ(decision.kind, RolloutDecision::Kind::kNextWave);
  status.set_wave(2);
  EXPECT_EQ(decide_rollout(gate, status, start + absl::Seconds(10), members).kind,
            RolloutDecision::Kind::kComplete);
  // 25 misses in 2,000 jobs is above 1%: rolled back, or halted without rollback.
  members[1].deadline_misses = 20;
  decision = decide_rollout(gate, status, start, members);
  EXPECT_EQ(decision.kind, RolloutDecision::Kind::kRollBack);
  EXPECT_THAT(decision.message, HasSubstr("deadline misses 25 of 2000 jobs"));
  EXPECT_EQ(decide_rollout(policy(2, absl::Seconds(10), 0.01, false), status, start, members).kind,
            RolloutDecision::Kind::kHalt);
  members[1].deadline_misses = 0;
  members[0].failed = true;
  EXPECT_THAT(decide_rollout(gate, status, start, members).message,
              HasSubstr("faulted or crashed"));
  apply_decision(decide_rollout(gate, status, start, members), start, &status);
  EXPECT_EQ(status.phase(), v1::ROLLOUT_PHASE_ROLLED_BACK);
  EXPECT_EQ(status.revision(), 1u) << "the previous revision is current again";
}

// ---- The controller -----------------------------------------------------------------------------

class RolloutTest : public ControllerFixture, public ::testing::WithParamInterface<StoreKind> {
 protected:
  StoreKind store_kind() const override { return GetParam(); }

  // Six enrolled, connected devices at site "lab"; edge-5 and edge-6 are canaries.
  void connect_fleet() {
    std::vector<v1::Object> devices;
    for (int i = 1; i <= 6; ++i) {
      v1::Object object = device(absl::StrCat("edge-", i), "lab");
      if (i >= 5)
        (*object.mutable_device()->mutable_metadata()->mutable_labels())["canary"] = "true";
      devices.push_back(object);
    }
    ASSERT_TRUE(apply(devices).ok());
    for (int i = 1; i <= 6; ++i) {
      const std::string name = absl::StrCat("edge-", i);
      sessions_[name] = connect(name, enroll(name));
    }
  }

  // The deployment in waves of two; `run_seconds` tells revisions apart (a changed runtime
  // reaches every instance).
  v1::Object staged_deployment(bool rollback, int64_t run_seconds = 0) {
    v1::Object object = deployment("control", "control", "lab");
    v1::DeploymentSpec* spec = object.mutable_deployment()->mutable_spec();
    *spec->mutable_rollout() = policy(2, absl::Seconds(10), 0.01, rollback);
    spec->mutable_runtime()->mutable_app_run_time()->set_seconds(run_seconds);
    return object;
  }

  // Which revision each device was last told to run, by its run time in seconds (only devices
  // told something since the last call).
  std::map<std::string, int64_t> told() {
    std::map<std::string, int64_t> revisions;
    for (auto& [name, session] : sessions_) {
      std::optional<v1::DesiredState> desired = last_desired(sent(*session));
      if (desired.has_value() && desired->instances_size() == 1) {
        revisions[name] = desired->instances(0).runtime().app_run_time().seconds();
      }
    }
    return revisions;
  }

  // The device reports its instance running (the one it was told of), with these counts.
  void report(const std::string& device, uint64_t jobs, uint64_t misses) {
    v1::GetRequest get;
    get.set_kind(v1::OBJECT_KIND_INSTANCE);
    get.set_name(instance_name("control", device));
    absl::StatusOr<v1::Object> instance = controller_->get(get);
    ASSERT_TRUE(instance.ok()) << instance.status();
    const std::string& image = instance->instance().spec().image_digest();
    const std::string& uid = instance->instance().metadata().uid();
    v1::AgentMessage status;
    status.set_sequence(++sequence_);
    v1::InstanceStatusUpdate* update = status.mutable_instance_status();
    update->set_instance_name(instance_name("control", device));
    update->set_instance_uid(uid);
    update->set_state(v1::INSTANCE_STATE_RUNNING);
    update->set_image_digest(image);
    ASSERT_TRUE(controller_->handle(device, sessions_[device], status).ok());
    v1::AgentMessage telemetry;
    telemetry.set_sequence(++sequence_);
    v1::InstanceTelemetry* sample = telemetry.mutable_telemetry()->add_instances();
    sample->set_instance_name(instance_name("control", device));
    sample->set_run_id(absl::StrCat(device, "-run"));
    v1::TaskTelemetry* task = sample->add_tasks();
    task->set_task_name("pid");
    task->set_jobs(jobs);
    task->set_deadline_misses(misses);
    ASSERT_TRUE(controller_->handle(device, sessions_[device], telemetry).ok());
  }

  v1::DeploymentStatus status() {
    v1::GetRequest get;
    get.set_kind(v1::OBJECT_KIND_DEPLOYMENT);
    get.set_name("control");
    absl::StatusOr<v1::Object> object = controller_->get(get);
    EXPECT_TRUE(object.ok()) << object.status();
    return object.ok() ? object->deployment().status() : v1::DeploymentStatus();
  }

  // Revision 1 (runs an hour) everywhere and running; then revision 2 (two hours) starts its
  // rollout and reaches the canaries only.
  void start_second_revision(bool rollback) {
    connect_fleet();
    ASSERT_TRUE(apply({control_loop_app(), staged_deployment(rollback, 3600)}).ok());
    const std::map<std::string, int64_t> first = told();
    EXPECT_EQ(first.size(), 6u) << "the first revision reaches every device at once";
    for (const auto& [name, run] : first) report(name, 1000, 0);
    ASSERT_TRUE(apply({staged_deployment(rollback, 7200)}).ok());
    EXPECT_EQ(told(), (std::map<std::string, int64_t>{{"edge-5", 7200}, {"edge-6", 7200}}));
  }

  std::map<std::string, std::shared_ptr<RecordingSession>> sessions_;
  uint64_t sequence_ = 10;
};
INSTANTIATE_TEST_SUITE_P(Stores, RolloutTest,
                         ::testing::Values(StoreKind::kSqlite, StoreKind::kPostgres),
                         store_kind_name);

TEST_P(RolloutTest, AGoodRevisionRollsThroughThreeWavesCanaryFirst) {
  ASSERT_NO_FATAL_FAILURE(start_second_revision(/*rollback=*/true));
  v1::DeploymentStatus rolling = status();
  EXPECT_EQ(rolling.phase(), v1::ROLLOUT_PHASE_PROGRESSING);
  EXPECT_EQ(rolling.revision(), 2u);
  EXPECT_EQ(rolling.wave(), 1u);
  EXPECT_EQ(rolling.waves(), 3u);
  absl::Time now = absl::Now();
  std::set<std::string> updated = {"edge-5", "edge-6"};
  for (uint32_t wave = 1; wave <= 3; ++wave) {
    for (const std::string& name : updated) report(name, 1000, 0);
    // Every device of the wave runs the revision, but the bake time has not passed.
    ASSERT_TRUE(controller_->advance_rollouts(now).ok());
    EXPECT_TRUE(told().empty());
    EXPECT_THAT(status().message(), HasSubstr("baking until"));
    now += absl::Seconds(11);
    ASSERT_TRUE(controller_->advance_rollouts(now).ok());
    const std::map<std::string, int64_t> next = told();
    if (wave < 3) {
      ASSERT_EQ(next.size(), 2u) << "wave " << wave + 1;
      for (const auto& [name, run] : next) {
        EXPECT_EQ(run, 7200);
        EXPECT_TRUE(updated.insert(name).second) << name << " was updated twice";
      }
      EXPECT_EQ(status().wave(), wave + 1);
    }
  }
  EXPECT_EQ(updated.size(), 6u);
  EXPECT_EQ(status().phase(), v1::ROLLOUT_PHASE_COMPLETE);
  EXPECT_EQ(status().updated_instances(), 6u);
}

TEST_P(RolloutTest, DeadlineMissesInTheCanaryRollItBackAndNoOtherDeviceIsTouched) {
  ASSERT_NO_FATAL_FAILURE(start_second_revision(/*rollback=*/true));
  report("edge-5", 1000, 0);
  report("edge-6", 1000, 40);  // 40 of 2,000 jobs: 2%, above the gate's 1%
  ASSERT_TRUE(controller_->advance_rollouts(absl::Now()).ok());
  const v1::DeploymentStatus rolled_back = status();
  EXPECT_EQ(rolled_back.phase(), v1::ROLLOUT_PHASE_ROLLED_BACK);
  EXPECT_EQ(rolled_back.revision(), 1u);
  EXPECT_THAT(rolled_back.message(), HasSubstr("deadline misses 40 of 2000 jobs"));
  EXPECT_EQ(told(), (std::map<std::string, int64_t>{{"edge-5", 3600}, {"edge-6", 3600}}))
      << "only the canaries go back; the others never left revision 1";
  // The decision is an event with the gate's figures and threshold.
  bool gate_failed = false;
  for (const v1::RolloutEvent& event : rolled_back.events()) {
    if (event.reason() == "GateFailed") {
      gate_failed = true;
      EXPECT_THAT(event.message(), HasSubstr("deadline misses 40 of 2000 jobs (ratio 0.02)"));
      EXPECT_THAT(event.message(), HasSubstr("above the gate's 0.01"));
      EXPECT_EQ(event.revision(), 2u);
      EXPECT_EQ(event.wave(), 1u);
    }
  }
  EXPECT_TRUE(gate_failed);
  // And on /metrics.
  const std::string page = ApiMetrics().render(controller_->snapshot());
  EXPECT_THAT(
      page,
      HasSubstr("tenon_deployment_rollout_phase{deployment=\"control\",phase=\"rolled_back\"} 1"));
  EXPECT_THAT(
      page,
      HasSubstr("tenon_deployment_rollout_phase{deployment=\"control\",phase=\"progressing\"} 0"));
  EXPECT_THAT(page, HasSubstr("tenon_deployment_rollout_waves{deployment=\"control\"} 3"));
  // Nothing moves any more until the deployment or its app changes again.
  ASSERT_TRUE(controller_->advance_rollouts(absl::Now() + absl::Hours(1)).ok());
  EXPECT_TRUE(told().empty());
  EXPECT_EQ(status().phase(), v1::ROLLOUT_PHASE_ROLLED_BACK);
}

TEST_P(RolloutTest, WithoutRollbackAFailedGateHaltsWhereItIs) {
  ASSERT_NO_FATAL_FAILURE(start_second_revision(/*rollback=*/false));
  report("edge-5", 1000, 0);
  report("edge-6", 1000, 40);
  ASSERT_TRUE(controller_->advance_rollouts(absl::Now()).ok());
  EXPECT_EQ(status().phase(), v1::ROLLOUT_PHASE_HALTED);
  EXPECT_THAT(status().message(), HasSubstr("halted"));
  EXPECT_TRUE(told().empty()) << "the canaries keep revision 2, the rest revision 1";
  ASSERT_TRUE(controller_->advance_rollouts(absl::Now() + absl::Hours(1)).ok());
  EXPECT_TRUE(told().empty());
}

TEST_P(RolloutTest, ARestartedControllerResumesTheRolloutFromTheStore) {
  ASSERT_NO_FATAL_FAILURE(start_second_revision(/*rollback=*/true));
  report("edge-5", 1000, 0);
  report("edge-6", 1000, 0);
  ASSERT_TRUE(controller_->flush_reported_state().ok());
  controller_.reset();
  controller_ = make_controller(ControllerConfig{});
  ASSERT_NE(controller_, nullptr);
  EXPECT_EQ(status().wave(), 1u);
  sessions_.clear();
  for (int i = 1; i <= 6; ++i) {
    const std::string name = absl::StrCat("edge-", i);
    sessions_[name] = connect(name, enroll(name));
  }
  told();  // what a reconnecting device is told: what it already had
  // Reports from before the restart do not count (an agent sends its instances' state again).
  ASSERT_TRUE(controller_->advance_rollouts(absl::Now() + absl::Seconds(11)).ok());
  EXPECT_EQ(status().wave(), 1u);
  report("edge-5", 1000, 0);
  report("edge-6", 1000, 0);
  ASSERT_TRUE(controller_->advance_rollouts(absl::Now() + absl::Seconds(11)).ok());
  EXPECT_EQ(status().wave(), 2u);
  EXPECT_EQ(told().size(), 2u) << "the second wave starts where the first stopped";
}

TEST_P(RolloutTest, PauseResumeAbortAndUndoByHand) {
  ASSERT_NO_FATAL_FAILURE(start_second_revision(/*rollback=*/true));
  report("edge-5", 1000, 0);
  report("edge-6", 1000, 0);
  auto control = [&](v1::ControlRolloutRequest::Action action, uint64_t revision = 0) {
    v1::ControlRolloutRequest request;
    request.set_deployment("control");
    request.set_action(action);
    request.set_revision(revision);
    return controller_->control_rollout(request);
  };
  absl::StatusOr<v1::Deployment> paused = control(v1::ControlRolloutRequest::ACTION_PAUSE);
  ASSERT_TRUE(paused.ok()) << paused.status();
  EXPECT_EQ(paused->status().phase(), v1::ROLLOUT_PHASE_PAUSED);
  EXPECT_EQ(control(v1::ControlRolloutRequest::ACTION_PAUSE).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(controller_->advance_rollouts(absl::Now() + absl::Minutes(1)).ok());
  EXPECT_TRUE(told().empty()) << "a paused rollout starts no wave";
  EXPECT_EQ(status().wave(), 1u);

  ASSERT_TRUE(control(v1::ControlRolloutRequest::ACTION_RESUME).ok());
  EXPECT_EQ(status().phase(), v1::ROLLOUT_PHASE_PROGRESSING);
  ASSERT_TRUE(controller_->advance_rollouts(absl::Now() + absl::Seconds(11)).ok());
  const std::map<std::string, int64_t> second_wave = told();
  EXPECT_EQ(second_wave.size(), 2u);

  // Abort: the four updated devices go back to revision 1.
  absl::StatusOr<v1::Deployment> aborted = control(v1::ControlRolloutRequest::ACTION_ABORT);
  ASSERT_TRUE(aborted.ok()) << aborted.status();
  EXPECT_EQ(aborted->status().phase(), v1::ROLLOUT_PHASE_ROLLED_BACK);
  EXPECT_EQ(aborted->status().revision(), 1u);
  std::map<std::string, int64_t> expected = {{"edge-5", 3600}, {"edge-6", 3600}};
  for (const auto& [name, run] : second_wave) expected[name] = 3600;
  EXPECT_EQ(told(), expected);
  EXPECT_EQ(control(v1::ControlRolloutRequest::ACTION_ABORT).status().code(),
            absl::StatusCode::kFailedPrecondition);

  // Undo to revision 2 after all: every device, at once.
  EXPECT_EQ(control(v1::ControlRolloutRequest::ACTION_UNDO, 9).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<v1::Deployment> undone = control(v1::ControlRolloutRequest::ACTION_UNDO, 2);
  ASSERT_TRUE(undone.ok()) << undone.status();
  EXPECT_EQ(undone->status().revision(), 2u);
  EXPECT_EQ(told().size(), 6u);
  std::vector<std::string> reasons;
  const v1::DeploymentStatus final_status = status();
  for (const v1::RolloutEvent& event : final_status.events()) reasons.push_back(event.reason());
  EXPECT_EQ(reasons, (std::vector<std::string>{"RevisionCreated", "RevisionCreated", "WaveStarted",
                                               "Paused", "Resumed", "GatePassed", "WaveStarted",
                                               "Aborted", "Undone"}));
}

TEST_P(RolloutTest, RegressionAReportAboutTheInstanceAReplacementReplacedDoesNotPassTheGate) {
  ASSERT_NO_FATAL_FAILURE(start_second_revision(/*rollback=*/true));
  // The canaries' last reports are about revision 1's instances (same names, same image, other
  // uids): until they report the new ones, the wave waits however long it bakes.
  ASSERT_TRUE(controller_->advance_rollouts(absl::Now() + absl::Hours(1)).ok());
  EXPECT_EQ(status().wave(), 1u);
  EXPECT_THAT(status().message(), HasSubstr("0 of 2 devices run revision 2"));
  // A device that is not connected is not ready either.
  controller_->close_session("edge-5", sessions_["edge-5"]);
  report("edge-6", 1000, 0);
  ASSERT_TRUE(controller_->advance_rollouts(absl::Now() + absl::Hours(1)).ok());
  EXPECT_THAT(status().message(), HasSubstr("1 of 2 devices run revision 2"));
}

TEST_P(RolloutTest, ARevisionThatCannotRunOnADeviceLaterWavesReachIsRefusedAtApply) {
  // edge-1 (no canary) has 16 MiB for guests; revision 2 asks each instance for 32 MiB. Only
  // the canaries are updated at once, but Apply checks every selected device.
  ASSERT_TRUE(apply({device("edge-1", "lab")}).ok());
  v1::CreateBootstrapTokenRequest token_request;
  token_request.set_device_name("edge-1");
  absl::StatusOr<v1::CreateBootstrapTokenResponse> token =
      controller_->create_bootstrap_token(token_request);
  ASSERT_TRUE(token.ok());
  v1::EnrollRequest enroll_request;
  enroll_request.set_bootstrap_token(token->token());
  enroll_request.set_device_name("edge-1");
  *enroll_request.mutable_profile() = test_support::simulated_device_profile();
  enroll_request.mutable_profile()->set_guest_memory_bytes(16 << 20);
  ASSERT_TRUE(controller_->enroll(enroll_request).ok());
  std::vector<v1::Object> canaries;
  for (int i = 5; i <= 6; ++i) {
    v1::Object object = device(absl::StrCat("edge-", i), "lab");
    (*object.mutable_device()->mutable_metadata()->mutable_labels())["canary"] = "true";
    canaries.push_back(object);
  }
  ASSERT_TRUE(apply(canaries).ok());
  for (int i = 5; i <= 6; ++i) enroll(absl::StrCat("edge-", i));
  ASSERT_TRUE(apply({control_loop_app(), staged_deployment(true, 3600)}).ok());
  v1::Object bigger = staged_deployment(true, 3600);
  bigger.mutable_deployment()->mutable_spec()->mutable_placement()->set_memory_bytes(32 << 20);
  absl::StatusOr<v1::ApplyResponse> refused = apply({bigger});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("edge-1"));
  EXPECT_EQ(status().revision(), 1u);
}

TEST_P(RolloutTest, AnUnschedulableRevisionIsRefusedBeforeAnyWaveStarts) {
  connect_fleet();
  ASSERT_TRUE(apply({control_loop_app(), staged_deployment(true, 3600)}).ok());
  told();
  // A revision whose pid task needs 2 ms every 1 ms.
  absl::StatusOr<v1::ApplyResponse> refused = apply({control_loop_app(2'000'000)});
  EXPECT_FALSE(refused.ok());
  EXPECT_EQ(status().revision(), 1u);
  EXPECT_TRUE(told().empty());
}

}  // namespace
}  // namespace tenon::controller
