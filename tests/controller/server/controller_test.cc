// The controller core against a real SQLite store, the real catalog and the real linker, with
// agent sessions recorded in memory: apply, refusals, optimistic concurrency, enrolment, the
// agent stream's messages, images in chunks, diff, delete, and the /metrics page.
#include "controller.h"

#include <sqlite3.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "api_metrics.h"
#include "controller_fixture.h"
#include "crypto/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shell_command.h"

namespace tenon::controller {
namespace {

using ::testing::HasSubstr;

TEST(SelectorTest, MatchesLabelsAndExpressions) {
  google::protobuf::Map<std::string, std::string> labels;
  labels["site"] = "lab";
  labels["class"] = "edge";
  v1::LabelSelector selector;
  EXPECT_FALSE(selector_matches(selector, labels)) << "an empty selector selects nothing";
  (*selector.mutable_match_labels())["site"] = "lab";
  EXPECT_TRUE(selector_matches(selector, labels));
  v1::LabelExpression* expression = selector.add_match_expressions();
  expression->set_key("class");
  expression->set_relation(v1::LabelExpression::RELATION_IN);
  expression->add_values("gateway");
  EXPECT_FALSE(selector_matches(selector, labels));
  expression->add_values("edge");
  EXPECT_TRUE(selector_matches(selector, labels));
  expression->set_relation(v1::LabelExpression::RELATION_NOT_IN);
  EXPECT_FALSE(selector_matches(selector, labels));
  expression->clear_values();
  expression->set_relation(v1::LabelExpression::RELATION_DOES_NOT_EXIST);
  EXPECT_FALSE(selector_matches(selector, labels));
  expression->set_key("rack");
  EXPECT_TRUE(selector_matches(selector, labels));
}

// Every test runs on both stores.
class ControllerTest : public ControllerFixture, public ::testing::WithParamInterface<StoreKind> {
 protected:
  StoreKind store_kind() const override { return GetParam(); }
};
INSTANTIATE_TEST_SUITE_P(Stores, ControllerTest,
                         ::testing::Values(StoreKind::kSqlite, StoreKind::kPostgres),
                         store_kind_name);

// Tests that reach into the SQLite file itself (another connection's locks).
class SqliteControllerTest : public ControllerFixture {
 protected:
  StoreKind store_kind() const override { return StoreKind::kSqlite; }
};

TEST_P(ControllerTest, ApplyCreatesThenReportsUnchangedAndUpdated) {
  auto first =
      apply({device("edge-1", "lab"), control_loop_app(), deployment("control", "control", "lab")});
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->results_size(), 3);
  for (const v1::ApplyResult& result : first->results()) {
    EXPECT_EQ(result.action(), v1::CHANGE_ACTION_CREATE);
  }
  EXPECT_EQ(first->results(0).object().device().status().connection_state(),
            v1::CONNECTION_STATE_NOT_ENROLLED);
  auto again = apply({control_loop_app()});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->results(0).action(), v1::CHANGE_ACTION_UNCHANGED);
  EXPECT_EQ(again->results(0).object().app().metadata().generation(), 1u);
  auto changed = apply({control_loop_app(25'000)});
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_EQ(changed->results(0).action(), v1::CHANGE_ACTION_UPDATE);
  EXPECT_EQ(changed->results(0).object().app().metadata().generation(), 2u);
  EXPECT_EQ(changed->results(0).object().app().metadata().uid(),
            first->results(1).object().app().metadata().uid());
}

// Regression for the one-lock controller, where a Get waited behind every write (measured at
// 10,000 devices: p99 2 s). A writer is made to wait for the store (another connection holds
// SQLite's write lock) while it holds the write path; reads must answer meanwhile.
TEST_F(SqliteControllerTest, OperatorReadsAnswerWhileAWriteWaitsForTheStore) {
  ASSERT_TRUE(
      apply({device("edge-1", "lab"), control_loop_app(), deployment("control", "control", "lab")})
          .ok());
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/controller.db").c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  std::atomic<pid_t> writer_thread = 0;
  std::atomic<bool> written = false;
  std::thread writer([&] {
    writer_thread = static_cast<pid_t>(::syscall(SYS_gettid));
    EXPECT_TRUE(apply({device("edge-2", "lab")}).ok());
    written = true;
  });
  // The writer sleeps in SQLite's busy handler, holding the write path.
  auto sleeping = [&] {
    if (writer_thread == 0) return false;
    std::ifstream stat(absl::StrCat("/proc/self/task/", writer_thread.load(), "/stat"));
    std::string pid, name, state;
    stat >> pid >> name >> state;
    return state == "S";
  };
  const absl::Time deadline = absl::Now() + absl::Seconds(4);
  while (!sleeping() && absl::Now() < deadline) std::this_thread::yield();
  ASSERT_TRUE(sleeping()) << "the writer never waited for the store";
  v1::GetRequest get;
  get.set_kind(v1::OBJECT_KIND_DEPLOYMENT);
  get.set_name("control");
  EXPECT_TRUE(controller_->get(get).ok());
  v1::ListRequest list;
  list.set_kind(v1::OBJECT_KIND_DEVICE);
  absl::StatusOr<v1::ListResponse> devices = controller_->list(list);
  ASSERT_TRUE(devices.ok());
  EXPECT_EQ(devices->objects_size(), 1) << "the pending write is not visible";
  EXPECT_FALSE(written) << "the write waited for the store all along";
  ASSERT_EQ(sqlite3_exec(other, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  writer.join();
  devices = controller_->list(list);
  ASSERT_TRUE(devices.ok());
  EXPECT_EQ(devices->objects_size(), 2) << "a committed write is read back at once";
  EXPECT_GT(devices->resource_version(), 0u);
}

// Transactions commit before memory changes: a write the store refuses leaves no trace in what
// operators read.
TEST_F(SqliteControllerTest, ARefusedWriteLeavesTheCacheAsTheStoreIs) {
  ASSERT_TRUE(apply({device("edge-1", "lab")}).ok());
  v1::ListRequest list;
  list.set_kind(v1::OBJECT_KIND_DEVICE);
  const uint64_t before = controller_->list(list)->resource_version();
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/controller.db").c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  EXPECT_FALSE(apply({device("edge-2", "lab")}).ok()) << "the store stayed busy past its timeout";
  ASSERT_EQ(sqlite3_exec(other, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  absl::StatusOr<v1::ListResponse> devices = controller_->list(list);
  ASSERT_TRUE(devices.ok());
  EXPECT_EQ(devices->objects_size(), 1);
  EXPECT_EQ(devices->resource_version(), before);
}

// Fields nothing acts on yet are refused with the reason instead of stored and ignored.
TEST_P(ControllerTest, FieldsNothingActsOnAreRefusedAtApplyNamingTheField) {
  v1::Object latency = deployment("control", "control", "lab");
  latency.mutable_deployment()->mutable_spec()->set_composition_policy(
      v1::COMPOSITION_POLICY_MINIMISE_LATENCY);
  absl::StatusOr<v1::ApplyResponse> refused = apply({control_loop_app(), latency});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(refused.status().message(), HasSubstr("spec.composition_policy"));
  v1::Object soft = control_loop_app();
  soft.mutable_app()->mutable_spec()->mutable_tasks(2)->set_criticality(v1::CRITICALITY_SOFT);
  refused = apply({soft});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(refused.status().message(), HasSubstr("tasks[2].criticality"));
  v1::ListRequest list;
  list.set_kind(v1::OBJECT_KIND_APP);
  EXPECT_EQ(controller_->list(list)->objects_size(), 0) << "nothing was stored";
}

TEST_P(ControllerTest, StaleGenerationIsAbortedAndNothingStored) {
  ASSERT_TRUE(apply({control_loop_app()}).ok());
  v1::Object stale = control_loop_app(30'000);
  stale.mutable_app()->mutable_metadata()->set_generation(7);
  auto result = apply({stale, device("edge-9", "lab")});
  EXPECT_TRUE(absl::IsAborted(result.status())) << result.status();
  v1::GetRequest get;
  get.set_kind(v1::OBJECT_KIND_DEVICE);
  get.set_name("edge-9");
  EXPECT_TRUE(absl::IsNotFound(controller_->get(get).status())) << "the request is one transaction";
}

TEST_P(ControllerTest, MalformedAndDanglingObjectsAreRefused) {
  v1::Object bad = device("Edge_1", "lab");
  auto result = apply({bad});
  EXPECT_TRUE(absl::IsInvalidArgument(result.status())) << result.status();
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("metadata.name"));
  auto dangling = apply({deployment("control", "nope", "lab")});
  EXPECT_TRUE(absl::IsNotFound(dangling.status())) << dangling.status();
  v1::Object instance;
  instance.mutable_instance()->mutable_metadata()->set_name("x");
  EXPECT_TRUE(absl::IsInvalidArgument(apply({instance}).status()));
}

TEST_P(ControllerTest, UnschedulableDeploymentIsRefusedUpFront) {
  ASSERT_TRUE(apply({device("edge-1", "lab")}).ok());
  enroll("edge-1");
  // pid needs 990 us of every 1 ms: with the supervisor and logger it cannot meet its deadlines.
  auto result = apply({control_loop_app(990'000), deployment("control", "control", "lab")});
  EXPECT_TRUE(absl::IsFailedPrecondition(result.status())) << result.status();
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("edge-1"));
  v1::ListRequest list;
  list.set_kind(v1::OBJECT_KIND_DEPLOYMENT);
  auto deployments = controller_->list(list);
  ASSERT_TRUE(deployments.ok());
  EXPECT_EQ(deployments->objects_size(), 0);
}

TEST_P(ControllerTest, EnrolmentChecksTokens) {
  v1::EnrollRequest request;
  request.set_bootstrap_token("not-a-token");
  request.set_device_name("edge-1");
  *request.mutable_profile() = test_support::simulated_device_profile();
  EXPECT_TRUE(absl::IsUnauthenticated(controller_->enroll(request).status()));

  v1::CreateBootstrapTokenRequest bound;
  bound.set_device_name("edge-2");
  auto token = controller_->create_bootstrap_token(bound);
  ASSERT_TRUE(token.ok());
  request.set_bootstrap_token(token->token());
  EXPECT_TRUE(absl::IsPermissionDenied(controller_->enroll(request).status()));
  request.set_device_name("edge-2");
  auto enrolled = controller_->enroll(request);
  ASSERT_TRUE(enrolled.ok()) << enrolled.status();
  EXPECT_FALSE(enrolled->credential().empty());
  EXPECT_TRUE(absl::IsUnauthenticated(controller_->enroll(request).status()))
      << "a one-use token is used up";

  v1::CreateBootstrapTokenRequest any;
  any.set_max_uses(2);
  auto shared = controller_->create_bootstrap_token(any);
  ASSERT_TRUE(shared.ok());
  request.set_bootstrap_token(shared->token());
  EXPECT_TRUE(absl::IsAlreadyExists(controller_->enroll(request).status()))
      << "edge-2 is enrolled and the token is not bound to it";
}

TEST_P(ControllerTest, BootstrapTokenTtlIsBoundedAndNeverWraps) {
  auto with_ttl = [&](int64_t seconds) {
    v1::CreateBootstrapTokenRequest request;
    request.mutable_ttl()->set_seconds(seconds);
    return controller_->create_bootstrap_token(request);
  };
  constexpr int64_t kYear = 365LL * 24 * 3600;
  // 300 years was refused as "not positive", 10,000 years expired in 2089.
  for (const int64_t seconds : {300 * kYear, 10'000 * kYear, int64_t{0}, int64_t{-5}}) {
    auto refused = with_ttl(seconds);
    EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << seconds;
    EXPECT_THAT(refused.status().message(), HasSubstr("365 days")) << seconds;
  }
  auto year = with_ttl(kYear);
  ASSERT_TRUE(year.ok()) << year.status();
  EXPECT_NEAR(static_cast<double>(year->expire_time().seconds()),
              static_cast<double>(absl::ToUnixSeconds(absl::Now()) + kYear), 60.0);
}

TEST_P(ControllerTest, ABootstrapTokenCannotRelabelAnExistingDevice) {
  ASSERT_TRUE(apply({device("edge-1", "lab")}).ok());
  v1::CreateBootstrapTokenRequest request;
  request.set_device_name("edge-1");
  (*request.mutable_labels())["site"] = "elsewhere";
  auto refused = controller_->create_bootstrap_token(request);
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr("edge-1 exists"));
  request.clear_labels();
  EXPECT_TRUE(controller_->create_bootstrap_token(request).ok()) << "no labels: fine";
}

TEST_P(ControllerTest, ASilentAgentIsDisconnectedAfterThreePingIntervals) {
  ControllerConfig config;
  config.ping_interval = absl::Milliseconds(100);
  controller_ = make_controller(config);
  ASSERT_TRUE(apply({device("edge-1", "lab")}).ok());
  v1::CreateBootstrapTokenRequest bound;
  bound.set_device_name("edge-1");
  auto token = controller_->create_bootstrap_token(bound);
  ASSERT_TRUE(token.ok());
  v1::EnrollRequest enroll;
  enroll.set_bootstrap_token(token->token());
  enroll.set_device_name("edge-1");
  *enroll.mutable_profile() = test_support::simulated_device_profile();
  auto enrolled = controller_->enroll(enroll);
  ASSERT_TRUE(enrolled.ok()) << enrolled.status();
  auto session = std::make_shared<RecordingSession>();
  v1::Hello hello;
  hello.set_device_name("edge-1");
  hello.set_credential(enrolled->credential());
  *hello.mutable_profile() = test_support::simulated_device_profile();
  ASSERT_TRUE(controller_->open_session(session, hello).ok());
  auto connection = [&] {
    v1::GetRequest get;
    get.set_kind(v1::OBJECT_KIND_DEVICE);
    get.set_name("edge-1");
    return controller_->get(get)->device().status().connection_state();
  };
  // Answering its pings keeps it connected, well past three intervals.
  for (int i = 0; i < 6; ++i) {
    absl::SleepFor(absl::Milliseconds(100));
    controller_->ping_all();
    v1::AgentMessage ack;
    ack.mutable_ack()->set_controller_sequence(1);
    ack.mutable_ack()->set_outcome(v1::ACK_OUTCOME_ACCEPTED);
    ASSERT_TRUE(controller_->handle("edge-1", session, ack).ok());
  }
  EXPECT_EQ(connection(), v1::CONNECTION_STATE_CONNECTED);
  EXPECT_FALSE(session->closed().has_value());
  // Silent (a stopped agent): disconnected once three intervals have passed.
  absl::SleepFor(absl::Milliseconds(350));
  controller_->ping_all();
  ASSERT_TRUE(session->closed().has_value());
  EXPECT_TRUE(absl::IsUnavailable(*session->closed())) << *session->closed();
  EXPECT_THAT(session->closed()->message(), HasSubstr("answered nothing"));
  EXPECT_EQ(connection(), v1::CONNECTION_STATE_DISCONNECTED);
}

TEST_P(ControllerTest, HelloWithWrongCredentialIsUnauthenticated) {
  enroll("edge-1");
  auto session = std::make_shared<RecordingSession>();
  v1::Hello hello;
  hello.set_device_name("edge-1");
  hello.set_credential("wrong");
  EXPECT_TRUE(absl::IsUnauthenticated(controller_->open_session(session, hello)));
  hello.set_device_name("edge-404");
  EXPECT_TRUE(absl::IsUnauthenticated(controller_->open_session(session, hello)));
}

TEST_P(ControllerTest, AgentGetsDesiredStateAndImageInVerifiedChunks) {
  ASSERT_TRUE(apply({device("edge-1", "lab")}).ok());
  const std::string credential = enroll("edge-1");
  auto session = connect("edge-1", credential);
  std::vector<v1::ControllerMessage> messages = sent(*session);
  ASSERT_FALSE(messages.empty());
  EXPECT_TRUE(messages[0].has_welcome());
  EXPECT_FALSE(last_desired(messages).has_value()) << "nothing is deployed yet";

  ASSERT_TRUE(apply({control_loop_app(), deployment("control", "control", "lab")}).ok());
  std::optional<v1::DesiredState> desired = last_desired(sent(*session));
  ASSERT_TRUE(desired.has_value()) << "a connected agent hears of the change at once";
  ASSERT_EQ(desired->instances_size(), 1);
  const v1::DesiredInstance& instance = desired->instances(0);
  EXPECT_EQ(instance.name(), instance_name("control", "edge-1"));
  EXPECT_GT(instance.placement().memory_bytes(), 0u);

  v1::AgentMessage request;
  request.set_sequence(2);
  request.mutable_image_request()->set_digest(instance.image_digest());
  ASSERT_TRUE(controller_->handle("edge-1", session, request).ok());
  std::string image;
  bool last = false;
  for (const v1::ControllerMessage& message : sent(*session)) {
    if (!message.has_image_chunk()) continue;
    const v1::ImageChunk& chunk = message.image_chunk();
    EXPECT_EQ(chunk.offset(), image.size());
    EXPECT_EQ(chunk.chunk_sha256(), crypto::sha256_hex(chunk.data()));
    image += chunk.data();
    last = chunk.last();
  }
  EXPECT_TRUE(last);
  EXPECT_EQ(crypto::sha256_digest(image), instance.image_digest());

  // An image the device is not meant to run is not served.
  request.mutable_image_request()->set_digest("sha256:" + std::string(64, '0'));
  ASSERT_TRUE(controller_->handle("edge-1", session, request).ok());
  std::vector<v1::ControllerMessage> refused = sent(*session);
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0].error().code(), 5);

  // Status and telemetry show up on the instance.
  v1::AgentMessage status;
  status.set_sequence(3);
  v1::InstanceStatusUpdate* update = status.mutable_instance_status();
  update->set_instance_name(instance.name());
  update->set_state(v1::INSTANCE_STATE_RUNNING);
  update->set_image_digest(instance.image_digest());
  ASSERT_TRUE(controller_->handle("edge-1", session, status).ok());
  v1::AgentMessage telemetry;
  telemetry.set_sequence(4);
  v1::InstanceTelemetry* sample = telemetry.mutable_telemetry()->add_instances();
  sample->set_instance_name(instance.name());
  v1::TaskTelemetry* task = sample->add_tasks();
  task->set_task_name("pid");
  task->set_jobs(1000);
  task->set_deadline_misses(2);
  task->mutable_release_latency()->set_count(1000);
  task->mutable_release_latency()->set_tick_frequency_khz(2'000'000);
  for (int i = 0; i < 32; ++i)
    task->mutable_release_latency()->add_bucket_counts(i == 10 ? 1000 : 0);
  ASSERT_TRUE(controller_->handle("edge-1", session, telemetry).ok());
  v1::GetRequest get;
  get.set_kind(v1::OBJECT_KIND_INSTANCE);
  get.set_name(instance.name());
  auto object = controller_->get(get);
  ASSERT_TRUE(object.ok()) << object.status();
  EXPECT_EQ(object->instance().status().observed_state(), v1::INSTANCE_STATE_RUNNING);
  ASSERT_EQ(object->instance().status().latency().tasks_size(), 1);
  EXPECT_EQ(object->instance().status().latency().tasks(0).deadline_misses(), 2u);

  get.set_kind(v1::OBJECT_KIND_DEPLOYMENT);
  get.set_name("control");
  auto deployed = controller_->get(get);
  ASSERT_TRUE(deployed.ok());
  EXPECT_EQ(deployed->deployment().status().matched_devices(), 1u);
  EXPECT_EQ(deployed->deployment().status().running_instances(), 1u);
  EXPECT_EQ(deployed->deployment().status().phase(), v1::ROLLOUT_PHASE_COMPLETE);

  // The /metrics page is valid exposition format, checked by Prometheus' own tool.
  ApiMetrics metrics;
  metrics.record("grpc", "FleetService.Apply", absl::StatusCode::kOk, absl::Milliseconds(3));
  const std::string page = metrics.render(controller_->snapshot());
  EXPECT_THAT(page, HasSubstr("tenon_devices{state=\"connected\"} 1"));
  EXPECT_THAT(
      page,
      HasSubstr("tenon_deployment_rollout_phase{deployment=\"control\",phase=\"complete\"} 1"));
  EXPECT_THAT(page, HasSubstr("tenon_deployment_revision{deployment=\"control\"} 1"));
  EXPECT_THAT(page, HasSubstr("tenon_instance_task_deadline_misses_total{instance=\""));
  const std::string page_file = dir_ + "/metrics.txt";
  std::ofstream(page_file) << page;
  test_support::ShellResult check =
      test_support::run_shell("promtool check metrics < " + page_file + " 2>&1");
  if (check.exit_code == 127) GTEST_SKIP() << "promtool is not installed";
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

TEST_P(ControllerTest, NewerStreamSupersedesOlderAndReconnectGetsOnlyWhatIsStale) {
  ASSERT_TRUE(
      apply({device("edge-1", "lab"), control_loop_app(), deployment("control", "control", "lab")})
          .ok());
  const std::string credential = enroll("edge-1");
  auto first = connect("edge-1", credential);
  std::optional<v1::DesiredState> desired = last_desired(sent(*first));
  ASSERT_TRUE(desired.has_value());
  auto second = connect("edge-1", credential, desired->version());
  ASSERT_TRUE(first->closed().has_value());
  EXPECT_TRUE(absl::IsAborted(*first->closed())) << *first->closed();
  EXPECT_FALSE(last_desired(sent(*second)).has_value())
      << "the agent acknowledged this version already";
  v1::AgentMessage late;
  late.set_sequence(9);
  late.mutable_ack()->set_controller_sequence(1);
  EXPECT_TRUE(absl::IsAborted(controller_->handle("edge-1", first, late)));
}

TEST_P(ControllerTest, DiffShowsFieldsAndEffectsWithoutChangingAnything) {
  ASSERT_TRUE(
      apply({device("edge-1", "lab"), control_loop_app(), deployment("control", "control", "lab")})
          .ok());
  enroll("edge-1");
  v1::Object moved = deployment("control", "control", "lab");
  moved.mutable_deployment()->mutable_spec()->mutable_placement()->set_rt_priority(50);
  v1::DiffRequest request;
  *request.add_objects() = moved;
  auto diff = controller_->diff(request);
  ASSERT_TRUE(diff.ok()) << diff.status();
  ASSERT_EQ(diff->diffs_size(), 1);
  EXPECT_EQ(diff->diffs(0).action(), v1::CHANGE_ACTION_UPDATE);
  ASSERT_GE(diff->diffs(0).changes_size(), 1);
  EXPECT_EQ(diff->diffs(0).changes(0).path(), "spec.placement.rt_priority");
  ASSERT_EQ(diff->diffs(0).effects_size(), 1);
  EXPECT_THAT(diff->diffs(0).effects(0), HasSubstr("edge-1: replace instance"));
  v1::GetRequest get;
  get.set_kind(v1::OBJECT_KIND_DEPLOYMENT);
  get.set_name("control");
  EXPECT_EQ(controller_->get(get)->deployment().spec().placement().rt_priority(), 0u);
}

TEST_P(ControllerTest, DeleteRulesAndInstancesFollow) {
  ASSERT_TRUE(
      apply({device("edge-1", "lab"), control_loop_app(), deployment("control", "control", "lab")})
          .ok());
  const std::string credential = enroll("edge-1");
  auto session = connect("edge-1", credential);
  sent(*session);
  v1::DeleteRequest remove;
  remove.set_kind(v1::OBJECT_KIND_APP);
  remove.set_name("control");
  EXPECT_TRUE(absl::IsFailedPrecondition(controller_->remove(remove).status()));
  remove.set_kind(v1::OBJECT_KIND_DEVICE);
  remove.set_name("edge-1");
  EXPECT_TRUE(absl::IsFailedPrecondition(controller_->remove(remove).status()));
  remove.set_kind(v1::OBJECT_KIND_DEPLOYMENT);
  remove.set_name("control");
  ASSERT_TRUE(controller_->remove(remove).ok());
  std::optional<v1::DesiredState> desired = last_desired(sent(*session));
  ASSERT_TRUE(desired.has_value());
  EXPECT_EQ(desired->instances_size(), 0) << "the agent is told to destroy the instance";
  v1::ListRequest list;
  list.set_kind(v1::OBJECT_KIND_INSTANCE);
  EXPECT_EQ(controller_->list(list)->objects_size(), 0);
  remove.set_kind(v1::OBJECT_KIND_DEVICE);
  remove.set_name("edge-1");
  ASSERT_TRUE(controller_->remove(remove).ok());
  ASSERT_TRUE(session->closed().has_value());
  EXPECT_TRUE(absl::IsPermissionDenied(*session->closed()));
}

TEST_P(ControllerTest, StateSurvivesAReopenedStore) {
  ASSERT_TRUE(
      apply({device("edge-1", "lab"), control_loop_app(), deployment("control", "control", "lab")})
          .ok());
  const std::string credential = enroll("edge-1");
  controller_.reset();
  ASSERT_NO_FATAL_FAILURE(reopen_store());
  controller_ = make_controller(ControllerConfig{});
  auto session = connect("edge-1", credential);
  std::optional<v1::DesiredState> desired = last_desired(sent(*session));
  ASSERT_TRUE(desired.has_value()) << "credential and desired state were stored";
  ASSERT_EQ(desired->instances_size(), 1);
  // The agent's report of an instance from before the restart is taken.
  v1::AgentMessage status;
  status.set_sequence(2);
  status.mutable_instance_status()->set_instance_name(desired->instances(0).name());
  status.mutable_instance_status()->set_state(v1::INSTANCE_STATE_RUNNING);
  ASSERT_TRUE(controller_->handle("edge-1", session, status).ok());
  v1::GetRequest get;
  get.set_kind(v1::OBJECT_KIND_INSTANCE);
  get.set_name(desired->instances(0).name());
  EXPECT_EQ(controller_->get(get)->instance().status().observed_state(),
            v1::INSTANCE_STATE_RUNNING);
}

}  // namespace
}  // namespace tenon::controller

namespace tenon::controller {
namespace {

// Changing an App replans every device; the planner's work for it must grow with the fleet, not
// with its square (it once walked every instance of the fleet for every device). Counted, not
// timed: fleets of N and 2N enrolled devices, one instance each.
class PlannerScaleTest : public ControllerTest {
 protected:
  // Stored instances the planner examined replanning a fleet of `devices` for a changed App.
  uint64_t work_for_changed_app(int devices) {
    std::vector<v1::Object> objects = {control_loop_app(), deployment("control", "control", "lab")};
    for (int i = 0; i < devices; ++i) objects.push_back(device(absl::StrCat("edge-", i), "lab"));
    EXPECT_TRUE(apply(std::move(objects)).ok());
    for (int i = 0; i < devices; ++i) enroll(absl::StrCat("edge-", i));
    v1::ListRequest list;
    list.set_kind(v1::OBJECT_KIND_INSTANCE);
    EXPECT_EQ(controller_->list(list)->objects_size(), devices);
    const uint64_t before = controller_->planner_instances_examined();
    EXPECT_TRUE(apply({control_loop_app(25'000)}).ok());
    return controller_->planner_instances_examined() - before;
  }
};

INSTANTIATE_TEST_SUITE_P(Stores, PlannerScaleTest,
                         ::testing::Values(StoreKind::kSqlite, StoreKind::kPostgres),
                         store_kind_name);

TEST_P(PlannerScaleTest, ChangedAppWorkGrowsLinearlyWithTheFleet) {
  const uint64_t small = work_for_changed_app(40);
  TearDown();
  SetUp();
  const uint64_t large = work_for_changed_app(80);
  ASSERT_GT(small, 0u);
  EXPECT_LE(static_cast<double>(large) / static_cast<double>(small), 2.2)
      << "40 devices: " << small << " instances examined; 80 devices: " << large;
}

}  // namespace
}  // namespace tenon::controller
