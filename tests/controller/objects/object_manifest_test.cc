// Manifests: every kind, every value form (enums, durations, times, maps, lists, camelCase
// names), and every refusal with the exact file:line:column and field path.
#include "object_manifest.h"

#include <google/protobuf/util/message_differencer.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tenon::controller {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::vector<ManifestObject> parse_ok(const std::string& text) {
  absl::StatusOr<std::vector<ManifestObject>> objects = parse_manifests(text, "m.yaml");
  EXPECT_TRUE(objects.ok()) << objects.status();
  return objects.ok() ? *objects : std::vector<ManifestObject>{};
}

std::string parse_error(const std::string& text) {
  absl::StatusOr<std::vector<ManifestObject>> objects = parse_manifests(text, "m.yaml");
  EXPECT_FALSE(objects.ok());
  if (objects.ok()) return "";
  EXPECT_TRUE(absl::IsInvalidArgument(objects.status())) << objects.status();
  return std::string(objects.status().message());
}

const char* const kDeployment = R"(apiVersion: tenon/v1
kind: Deployment
metadata:
  name: control
spec:
  app: control-loop
)";

TEST(ManifestTest, FleetExampleHoldsTheDemoFleet) {
  absl::StatusOr<std::vector<ManifestObject>> objects =
      load_manifests(std::string(EXAMPLES_DIR) + "/fleet.yaml");
  ASSERT_TRUE(objects.ok()) << objects.status();
  ASSERT_EQ(objects->size(), 5u);
  const tenon::v1::Device& device = (*objects)[0].object.device();
  EXPECT_EQ(device.metadata().name(), "edge-1");
  EXPECT_EQ(device.metadata().labels().at("site"), "lab");
  EXPECT_EQ(device.metadata().labels().at("class"), "edge-small");
  const tenon::v1::App& control_loop = (*objects)[1].object.app();
  EXPECT_EQ(control_loop.metadata().name(), "control-loop");
  EXPECT_EQ(control_loop.spec().program(), "control-loop");
  ASSERT_EQ(control_loop.spec().tasks_size(), 3);
  EXPECT_EQ(control_loop.spec().tasks(0).name(), "pid");
  EXPECT_EQ(control_loop.spec().tasks(0).period_ns(), 1000000u);
  EXPECT_EQ(control_loop.spec().tasks(2).wcet_ns(), 3000000u);
  EXPECT_EQ((*objects)[2].object.app().spec().tasks(0).priority(), 90u);
  for (int index : {3, 4}) {
    const tenon::v1::Deployment& deployment = (*objects)[index].object.deployment();
    EXPECT_EQ(deployment.spec().selector().match_labels().at("site"), "lab");
    EXPECT_EQ(deployment.spec().restart_policy(), tenon::v1::RESTART_POLICY_ON_FAILURE);
    EXPECT_FALSE(deployment.spec().placement().dedicated_core());
    EXPECT_EQ(deployment.spec().placement().rt_priority(), 0u);
  }
  EXPECT_EQ((*objects)[3].object.deployment().spec().app(), "control-loop");
  EXPECT_EQ((*objects)[4].object.deployment().spec().app(), "latency-probe");
  EXPECT_EQ((*objects)[4].line, 78);
  EXPECT_EQ((*objects)[4].file, std::string(EXAMPLES_DIR) + "/fleet.yaml");
}

