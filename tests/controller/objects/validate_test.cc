// Validation: each rule of fleet.proto refused with its field path, and the fleet example valid.
#include "validate.h"

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "manifest.h"
#include "object_manifest.h"

namespace tenon::controller {
namespace {

using ::testing::HasSubstr;

tenon::v1::Object parse_one(const std::string& text) {
  absl::StatusOr<std::vector<ManifestObject>> objects = parse_manifests(text, "v.yaml");
  EXPECT_TRUE(objects.ok()) << objects.status();
  if (!objects.ok() || objects->size() != 1) return tenon::v1::Object();
  return (*objects)[0].object;
}

const std::string kApp = R"(apiVersion: tenon/v1
kind: App
metadata: {name: control-loop}
spec:
  program: control-loop
  tasks:
    - {name: pid, period_ns: 1000000, wcet_ns: 20000}
    - {name: logger, period_ns: 100000000, wcet_ns: 3000000}
)";

const std::string kDeployment = R"(apiVersion: tenon/v1
kind: Deployment
metadata: {name: control}
spec:
  app: control-loop
  selector: {match_labels: {site: lab}}
)";

const std::string kBareDeployment = R"(apiVersion: tenon/v1
kind: Deployment
metadata: {name: control}
spec:
  app: control-loop
)";

// The path and message of the first problem of text + extra.
ValidationError problem_of(const std::string& text) {
  std::optional<ValidationError> problem = validate_object(parse_one(text));
  EXPECT_TRUE(problem.has_value()) << text;
  return problem.value_or(ValidationError{"(none)", ""});
}

TEST(ValidateTest, FleetExampleIsValid) {
  absl::StatusOr<std::vector<ManifestObject>> objects =
      load_manifests(std::string(EXAMPLES_DIR) + "/fleet.yaml");
  ASSERT_TRUE(objects.ok()) << objects.status();
  for (const ManifestObject& object : *objects) EXPECT_TRUE(check_object(object.object).ok());
  EXPECT_FALSE(validate_object(parse_one(kApp)).has_value());
  EXPECT_FALSE(validate_object(parse_one(kDeployment)).has_value());
}

TEST(ValidateTest, ObjectNames) {
  struct Case {
    std::string name;
    bool valid;
  };
  for (const Case& c :
       {Case{"edge-1", true}, Case{"a", true}, Case{std::string(63, 'a'), true},
        Case{std::string(64, 'a'), false}, Case{"1edge", false}, Case{"edge-", false},
        Case{"Edge", false}, Case{"ed_ge", false}, Case{"-edge", false}}) {
    SCOPED_TRACE(c.name);
    tenon::v1::Object object;
    object.mutable_device()->mutable_metadata()->set_name(c.name);
    std::optional<ValidationError> problem = validate_object(object);
    EXPECT_EQ(!problem.has_value(), c.valid);
    if (problem) {
      EXPECT_EQ(problem->path, "metadata.name");
    }
  }
  tenon::v1::Object empty;
  empty.mutable_device();
  EXPECT_EQ(validate_object(empty)->path, "metadata.name");
}

TEST(ValidateTest, AppAndDeploymentNamesAtMostFifty) {
  tenon::v1::Object app = parse_one(kApp);
  app.mutable_app()->mutable_metadata()->set_name(std::string(50, 'a'));
  EXPECT_FALSE(validate_object(app).has_value());
  app.mutable_app()->mutable_metadata()->set_name(std::string(51, 'a'));
  EXPECT_EQ(validate_object(app)->path, "metadata.name");
  tenon::v1::Object deployment = parse_one(kDeployment);
  deployment.mutable_deployment()->mutable_metadata()->set_name(std::string(51, 'a'));
  EXPECT_EQ(validate_object(deployment)->path, "metadata.name");
  tenon::v1::Object device;
  device.mutable_device()->mutable_metadata()->set_name(std::string(51, 'a'));
  EXPECT_FALSE(validate_object(device).has_value());
}

