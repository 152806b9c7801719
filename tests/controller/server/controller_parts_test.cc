// The controller's parts on their own, without gRPC, KVM or the linker: the object cache and its
// watch history, the session hub, the planner's pure rules, and the migration orchestrator's
// state machine with scripted actions.
#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "crypto/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "migration_orchestrator.h"
#include "object_cache.h"
#include "outbound_queue.h"
#include "planner.h"
#include "recording_session.h"
#include "session_hub.h"

namespace tenon::controller {
namespace {

namespace v1 = tenon::v1;
using ::testing::HasSubstr;

v1::Object instance_object(const std::string& name, const std::string& deployment,
                           const std::string& device) {
  v1::Object object;
  v1::Instance* instance = object.mutable_instance();
  instance->mutable_metadata()->set_name(name);
  instance->mutable_spec()->set_deployment(deployment);
  instance->mutable_spec()->set_device(device);
  return object;
}

v1::Object device_object(const std::string& name, const std::string& site) {
  v1::Object object;
  object.mutable_device()->mutable_metadata()->set_name(name);
  (*object.mutable_device()->mutable_metadata()->mutable_labels())["site"] = site;
  return object;
}

CommittedChanges put(uint64_t version, std::vector<v1::Object> objects) {
  CommittedChanges changes;
  changes.resource_version = version;
  for (v1::Object& object : objects) {
    const v1::ObjectKind kind =
        object.has_device() ? v1::OBJECT_KIND_DEVICE : v1::OBJECT_KIND_INSTANCE;
    const std::string name = object.has_device() ? object.device().metadata().name()
                                                 : object.instance().metadata().name();
    changes.changes.push_back({kind, name, std::move(object)});
  }
  return changes;
}

// ---- ObjectCache --------------------------------------------------------------------------------

TEST(ObjectCacheTest, ServesWhatWasCommittedWithTheNewestResourceVersion) {
  ObjectCache cache;
  cache.apply(put(3, {device_object("edge-1", "lab"), device_object("edge-2", "plant")}));
  cache.apply(put(4, {instance_object("control-1", "control", "edge-1")}));
  EXPECT_EQ(cache.resource_version(), 4u);
  ASSERT_NE(cache.get(v1::OBJECT_KIND_DEVICE, "edge-2"), nullptr);
  EXPECT_EQ(cache.get(v1::OBJECT_KIND_DEVICE, "edge-3"), nullptr);
  EXPECT_EQ(cache.instances_of("control").size(), 1u);
  EXPECT_EQ(cache.count_devices([](const v1::Device& device) {
    return device.metadata().labels().at("site") == "lab";
  }),
            1u);
  CommittedChanges removal;
  removal.resource_version = 5;
  removal.changes.push_back({v1::OBJECT_KIND_INSTANCE, "control-1", std::nullopt});
  cache.apply(removal);
  EXPECT_TRUE(cache.instances_of("control").empty()) << "the deployment index follows deletes";
}

TEST(ObjectCacheTest, ListsPagesInNameOrderAfterAName) {
  ObjectCache cache;
  std::vector<v1::Object> devices;
  for (const char* name : {"d", "a", "c", "b", "e"}) devices.push_back(device_object(name, "x"));
  cache.apply(put(1, devices));
  bool more = false;
  uint64_t version = 0;
  auto page = cache.list(v1::OBJECT_KIND_DEVICE, "", 2, nullptr, &more, &version);
  ASSERT_EQ(page.size(), 2u);
  EXPECT_EQ(page[1]->device().metadata().name(), "b");
  EXPECT_TRUE(more);
  page = cache.list(v1::OBJECT_KIND_DEVICE, "b", 10, nullptr, &more, &version);
  ASSERT_EQ(page.size(), 3u);
  EXPECT_EQ(page[0]->device().metadata().name(), "c");
  EXPECT_FALSE(more);
  EXPECT_EQ(version, 1u);
}

TEST(ObjectCacheTest, WatchResumesFromAVersionAndReportsEachChangeOnce) {
  ObjectCache cache;
  cache.apply(put(1, {device_object("edge-1", "lab")}));
  cache.apply(put(2, {device_object("edge-1", "plant"), instance_object("i", "d", "edge-1")}));
  CommittedChanges removal;
  removal.resource_version = 3;
  removal.changes.push_back({v1::OBJECT_KIND_DEVICE, "edge-1", std::nullopt});
  cache.apply(removal);
  uint64_t reached = 0;
  auto events = cache.events_after(v1::OBJECT_KIND_DEVICE, 1, absl::Now(), &reached);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 2u) << "the instance is another kind";
  EXPECT_EQ((*events)[0].type, CacheEvent::Type::kModified);
  EXPECT_EQ((*events)[1].type, CacheEvent::Type::kDeleted);
  EXPECT_EQ((*events)[1].object->device().metadata().labels().at("site"), "plant")
      << "a delete carries the object as it was";
  EXPECT_EQ(reached, 3u);
  events = cache.events_after(v1::OBJECT_KIND_DEVICE, reached, absl::Now(), &reached);
  ASSERT_TRUE(events.ok());
  EXPECT_TRUE(events->empty()) << "nothing new after the version reached";
}

TEST(ObjectCacheTest, AWatcherWakesOnTheNextCommit) {
  ObjectCache cache;
  cache.apply(put(1, {device_object("edge-1", "lab")}));
  std::thread writer([&] { cache.apply(put(2, {device_object("edge-2", "lab")})); });
  uint64_t reached = 0;
  // No deadline: a watcher that is never woken hangs here, and ctest's timeout fails the test.
  auto events = cache.events_after(v1::OBJECT_KIND_DEVICE, 1, absl::InfiniteFuture(), &reached);
  writer.join();
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].object->device().metadata().name(), "edge-2");
}