TEST(ManifestTest, ReadsEveryValueForm) {
  const std::vector<ManifestObject> objects = parse_ok(R"(
apiVersion: tenon/v1
kind: Deployment
metadata:
  name: control
  labels: {tier: rt, owner: "lab-2"}
  generation: 7
  createTime: 2024-05-01T12:00:00Z
spec:
  app: control-loop
  selector:
    matchLabels:
      site: lab
    match_expressions:
      - key: class
        relation: In
        values: [edge-small, edge-large]
      - key: broken
        relation: RELATION_DOES_NOT_EXIST
  placement: {dedicated_core: true, rt_priority: 50, memory_bytes: 1048576}
  restart_policy: always
  composition_policy: Minimise_Latency
  rollout:
    wave_size: 2
    bake_time: 1.5s
    max_deadline_miss_ratio: 0.25
    rollbackOnFailure: true
  runtime:
    app_run_time: 1h30m
)");
  ASSERT_EQ(objects.size(), 1u);
  const tenon::v1::Deployment& deployment = objects[0].object.deployment();
  EXPECT_EQ(deployment.metadata().labels().at("owner"), "lab-2");
  EXPECT_EQ(deployment.metadata().generation(), 7u);
  EXPECT_EQ(deployment.metadata().create_time().seconds(), 1714564800);
  const tenon::v1::DeploymentSpec& spec = deployment.spec();
  EXPECT_EQ(spec.selector().match_labels().at("site"), "lab");
  ASSERT_EQ(spec.selector().match_expressions_size(), 2);
  EXPECT_EQ(spec.selector().match_expressions(0).relation(),
            tenon::v1::LabelExpression::RELATION_IN);
  EXPECT_THAT(spec.selector().match_expressions(0).values(),
              ::testing::ElementsAre("edge-small", "edge-large"));
  EXPECT_EQ(spec.selector().match_expressions(1).relation(),
            tenon::v1::LabelExpression::RELATION_DOES_NOT_EXIST);
  EXPECT_TRUE(spec.placement().dedicated_core());
  EXPECT_EQ(spec.placement().rt_priority(), 50u);
  EXPECT_EQ(spec.placement().memory_bytes(), 1048576u);
  EXPECT_EQ(spec.restart_policy(), tenon::v1::RESTART_POLICY_ALWAYS);
  EXPECT_EQ(spec.composition_policy(), tenon::v1::COMPOSITION_POLICY_MINIMISE_LATENCY);
  EXPECT_EQ(spec.rollout().wave_size(), 2u);
  EXPECT_EQ(spec.rollout().bake_time().seconds(), 1);
  EXPECT_EQ(spec.rollout().bake_time().nanos(), 500000000);
  EXPECT_DOUBLE_EQ(spec.rollout().max_deadline_miss_ratio(), 0.25);
  EXPECT_TRUE(spec.rollout().rollback_on_failure());
  EXPECT_EQ(spec.runtime().app_run_time().seconds(), 5400);
  EXPECT_EQ(objects[0].line, 2);
  EXPECT_EQ(objects[0].line_of("spec.selector.match_expressions[1].relation"), 19);
  EXPECT_EQ(objects[0].line_of("spec.selector.match_labels[site]"), 13);
  EXPECT_EQ(objects[0].line_of("metadata.labels[tier]"), 6);
  EXPECT_EQ(objects[0].line_of("spec.rollout.bake_time"), 25);
  // A path the manifest does not spell falls back to the nearest written parent.
  EXPECT_EQ(objects[0].line_of("spec.placement.bogus"), 20);
  EXPECT_EQ(objects[0].line_of("nothing.here"), 2);
}

TEST(ManifestTest, DurationForms) {
  struct Case {
    const char* text;
    int64_t seconds;
    int32_t nanos;
  };
  for (const Case& c :
       {Case{"250ms", 0, 250000000}, Case{"1s", 1, 0}, Case{"1.5s", 1, 500000000},
        Case{"2m", 120, 0}, Case{"1h", 3600, 0}, Case{"1.500s", 1, 500000000},
        Case{"10us", 0, 10000}, Case{"7ns", 0, 7}, Case{"0", 0, 0}, Case{"1m30s", 90, 0}}) {
    SCOPED_TRACE(c.text);
    const std::vector<ManifestObject> objects =
        parse_ok(std::string(kDeployment) + "  rollout:\n    bake_time: " + c.text + "\n");
    ASSERT_EQ(objects.size(), 1u);
    EXPECT_EQ(objects[0].object.deployment().spec().rollout().bake_time().seconds(), c.seconds);
    EXPECT_EQ(objects[0].object.deployment().spec().rollout().bake_time().nanos(), c.nanos);
  }
}