TEST(ValidateTest, Labels) {
  tenon::v1::Object device;
  device.mutable_device()->mutable_metadata()->set_name("edge");
  auto& labels = *device.mutable_device()->mutable_metadata()->mutable_labels();
  labels["Site.name_1-x"] = "";
  EXPECT_FALSE(validate_object(device).has_value());
  labels["bad key"] = "v";
  EXPECT_EQ(validate_object(device)->path, "metadata.labels[bad key]");
  labels.erase("bad key");
  labels[std::string(64, 'k')] = "v";
  EXPECT_EQ(validate_object(device)->path,
            absl::StrCat("metadata.labels[", std::string(64, 'k'), "]"));
  labels.erase(std::string(64, 'k'));
  labels["site"] = "l/ab";
  const ValidationError problem = *validate_object(device);
  EXPECT_EQ(problem.path, "metadata.labels[site]");
  EXPECT_THAT(problem.message, HasSubstr("label value 'l/ab'"));
  // A device with 40,000 labels (4.6 MB) once made every List too large for its clients.
  labels.clear();
  for (int i = 0; i < 64; ++i) labels[absl::StrCat("k", i)] = std::string(63, 'v');
  EXPECT_FALSE(validate_object(device).has_value());
  labels["one-more"] = "v";
  const ValidationError too_many = *validate_object(device);
  EXPECT_EQ(too_many.path, "metadata.labels");
  EXPECT_THAT(too_many.message, HasSubstr("at most 64 labels, got 65"));
}

TEST(ValidateTest, TaskRules) {
  struct Case {
    std::string task;
    std::string path;
    std::string message;
  };
  for (const Case& c : {
           Case{"{name: '', period_ns: 10, wcet_ns: 1}", "spec.tasks[2].name", "needs a name"},
           Case{"{name: sixteen-chars-xx, period_ns: 10, wcet_ns: 1}", "spec.tasks[2].name",
                "not a valid task name"},
           Case{"{name: pid, period_ns: 10, wcet_ns: 1}", "spec.tasks[2].name",
                "task 'pid' is declared twice"},
           Case{"{name: t, period_ns: 0, wcet_ns: 1}", "spec.tasks[2].period_ns", "between 1 ns"},
           Case{"{name: t, period_ns: 10, wcet_ns: 0}", "spec.tasks[2].wcet_ns", "between 1 ns"},
           Case{"{name: t, period_ns: 10, relative_deadline_ns: 11, wcet_ns: 1}",
                "spec.tasks[2].relative_deadline_ns", "deadline 11 ns exceeds the period of 10 ns"},
           Case{"{name: t, period_ns: 10, relative_deadline_ns: 5, wcet_ns: 6}",
                "spec.tasks[2].wcet_ns", "exceeds the deadline of 5 ns"},
           Case{"{name: t, period_ns: 10, wcet_ns: 11}", "spec.tasks[2].wcet_ns",
                "exceeds the deadline of 10 ns"},
       }) {
    SCOPED_TRACE(c.task);
    const ValidationError problem = problem_of(kApp + "    - " + c.task + "\n");
    EXPECT_EQ(problem.path, c.path);
    EXPECT_THAT(problem.message, HasSubstr(c.message));
  }
  // Fifteen characters fit the guest ABI; the deadline may equal the period and the wcet the
  // deadline.
  EXPECT_FALSE(validate_object(parse_one(kApp + "    - {name: fifteen-chars-x, period_ns: 10, "
                                                "relative_deadline_ns: 10, wcet_ns: 10}\n"))
                   .has_value());
}

TEST(ValidateTest, TaskTimesAreBoundedWhereverTheAppComesFrom) {
  // Over gRPC or REST nothing goes through the manifest parser: the same bound holds here.
  tenon::v1::Object app = parse_one(kApp);
  tenon::v1::TaskSpec* task = app.mutable_app()->mutable_spec()->mutable_tasks(0);
  task->set_period_ns(~0ull);
  task->set_wcet_ns(~0ull);
  ValidationError problem = validate_object(app).value_or(ValidationError{"(none)", ""});
  EXPECT_EQ(problem.path, "spec.tasks[0].period_ns");
  EXPECT_THAT(problem.message, HasSubstr("one hour"));
  task->set_period_ns(kMaxTaskTimeNs);
  problem = validate_object(app).value_or(ValidationError{"(none)", ""});
  EXPECT_EQ(problem.path, "spec.tasks[0].wcet_ns");
  task->set_wcet_ns(kMaxTaskTimeNs);
  EXPECT_FALSE(validate_object(app).has_value());
  // An inline spec (ComposeRequest.app_spec) obeys the App's rules.
  EXPECT_FALSE(validate_app_spec(app.app().spec()).has_value());
  task->set_period_ns(kMaxTaskTimeNs + 1);
  EXPECT_EQ(validate_app_spec(app.app().spec()).value_or(ValidationError{}).path,
            "spec.tasks[0].period_ns");
}