TEST(ObjectCacheTest, AVersionOlderThanTheHistoryMustListAgain) {
  ObjectCache cache;
  for (uint64_t version = 1; version <= ObjectCache::kHistoryEvents + 10; ++version) {
    cache.apply(put(version, {device_object("edge-1", version % 2 ? "lab" : "plant")}));
  }
  uint64_t reached = 0;
  auto events = cache.events_after(v1::OBJECT_KIND_DEVICE, 2, absl::Now(), &reached);
  EXPECT_EQ(events.status().code(), absl::StatusCode::kOutOfRange) << events.status();
  EXPECT_THAT(events.status().message(), HasSubstr("list again"));
}

// ---- SessionHub ---------------------------------------------------------------------------------

TEST(SessionHubTest, ASecondStreamSupersedesTheFirstWhichThenCannotDetachTheDevice) {
  SessionHub hub;
  auto first = std::make_shared<RecordingSession>();
  auto second = std::make_shared<RecordingSession>();
  hub.attach("edge-1", first, 0, {});
  hub.attach("edge-1", second, 0, {});
  ASSERT_TRUE(first->closed().has_value());
  EXPECT_EQ(first->closed()->code(), absl::StatusCode::kAborted);
  EXPECT_FALSE(hub.touch("edge-1", first.get()));
  EXPECT_FALSE(hub.detach("edge-1", first.get())) << "the old stream's end changes nothing";
  EXPECT_TRUE(hub.connected("edge-1"));
  EXPECT_TRUE(hub.detach("edge-1", second.get()));
  EXPECT_FALSE(hub.connected("edge-1"));
}

TEST(SessionHubTest, AnOlderDesiredStateNeverOvertakesANewerOne) {
  SessionHub hub;
  auto session = std::make_shared<RecordingSession>();
  hub.attach("edge-1", session, 0, {});
  auto state = [](uint64_t version) {
    auto desired = std::make_shared<v1::DesiredState>();
    desired->set_version(version);
    return desired;
  };
  EXPECT_TRUE(hub.send_desired_state("edge-1", state(7)));
  EXPECT_FALSE(hub.send_desired_state("edge-1", state(6)));
  ASSERT_EQ(session->count(), 1u);
  EXPECT_EQ(hub.desired_state("edge-1")->version(), 7u);
  EXPECT_FALSE(hub.send_desired_state("edge-2", state(1))) << "not connected: recorded only";
  EXPECT_EQ(hub.desired_state("edge-2")->version(), 1u);
}