TEST(ManifestTest, RegressionADurationWhoseFractionCarriesPast64BitsIsRefused) {
  // The whole part fits in 64-bit nanoseconds and the fraction used to be added unchecked.
  EXPECT_EQ(parse_duration("9223372036.9s"), std::nullopt);
  EXPECT_EQ(parse_duration("9223372036s900ms"), std::nullopt);
  const std::optional<google::protobuf::Duration> largest = parse_duration("9223372036.854775807s");
  ASSERT_TRUE(largest.has_value());
  EXPECT_EQ(largest->seconds(), 9223372036);
  EXPECT_EQ(largest->nanos(), 854775807);
}

TEST(ManifestTest, EnumForms) {
  for (const char* text : {"RESTART_POLICY_NEVER", "NEVER", "never", "Never"}) {
    SCOPED_TRACE(text);
    const std::vector<ManifestObject> objects =
        parse_ok(std::string(kDeployment) + "  restart_policy: " + text + "\n");
    ASSERT_EQ(objects.size(), 1u);
    EXPECT_EQ(objects[0].object.deployment().spec().restart_policy(),
              tenon::v1::RESTART_POLICY_NEVER);
  }
  const std::vector<ManifestObject> app = parse_ok(R"(apiVersion: tenon/v1
kind: App
metadata: {name: a}
spec:
  program: hello
  scheduler: earliest_deadline_first
  tasks:
    - {name: t, period_ns: 10, wcet_ns: 1, criticality: best_effort}
)");
  ASSERT_EQ(app.size(), 1u);
  EXPECT_EQ(app[0].object.app().spec().scheduler(),
            tenon::v1::SCHEDULER_KIND_EARLIEST_DEADLINE_FIRST);
  EXPECT_EQ(app[0].object.app().spec().tasks(0).criticality(), tenon::v1::CRITICALITY_BEST_EFFORT);
}

TEST(ManifestTest, SkipsEmptyDocumentsAndIgnoresStatus) {
  const std::vector<ManifestObject> objects = parse_ok(R"(---
apiVersion: tenon/v1
kind: Device
metadata:
  name: edge-1
status:
  connection_state: CONNECTION_STATE_CONNECTED
  anything: goes
---
---
apiVersion: tenon/v1
kind: Device
metadata:
  name: edge-2
---
)");
  ASSERT_EQ(objects.size(), 2u);
  EXPECT_FALSE(objects[0].object.device().has_status());
  EXPECT_EQ(objects[1].object.device().metadata().name(), "edge-2");
  EXPECT_EQ(objects[1].line, 11);
}

TEST(ManifestTest, UnknownFieldNamesItAndListsTheValidOnes) {
  const std::string message =
      parse_error(std::string(kDeployment) + "  placement:\n    rt_prio: 5\n");
  EXPECT_THAT(message, StartsWith("m.yaml:8:5: spec.placement.rt_prio: unknown field (valid: "
                                  "dedicated_core, rt_priority, memory_bytes)"));
}

TEST(ManifestTest, UnknownFieldInATaskNamesTheIndex) {
  const std::string message = parse_error(R"(apiVersion: tenon/v1
kind: App
metadata: {name: a}
spec:
  program: hello
  tasks:
    - {name: a, period_ns: 10, wcet_ns: 1}
    - name: b
      perod_ns: 10
)");
  EXPECT_THAT(message, StartsWith("m.yaml:9:7: spec.tasks[1].perod_ns: unknown field"));
  EXPECT_THAT(message, HasSubstr("period_ns"));
}

TEST(ManifestTest, WrongTypesAreRefused) {
  struct Case {
    std::string field;
    std::string expected;
  };
  for (const Case& c : {
           Case{"  placement: {rt_priority: 1e3}\n", "m.yaml:7:28: spec.placement.rt_priority: "},
           Case{"  placement: {dedicated_core: yes}\n",
                "m.yaml:7:31: spec.placement.dedicated_core: expected true or false"},
           Case{"  placement: {rt_priority: -1}\n", "m.yaml:7:28: spec.placement.rt_priority: "},
           Case{"  placement: {rt_priority: 4294967296}\n",
                "m.yaml:7:28: spec.placement.rt_priority: expected an integer from 0 to "},
           Case{"  rollout: {max_deadline_miss_ratio: lots}\n",
                "m.yaml:7:38: spec.rollout.max_deadline_miss_ratio: expected a number"},
           Case{"  selector: {match_labels: {site: [a]}}\n",
                "m.yaml:7:35: spec.selector.match_labels[site]: expected a single value"},
           Case{"  selector: [a]\n", "m.yaml:7:13: spec.selector: expected a mapping"},
           Case{"  selector: {match_expressions: {key: a}}\n",
                "m.yaml:7:33: spec.selector.match_expressions: expected a list"},
           Case{"  selector: {match_labels: [a]}\n",
                "m.yaml:7:28: spec.selector.match_labels: expected a mapping"},
       }) {
    SCOPED_TRACE(c.field);
    EXPECT_THAT(parse_error(std::string(kDeployment) + c.field), StartsWith(c.expected));
  }
}