TEST(ValidateTest, AppNeedsAProgramAndValidNeeds) {
  EXPECT_EQ(problem_of("apiVersion: tenon/v1\nkind: App\nmetadata: {name: a}\n").path,
            "spec.program");
  EXPECT_EQ(problem_of("apiVersion: tenon/v1\nkind: App\nmetadata: {name: a}\nspec:\n  program: "
                       "p\n  needs: [console, console]\n")
                .path,
            "spec.needs[1]");
}

TEST(ValidateTest, DeploymentRules) {
  EXPECT_EQ(problem_of("apiVersion: tenon/v1\nkind: Deployment\nmetadata: {name: d}\n").path,
            "spec.app");
  struct Case {
    std::string extra;
    std::string path;
  };
  for (const Case& c : {
           Case{"  placement: {rt_priority: 100}\n", "spec.placement.rt_priority"},
           Case{"  rollout: {max_deadline_miss_ratio: 1.5}\n",
                "spec.rollout.max_deadline_miss_ratio"},
           Case{"  rollout: {max_deadline_miss_ratio: -0.1}\n",
                "spec.rollout.max_deadline_miss_ratio"},
       }) {
    SCOPED_TRACE(c.extra);
    EXPECT_EQ(problem_of(kDeployment + c.extra).path, c.path);
  }
  EXPECT_FALSE(validate_object(parse_one(kDeployment + "  placement: {rt_priority: 99}\n  rollout: "
                                                       "{max_deadline_miss_ratio: 1}\n"))
                   .has_value());
  tenon::v1::Object negative = parse_one(kDeployment);
  negative.mutable_deployment()
      ->mutable_spec()
      ->mutable_rollout()
      ->mutable_bake_time()
      ->set_seconds(-1);
  EXPECT_EQ(validate_object(negative)->path, "spec.rollout.bake_time");
  // An empty selector matches no device: allowed.
  EXPECT_FALSE(validate_object(parse_one("apiVersion: tenon/v1\nkind: Deployment\nmetadata: "
                                         "{name: d}\nspec: {app: a}\n"))
                   .has_value());
}

TEST(ValidateTest, LabelExpressions) {
  struct Case {
    std::string expression;
    std::string path;
  };
  for (const Case& c : {
           Case{"{key: a, relation: IN}", "spec.selector.match_expressions[0].values"},
           Case{"{key: a, relation: NOT_IN, values: []}",
                "spec.selector.match_expressions[0].values"},
           Case{"{key: a, relation: EXISTS, values: [x]}",
                "spec.selector.match_expressions[0].values"},
           Case{"{key: a, relation: DOES_NOT_EXIST, values: [x]}",
                "spec.selector.match_expressions[0].values"},
           Case{"{key: a, values: [x]}", "spec.selector.match_expressions[0].relation"},
           Case{"{key: 'a b', relation: EXISTS}", "spec.selector.match_expressions[0].key"},
           Case{"{key: a, relation: IN, values: [ok, 'not ok']}",
                "spec.selector.match_expressions[0].values[1]"},
       }) {
    SCOPED_TRACE(c.expression);
    EXPECT_EQ(problem_of(kBareDeployment + "  selector:\n    match_expressions:\n      - " +
                         c.expression + "\n")
                  .path,
              c.path);
  }
  EXPECT_EQ(problem_of(kBareDeployment + "  selector: {match_labels: {'bad key': x}}\n").path,
            "spec.selector.match_labels[bad key]");
}

TEST(ValidateTest, DerivedKindsCannotBeApplied) {
  tenon::v1::Object instance;
  instance.mutable_instance()->mutable_metadata()->set_name("control-0123456789ab");
  EXPECT_EQ(validate_object(instance)->path, "kind");
  absl::Status status = check_object(instance);
  EXPECT_TRUE(absl::IsInvalidArgument(status));
  EXPECT_EQ(std::string(status.message()),
            "Instance control-0123456789ab: kind: Instance objects are derived by the controller "
            "and cannot be applied (only Device, App and Deployment)");
  tenon::v1::Object composition;
  composition.mutable_composition();
  EXPECT_EQ(validate_object(composition)->path, "kind");
  EXPECT_EQ(validate_object(tenon::v1::Object())->path, "kind");
}

TEST(ValidateTest, CheckObjectNamesKindObjectAndPath) {
  absl::Status status = check_object(parse_one(kDeployment + "  placement: {rt_priority: 120}\n"));
  EXPECT_TRUE(absl::IsInvalidArgument(status));
  EXPECT_THAT(std::string(status.message()),
              ::testing::StartsWith("Deployment control: spec.placement.rt_priority: must be 0"));
}

}  // namespace
}  // namespace tenon::controller