TEST(SessionHubTest, PingsTheLivelyAndDisconnectsTheSilent) {
  SessionHub hub;
  auto lively = std::make_shared<RecordingSession>();
  auto silent = std::make_shared<RecordingSession>();
  hub.attach("lively", lively, 0, {});
  hub.attach("silent", silent, 0, {});
  const absl::Time later = absl::Now() + absl::Seconds(20);
  hub.touch("lively", lively.get());
  std::vector<std::string> gone = hub.ping_all(absl::Now(), absl::Seconds(15));
  EXPECT_TRUE(gone.empty());
  EXPECT_EQ(lively->count(), 1u);
  gone = hub.ping_all(later, absl::Seconds(15));
  EXPECT_THAT(gone, ::testing::UnorderedElementsAre("lively", "silent"));
  ASSERT_TRUE(silent->closed().has_value());
  EXPECT_EQ(silent->closed()->code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(hub.connected("silent"));
  auto changed = hub.take_changed();
  EXPECT_EQ(changed.size(), 2u) << "both disconnections are written with the next flush";
  EXPECT_TRUE(hub.take_changed().empty());
}

// ---- OutboundQueue ------------------------------------------------------------------------------

TEST(OutboundQueueTest, AnAgentThatStopsReadingCannotGrowItsBacklogPastTheBound) {
  OutboundQueue queue(64 << 10);
  v1::ControllerMessage chunk;
  chunk.mutable_image_chunk()->set_data(std::string(16 << 10, 'x'));
  int queued = 0;
  while (queue.push(chunk)) ++queued;
  EXPECT_EQ(queued, 3) << "three 16 KiB chunks and their framing fit in 64 KiB, a fourth not";
  EXPECT_LE(queue.bytes(), 64u << 10);
  queue.drop_waiting();
  EXPECT_FALSE(queue.empty()) << "the message being written stays";
  queue.pop();
  EXPECT_TRUE(queue.empty());
  EXPECT_EQ(queue.bytes(), 0u);
  v1::ControllerMessage huge;
  huge.mutable_image_chunk()->set_data(std::string(128 << 10, 'x'));
  EXPECT_TRUE(queue.push(huge)) << "one message larger than the bound still goes alone";
  EXPECT_FALSE(queue.push(chunk));
}

// ---- Planner ------------------------------------------------------------------------------------

v1::Device enrolled_device(const std::string& name, const std::string& site) {
  v1::Device device = device_object(name, site).device();
  device.mutable_status()->set_connection_state(v1::CONNECTION_STATE_CONNECTED);
  device.mutable_status()->mutable_profile()->set_arch(v1::ARCH_X86_64);
  return device;
}

struct PlannerFixture {
  FleetView view;
  std::vector<MigrationInProgress> migrations;
  int composed = 0;
  PlannerInputs inputs() {
    PlannerInputs inputs;
    inputs.view = &view;
    inputs.migrations = &migrations;
    inputs.compose = [this](const std::string& app, const v1::AppSpec&, const v1::DeviceProfile&,
                            const v1::Placement&) -> absl::StatusOr<ComposedApp> {
      ++composed;
      if (app == "too-big") return absl::FailedPreconditionError("does not fit");
      auto composition = std::make_shared<v1::Composition>();
      composition->mutable_metadata()->set_name(app + "-composition");
      composition->set_image_digest("sha256:" + app);
      ComposedApp result;
      result.composition = std::move(composition);
      result.memory_bytes = 1 << 20;
      return result;
    };
    inputs.image_size = [](const std::string&) -> uint64_t { return 4096; };
    return inputs;
  }
  void deploy(const std::string& name, const std::string& app, const std::string& site) {
    v1::Deployment& deployment = view.deployments[name];
    deployment.mutable_metadata()->set_name(name);
    deployment.mutable_spec()->set_app(app);
    (*deployment.mutable_spec()->mutable_selector()->mutable_match_labels())["site"] = site;
    view.apps[app].mutable_metadata()->set_name(app);
  }
};

TEST(PlannerTest, PlansTheSelectedDeploymentsAndNamesWhatCannotRun) {
  PlannerFixture fleet;
  fleet.deploy("control", "control", "lab");
  fleet.deploy("big", "too-big", "lab");
  fleet.deploy("elsewhere", "control", "plant");
  DevicePlan plan = plan_device(fleet.inputs(), enrolled_device("edge-1", "lab"), nullptr, nullptr);
  ASSERT_EQ(plan.instances.size(), 1u);
  EXPECT_EQ(plan.instances[0].desired.name(), instance_name("control", "edge-1"));
  EXPECT_EQ(plan.instances[0].desired.image_digest(), "sha256:control");
  EXPECT_EQ(plan.instances[0].desired.placement().memory_bytes(), 1u << 20);
  EXPECT_EQ(plan.errors.at("big"), "does not fit");
  EXPECT_FALSE(plan.errors.contains("elsewhere"));
}

TEST(PlannerTest, AnUnenrolledDeviceRunsNothing) {
  PlannerFixture fleet;
  fleet.deploy("control", "control", "lab");
  v1::Device device = device_object("edge-1", "lab").device();
  device.mutable_status()->set_connection_state(v1::CONNECTION_STATE_NOT_ENROLLED);
  EXPECT_TRUE(plan_device(fleet.inputs(), device, nullptr, nullptr).instances.empty());
  EXPECT_EQ(fleet.composed, 0);
}

TEST(PlannerTest, AMigratedInstanceStaysWhereItWentAndItsSourceHoldsItPausedMeanwhile) {
  PlannerFixture fleet;
  fleet.deploy("control", "control", "lab");
  const std::string name = instance_name("control", "edge-1");
  std::map<std::string, v1::Instance> stored;
  stored[name] = instance_object(name, "control", "edge-2").instance();  // moved to edge-2
  fleet.migrations.push_back({name, "edge-1", "edge-2", "sha256:snapshot"});
  const ExistingInstances existing = index_existing(stored, fleet.migrations);
  uint64_t examined = 0;
  DevicePlan source =
      plan_device(fleet.inputs(), enrolled_device("edge-1", "lab"), &existing, &examined);
  ASSERT_EQ(source.instances.size(), 1u);
  EXPECT_EQ(source.instances[0].desired.state(), v1::DESIRED_INSTANCE_STATE_PAUSED);
  DevicePlan target =
      plan_device(fleet.inputs(), enrolled_device("edge-2", "plant"), &existing, &examined);
  ASSERT_EQ(target.instances.size(), 1u);
  EXPECT_EQ(target.instances[0].desired.name(), name) << "keeps its name";
  EXPECT_EQ(target.instances[0].desired.restore_snapshot_digest(), "sha256:snapshot");
  fleet.migrations.clear();  // done: the source drops its copy
  const ExistingInstances after = index_existing(stored, fleet.migrations);
  EXPECT_TRUE(plan_device(fleet.inputs(), enrolled_device("edge-1", "lab"), &after, &examined)
                  .instances.empty());
}

TEST(PlannerTest, ACordonedDeviceKeepsWhatItRunsAndReceivesNothingNew) {
  PlannerFixture fleet;
  fleet.deploy("control", "control", "lab");
  fleet.deploy("added", "other", "lab");  // selects the device, which does not run it yet
  v1::Device device = enrolled_device("edge-1", "lab");
  device.mutable_spec()->set_cordoned(true);
  const std::string name = instance_name("control", "edge-1");
  std::map<std::string, v1::Instance> stored;
  stored[name] = instance_object(name, "control", "edge-1").instance();
  stored[name].mutable_spec()->set_image_digest("sha256:old");
  const ExistingInstances existing = index_existing(stored, fleet.migrations);
  DevicePlan plan = plan_device(fleet.inputs(), device, &existing, nullptr);
  ASSERT_EQ(plan.instances.size(), 1u) << "no instance of the added deployment";
  EXPECT_EQ(plan.instances[0].desired.name(), name);
  EXPECT_EQ(plan.instances[0].desired.image_digest(), "sha256:old") << "not updated";
  EXPECT_TRUE(plan.errors.empty());
  EXPECT_EQ(fleet.composed, 0);
}

TEST(PlannerTest, SetBasedSelectorsSelectAsKubectlDoes) {
  v1::LabelSelector selector;
  v1::LabelExpression* in = selector.add_match_expressions();
  in->set_key("site");
  in->set_relation(v1::LabelExpression::RELATION_IN);
  in->add_values("lab");
  in->add_values("plant");
  v1::LabelExpression* absent = selector.add_match_expressions();
  absent->set_key("cordon");
  absent->set_relation(v1::LabelExpression::RELATION_DOES_NOT_EXIST);
  EXPECT_TRUE(selector_matches(selector, device_object("a", "lab").device().metadata().labels()));
  EXPECT_FALSE(selector_matches(selector, device_object("b", "home").device().metadata().labels()));
  v1::Object cordoned = device_object("c", "plant");
  (*cordoned.mutable_device()->mutable_metadata()->mutable_labels())["cordon"] = "";
  EXPECT_FALSE(selector_matches(selector, cordoned.device().metadata().labels()));
  EXPECT_FALSE(selector_matches(v1::LabelSelector(), {})) << "an empty selector selects none";
}

// ---- MigrationOrchestrator ----------------------------------------------------------------------

// Actions that record what the orchestrator asked for.
struct ScriptedActions {
  absl::Mutex mutex;
  std::vector<std::string> calls ABSL_GUARDED_BY(mutex);
  std::string stored_digest ABSL_GUARDED_BY(mutex);
  MigrationOrchestrator::Actions actions() {
    MigrationOrchestrator::Actions actions;
    actions.replan_and_send = [this](const std::set<std::string>& devices) {
      absl::MutexLock lock(&mutex);
      calls.push_back(absl::StrCat("replan ", absl::StrJoin(devices, ",")));
      return absl::OkStatus();
    };
    actions.assign = [this](const std::string& instance, const std::string& device,
                            const std::string&) {
      absl::MutexLock lock(&mutex);
      calls.push_back(absl::StrCat("assign ", instance, " ", device));
      return absl::OkStatus();
    };
    actions.send = [this](const std::string& device, v1::ControllerMessage message) {
      absl::MutexLock lock(&mutex);
      calls.push_back(absl::StrCat("send ", device, " snapshot=", message.has_snapshot()));
      return true;
    };
    actions.connected = [](const std::string&) { return true; };
    actions.read_instance = [](const std::string& name) -> absl::StatusOr<v1::Instance> {
      return instance_object(name, "control", "edge-2").instance();
    };
    actions.store_blob = [this](const std::string& digest, const std::string&) {
      absl::MutexLock lock(&mutex);
      stored_digest = digest;
      return absl::OkStatus();
    };
    return actions;
  }
};

// Waits until the orchestrator sent the snapshot command to the source.
void wait_for_snapshot_command(ScriptedActions& script) {
  absl::MutexLock lock(&script.mutex);
  auto sent = [&] {
    return std::any_of(script.calls.begin(), script.calls.end(),
                       [](const std::string& call) { return call.rfind("send edge-1", 0) == 0; });
  };
  script.mutex.Await(absl::Condition(&sent));
}

TEST(MigrationOrchestratorTest, ASnapshotErrorReportedByTheSourceRollsBackWithItsReason) {
  ScriptedActions script;
  std::string id;
  MigrationOrchestrator::Actions actions = script.actions();
  actions.send = [&](const std::string& device, v1::ControllerMessage message) {
    absl::MutexLock lock(&script.mutex);
    id = message.snapshot().migration_id();
    script.calls.push_back(absl::StrCat("send ", device, " snapshot=", message.has_snapshot()));
    return true;
  };
  MigrationOrchestrator orchestrator(actions);
  absl::Notification finished;
  absl::Status outcome;
  ASSERT_TRUE(orchestrator
                  .start("control-1", "edge-1", "edge-2", absl::Seconds(60),
                         [&](absl::StatusOr<v1::MigrateResponse> result) {
                           outcome = result.status();
                           finished.Notify();
                         })
                  .ok());
  wait_for_snapshot_command(script);
  EXPECT_EQ(orchestrator.start("control-1", "edge-1", "edge-2", absl::Seconds(60), nullptr).code(),
            absl::StatusCode::kAborted)
      << "one migration per instance";
  ASSERT_EQ(orchestrator.in_progress().size(), 1u);
  v1::SnapshotUpload failure;
  {
    absl::MutexLock lock(&script.mutex);
    failure.set_migration_id(id);
  }
  failure.set_error("mortised: the instance has channels");
  orchestrator.on_snapshot_upload("edge-2", failure);  // not the source: ignored
  orchestrator.on_snapshot_upload("edge-1", failure);
  finished.WaitForNotification();
  EXPECT_EQ(outcome.code(), absl::StatusCode::kFailedPrecondition) << outcome;
  EXPECT_THAT(outcome.message(), HasSubstr("failed at step 'snapshot'"));
  EXPECT_THAT(outcome.message(), HasSubstr("the instance has channels"));
  EXPECT_THAT(outcome.message(), HasSubstr("runs on edge-1 again"));
  absl::MutexLock lock(&script.mutex);
  EXPECT_THAT(script.calls, ::testing::Contains("assign control-1 edge-1"));
}

TEST(MigrationOrchestratorTest, AStepThatTakesTooLongIsADeadlineAndADisconnectAPrecondition) {
  for (const bool disconnect : {false, true}) {
    ScriptedActions script;
    MigrationOrchestrator orchestrator(script.actions());
    absl::Notification finished;
    absl::Status outcome;
    ASSERT_TRUE(orchestrator
                    .start("control-1", "edge-1", "edge-2",
                           disconnect ? absl::Seconds(60) : absl::Milliseconds(1),
                           [&](absl::StatusOr<v1::MigrateResponse> result) {
                             outcome = result.status();
                             finished.Notify();
                           })
                    .ok());
    if (disconnect) {
      wait_for_snapshot_command(script);
      orchestrator.on_disconnect("edge-2");
    }
    finished.WaitForNotification();
    EXPECT_EQ(outcome.code(), disconnect ? absl::StatusCode::kFailedPrecondition
                                         : absl::StatusCode::kDeadlineExceeded)
        << outcome;
    EXPECT_TRUE(orchestrator.in_progress().empty());
  }
}

TEST(MigrationOrchestratorTest, AVerifiedUploadAndARunningTargetCompleteTheMigration) {
  ScriptedActions script;
  std::string id;
  MigrationOrchestrator::Actions actions = script.actions();
  actions.send = [&](const std::string&, v1::ControllerMessage message) {
    absl::MutexLock lock(&script.mutex);
    id = message.snapshot().migration_id();
    script.calls.push_back("send edge-1 snapshot=1");
    return true;
  };
  MigrationOrchestrator orchestrator(actions);
  absl::Notification finished;
  absl::StatusOr<v1::MigrateResponse> outcome;
  ASSERT_TRUE(orchestrator
                  .start("control-1", "edge-1", "edge-2", absl::Seconds(60),
                         [&](absl::StatusOr<v1::MigrateResponse> result) {
                           outcome = std::move(result);
                           finished.Notify();
                         })
                  .ok());
  wait_for_snapshot_command(script);
  const std::string bytes = "a snapshot";
  v1::SnapshotUpload upload;
  {
    absl::MutexLock lock(&script.mutex);
    upload.set_migration_id(id);
  }
  upload.mutable_chunk()->set_data(bytes);
  upload.mutable_chunk()->set_total_size_bytes(bytes.size());
  upload.mutable_chunk()->set_last(true);
  upload.mutable_chunk()->set_digest(crypto::sha256_digest(bytes));
  orchestrator.on_snapshot_upload("edge-1", upload);
  // The target reports the restored instance running once it was told to restore it.
  {
    absl::MutexLock lock(&script.mutex);
    auto assigned = [&] {
      return std::find(script.calls.begin(), script.calls.end(), "replan edge-1,edge-2") !=
             script.calls.end();
    };
    script.mutex.Await(absl::Condition(&assigned));
  }
  v1::InstanceStatusUpdate running;
  running.set_instance_name("control-1");
  running.set_state(v1::INSTANCE_STATE_RUNNING);
  orchestrator.on_status("edge-2", running);
  finished.WaitForNotification();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->report().snapshot_bytes(), bytes.size());
  absl::MutexLock lock(&script.mutex);
  EXPECT_EQ(script.stored_digest, crypto::sha256_digest(bytes));
  EXPECT_THAT(script.calls, ::testing::Contains("assign control-1 edge-2"));
}

}  // namespace
}  // namespace tenon::controller