TEST(ManifestTest, BadEnumListsTheValues) {
  EXPECT_THAT(parse_error(std::string(kDeployment) + "  restart_policy: sometimes\n"),
              StartsWith("m.yaml:7:19: spec.restart_policy: unknown value 'sometimes' (valid: "
                         "NEVER, ON_FAILURE, ALWAYS)"));
}

TEST(ManifestTest, BadDurationAndTime) {
  EXPECT_THAT(parse_error(std::string(kDeployment) + "  rollout:\n    bake_time: 5 minutes\n"),
              StartsWith("m.yaml:8:16: spec.rollout.bake_time: expected a duration like 250ms"));
  EXPECT_THAT(parse_error(std::string(kDeployment) + "  rollout:\n    bake_time: 5\n"),
              StartsWith("m.yaml:8:16: spec.rollout.bake_time: expected a duration"));
  EXPECT_THAT(parse_error(R"(apiVersion: tenon/v1
kind: Device
metadata:
  name: d
  create_time: yesterday
)"),
              StartsWith("m.yaml:5:16: metadata.create_time: expected an RFC 3339 time"));
}

TEST(ManifestTest, MissingApiVersionOrKind) {
  EXPECT_THAT(parse_error("kind: Device\nmetadata: {name: d}\n"),
              StartsWith("m.yaml:1:1: apiVersion: missing required field"));
  EXPECT_THAT(parse_error("apiVersion: tenon/v1\nmetadata: {name: d}\n"),
              StartsWith("m.yaml:1:1: kind: missing required field"));
  EXPECT_THAT(parse_error("apiVersion: v1\nkind: Device\nmetadata: {name: d}\n"),
              StartsWith("m.yaml:1:13: apiVersion: expected tenon/v1, got 'v1'"));
  EXPECT_THAT(parse_error("apiVersion: tenon/v1\nkind: Device\n"),
              StartsWith("m.yaml:1:1: metadata: missing required field"));
  EXPECT_THAT(parse_error("apiVersion: tenon/v1\nkind: Device\nmetadata: {labels: {a: b}}\n"),
              StartsWith("m.yaml:3:11: metadata.name: missing required field"));
}

TEST(ManifestTest, UnknownKindAndTopLevelField) {
  EXPECT_THAT(parse_error("apiVersion: tenon/v1\nkind: Pod\nmetadata: {name: d}\n"),
              StartsWith("m.yaml:2:7: kind: unknown kind 'Pod' (valid: Device, App, Deployment)"));
  EXPECT_THAT(parse_error("apiVersion: tenon/v1\nkind: Device\nmetadata: {name: d}\nspecs: {}\n"),
              StartsWith("m.yaml:4:1: specs: unknown field"));
}

TEST(ManifestTest, DerivedKindsAreRefused) {
  for (const char* kind : {"Instance", "Composition"}) {
    SCOPED_TRACE(kind);
    EXPECT_THAT(
        parse_error(absl::StrCat("apiVersion: tenon/v1\nkind: ", kind, "\nmetadata: {name: d}\n")),
        StartsWith(absl::StrCat("m.yaml:2:7: kind: ", kind,
                                " objects are derived by the controller and cannot be applied")));
  }
}

TEST(ManifestTest, DuplicateObjectsNameBothPlaces) {
  EXPECT_EQ(parse_error(std::string(kDeployment) + "---\n" + kDeployment),
            "m.yaml:11:9: metadata.name: Deployment 'control' is defined twice (first at "
            "m.yaml:4:9)");
  // The same name in another kind is another object.
  EXPECT_EQ(parse_ok(std::string(kDeployment) +
                     "---\napiVersion: tenon/v1\nkind: App\nmetadata: {name: control}\n"
                     "spec: {program: hello}\n")
                .size(),
            2u);
}

TEST(ManifestTest, DuplicateKeysAndFieldsGivenTwice) {
  EXPECT_THAT(parse_error(std::string(kDeployment) + "  app: again\n"),
              StartsWith("m.yaml:7:3: spec.app: duplicate key"));
  EXPECT_THAT(
      parse_error(std::string(kDeployment) + "  restartPolicy: NEVER\n  restart_policy: NEVER\n"),
      StartsWith("m.yaml:8:3: spec.restart_policy: given twice (as restartPolicy and "
                 "restart_policy)"));
}

TEST(ManifestTest, YamlSyntaxErrorNamesTheLine) {
  EXPECT_THAT(parse_error("apiVersion: tenon/v1\nkind: Device\nmetadata:\n  name: [d\n"),
              StartsWith("m.yaml:5:"));
  EXPECT_THAT(
      parse_error("apiVersion: tenon/v1\nkind: Device\nmetadata: {name: d}\n  bad: indent\n"),
      StartsWith("m.yaml:4:"));
  EXPECT_THAT(parse_error("- a\n- b\n"),
              StartsWith("m.yaml:1:1: (document): a manifest document must be a mapping"));
}

class ManifestFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    directory_ = std::filesystem::temp_directory_path() /
                 ("manifest-test-" + std::to_string(getpid()) + "-" +
                  ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(directory_);
  }
  void TearDown() override { std::filesystem::remove_all(directory_); }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(directory_ / name) << text;
  }
  std::filesystem::path directory_;
};

TEST_F(ManifestFilesTest, DirectoryReadsYamlFilesInNameOrder) {
  write("b.yml", "apiVersion: tenon/v1\nkind: Device\nmetadata: {name: second}\n");
  write("a.yaml", "apiVersion: tenon/v1\nkind: Device\nmetadata: {name: first}\n");
  write("c.txt", "not yaml at all: [");
  std::filesystem::create_directories(directory_ / "nested");
  write("nested/d.yaml", "apiVersion: tenon/v1\nkind: Device\nmetadata: {name: nested}\n");
  absl::StatusOr<std::vector<ManifestObject>> objects = load_manifests(directory_.string());
  ASSERT_TRUE(objects.ok()) << objects.status();
  ASSERT_EQ(objects->size(), 2u);
  EXPECT_EQ((*objects)[0].object.device().metadata().name(), "first");
  EXPECT_EQ((*objects)[1].object.device().metadata().name(), "second");
  EXPECT_EQ((*objects)[1].file, (directory_ / "b.yml").string());
}

TEST_F(ManifestFilesTest, DuplicatesAcrossFilesNameBothFiles) {
  write("a.yaml", "apiVersion: tenon/v1\nkind: Device\nmetadata: {name: edge}\n");
  write("b.yaml", "\n\napiVersion: tenon/v1\nkind: Device\nmetadata:\n  name: edge\n");
  absl::StatusOr<std::vector<ManifestObject>> objects = load_manifests(directory_.string());
  ASSERT_FALSE(objects.ok());
  EXPECT_EQ(objects.status().message(),
            absl::StrCat((directory_ / "b.yaml").string(),
                         ":6:9: metadata.name: Device 'edge' is defined twice (first at ",
                         (directory_ / "a.yaml").string(), ":3:18)"));
}

TEST_F(ManifestFilesTest, MissingFileIsAnError) {
  absl::StatusOr<std::vector<ManifestObject>> objects =
      load_manifests((directory_ / "absent.yaml").string());
  ASSERT_FALSE(objects.ok());
  EXPECT_THAT(objects.status().message(), HasSubstr("absent.yaml: cannot open file"));
}

}  // namespace
}  // namespace tenon::controller
