// Rendering: the YAML of an object applies back to the same object, JSON has the kubectl shape
// and proto JSON values, tables have their columns, describe shows the latency table.
#include "object_render.h"

#include <google/protobuf/text_format.h>
#include <google/protobuf/util/message_differencer.h>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "object_manifest.h"

namespace tenon::controller {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

tenon::v1::Object from_text(const std::string& text) {
  tenon::v1::Object object;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &object)) << text;
  return object;
}

const char* const kDeployment = R"pb(
  deployment {
    metadata {
      name: "control"
      labels { key: "tier" value: "rt" }
      labels { key: "owner" value: "" }
      uid: "6c1f0e6a-0000-4000-8000-000000000001"
      generation: 3
      create_time { seconds: 1714564800 nanos: 5000 }
      update_time { seconds: 1714568400 }
    }
    spec {
      app: "control-loop"
      selector {
        match_labels { key: "site" value: "lab" }
        match_expressions { key: "class" relation: RELATION_IN values: "edge-small" values: "x" }
        match_expressions { key: "broken" relation: RELATION_DOES_NOT_EXIST }
      }
      placement { dedicated_core: true rt_priority: 50 memory_bytes: 18446744073709551615 }
      restart_policy: RESTART_POLICY_ALWAYS
      composition_policy: COMPOSITION_POLICY_MINIMISE_LATENCY
      rollout {
        wave_size: 2
        bake_time { seconds: 1 nanos: 500000000 }
        max_deadline_miss_ratio: 0.001
        rollback_on_failure: true
      }
      runtime {
        app_run_time { nanos: 250000000 }
        stack_bytes: 65536
      }
    }
    status {
      observed_generation: 3
      phase: ROLLOUT_PHASE_PROGRESSING
      matched_devices: 4
      updated_instances: 2
      running_instances: 3
      compositions: "control-loop-0123456789ab"
      message: "wave 2 of 4 baking"
    }
  }
)pb";

const char* const kApp = R"pb(
  app {
    metadata {
      name: "control-loop"
      create_time { seconds: 1714564800 }
    }
    spec {
      program: "control-loop"
      tasks {
        name: "pid"
        period_ns: 1000000
        relative_deadline_ns: 900000
        wcet_ns: 20000
        priority: 30
        criticality: CRITICALITY_HARD
      }
      tasks {
        name: "logger"
        period_ns: 100000000
        wcet_ns: 3000000
        criticality: CRITICALITY_BEST_EFFORT
      }
      needs: "console"
      needs: "ivc"
      scheduler: SCHEDULER_KIND_EARLIEST_DEADLINE_FIRST
      heap_bytes: 4096
    }
  }
)pb";

const char* const kDevice = R"pb(
  device {
    metadata {
      name: "edge-1"
      labels { key: "site" value: "lab" }
      create_time { seconds: 1714564800 }
    }
    spec { cordoned: true }
    status {
      connection_state: CONNECTION_STATE_CONNECTED
      profile {
        arch: ARCH_X86_64
        cores: 8
        realtime_cores: 2
        hypervisor_features: "qemu"
        engine: "qemu-tcg"
      }
      last_seen { seconds: 1714568390 }
      desired_state_version: 5
      acknowledged_desired_state_version: 4
      instance_count: 2
    }
  }
)pb";

const char* const kInstance = R"pb(
  instance {
    metadata {
      name: "control-0123456789ab"
      create_time { seconds: 1714564800 }
    }
    spec {
      deployment: "control"
      device: "edge-1"
      app: "control-loop"
      image_digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    }
    status {
      observed_state: INSTANCE_STATE_RUNNING
      image_digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
      restart_count: 1
      exit_reason { kind: EXIT_KIND_GUEST_EXIT status: 3 }
      message: "running"
      latency {
        window { seconds: 10 }
        update_time { seconds: 1714568400 }
        tasks {
          task_name: "pid"
          jobs: 10000
          deadline_misses: 2
          release_latency { count: 10000 p50_ns: 1500 p99_ns: 12500 max_ns: 40000 }
        }
        tasks {
          task_name: "logger"
          jobs: 100
          deadline_misses: 1
          release_latency { count: 100 p50_ns: 2000 p99_ns: 8000 max_ns: 9000 }
        }
      }
    }
  }
)pb";

const absl::Time kNow = absl::FromUnixSeconds(1714568400);  // an hour after creation

void expect_round_trip(const tenon::v1::Object& object) {
  const std::string yaml = object_to_yaml(object);
  absl::StatusOr<std::vector<ManifestObject>> parsed = parse_manifests(yaml, "rendered.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.status() << "\n" << yaml;
  ASSERT_EQ(parsed->size(), 1u);
  tenon::v1::Object expected = object;
  // Status is output only: rendered, and ignored when read back.
  if (expected.has_device()) expected.mutable_device()->clear_status();
  if (expected.has_deployment()) expected.mutable_deployment()->clear_status();
  std::string difference;
  google::protobuf::util::MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&difference);
  EXPECT_TRUE(differencer.Compare(expected, (*parsed)[0].object)) << difference << "\n" << yaml;
}

TEST(RenderTest, YamlOfEveryAppliableKindAppliesBackToTheSameObject) {
  expect_round_trip(from_text(kDeployment));
  expect_round_trip(from_text(kApp));
  expect_round_trip(from_text(kDevice));
}

TEST(RenderTest, FleetExampleRoundTrips) {
  absl::StatusOr<std::vector<ManifestObject>> objects =
      load_manifests(std::string(EXAMPLES_DIR) + "/fleet.yaml");
  ASSERT_TRUE(objects.ok()) << objects.status();
  for (const ManifestObject& object : *objects) expect_round_trip(object.object);
}

TEST(RenderTest, JsonHasTheKubectlShapeAndProtoJsonValues) {
  const nlohmann::ordered_json document = object_to_json(from_text(kDeployment));
  std::vector<std::string> keys;
  for (const auto& [key, value] : document.items()) keys.push_back(key);
  EXPECT_THAT(keys, ElementsAre("apiVersion", "kind", "metadata", "spec", "status"));
  EXPECT_EQ(document["apiVersion"], "tenon/v1");
  EXPECT_EQ(document["kind"], "Deployment");
  EXPECT_EQ(document["metadata"]["generation"], "3");  // 64-bit integers are strings in proto JSON
  EXPECT_EQ(document["metadata"]["create_time"], "2024-05-01T12:00:00.000005Z");
  EXPECT_EQ(document["spec"]["restart_policy"], "RESTART_POLICY_ALWAYS");
  EXPECT_EQ(document["spec"]["rollout"]["bake_time"], "1.500s");
  EXPECT_EQ(document["spec"]["placement"]["rt_priority"], 50);
  EXPECT_EQ(document["status"]["phase"], "ROLLOUT_PHASE_PROGRESSING");
  const nlohmann::ordered_json composition = object_to_json(from_text(R"pb(composition {
                                                                             metadata { name: "c" }
                                                                             image_size_bytes: 9
                                                                           })pb"));
  EXPECT_EQ(composition["kind"], "Composition");
  EXPECT_EQ(composition["image_size_bytes"], "9");
  EXPECT_FALSE(composition.contains("spec"));
}

TEST(RenderTest, DeviceTable) {
  const std::vector<tenon::v1::Object> objects = {from_text(kDevice)};
  Table table = object_table(tenon::v1::OBJECT_KIND_DEVICE, objects, TableStyle::kNormal, kNow);
  EXPECT_THAT(table.columns, ElementsAre("NAME", "STATUS", "INSTANCES", "AGE"));
  ASSERT_EQ(table.rows.size(), 1u);
  EXPECT_THAT(table.rows[0], ElementsAre("edge-1", "Connected,Cordoned", "2", "60m"));
  table = object_table(tenon::v1::OBJECT_KIND_DEVICE, objects, TableStyle::kWide, kNow);
  EXPECT_THAT(table.columns, ElementsAre("NAME", "STATUS", "INSTANCES", "AGE", "ARCH", "CORES",
                                         "RT-CORES", "ENGINE", "LAST-SEEN", "VERSION", "LABELS"));
  EXPECT_THAT(table.rows[0], ElementsAre("edge-1", "Connected,Cordoned", "2", "60m", "x86_64", "8",
                                         "2", "qemu-tcg", "10s", "5/4", "site=lab"));
}

TEST(RenderTest, AppAndDeploymentTables) {
  Table apps = object_table(tenon::v1::OBJECT_KIND_APP, {from_text(kApp)}, TableStyle::kWide, kNow);
  EXPECT_THAT(apps.columns, ElementsAre("NAME", "PROGRAM", "TASKS", "AGE"));
  EXPECT_THAT(apps.rows[0], ElementsAre("control-loop", "control-loop", "2", "60m"));
  tenon::v1::Object deployment = from_text(kDeployment);
  deployment.mutable_deployment()->mutable_spec()->mutable_placement()->set_memory_bytes(64 * 1024 *
                                                                                         1024);
  Table deployments =
      object_table(tenon::v1::OBJECT_KIND_DEPLOYMENT, {deployment}, TableStyle::kWide, kNow);
  EXPECT_THAT(deployments.columns, ElementsAre("NAME", "APP", "MATCHED", "RUNNING", "UPDATED",
                                               "PHASE", "AGE", "SELECTOR", "PLACEMENT"));
  EXPECT_THAT(deployments.rows[0],
              ElementsAre("control", "control-loop", "4", "3", "2", "Progressing", "59m",
                          "site=lab,class in (edge-small,x),!broken",
                          "dedicated-core,rt=50,memory=64.0MiB"));
}

TEST(RenderTest, InstanceAndCompositionTables) {
  Table instances = object_table(tenon::v1::OBJECT_KIND_INSTANCE, {from_text(kInstance)},
                                 TableStyle::kWide, kNow);
  EXPECT_THAT(instances.columns,
              ElementsAre("NAME", "DEVICE", "DEPLOYMENT", "STATE", "RESTARTS", "P99-LATENCY",
                          "MISSES", "AGE", "IMAGE", "EXIT-REASON", "MESSAGE"));
  EXPECT_THAT(instances.rows[0],
              ElementsAre("control-0123456789ab", "edge-1", "control", "Running", "1", "12.5µs",
                          "3", "60m", "sha256:0123456789ab", "GuestExit(3)", "running"));
  // Above a millisecond, latencies read in milliseconds.
  tenon::v1::Object slow = from_text(kInstance);
  for (auto& task :
       *slow.mutable_instance()->mutable_status()->mutable_latency()->mutable_tasks()) {
    task.mutable_release_latency()->set_p99_ns(2'345'000);
  }
  EXPECT_EQ(
      object_table(tenon::v1::OBJECT_KIND_INSTANCE, {slow}, TableStyle::kNormal, kNow).rows[0][5],
      "2.35ms");
  Table compositions =
      object_table(tenon::v1::OBJECT_KIND_COMPOSITION, {from_text(R"pb(composition {
                                                                         metadata { name: "c" }
                                                                         libraries { name: "a" }
                                                                       })pb")},
                   TableStyle::kNormal, kNow);
  EXPECT_THAT(compositions.columns, ElementsAre("NAME", "LIBRARIES", "IMAGE", "SIZE", "AGE"));
  EXPECT_THAT(compositions.rows[0], ElementsAre("c", "1", "<not built>", "<none>", "<unknown>"));
}

TEST(RenderTest, FormatTableAlignsColumns) {
  Table table;
  table.columns = {"NAME", "P99"};
  table.rows = {{"a-long-name", "12.5µs"}, {"b", "1.0µs"}};
  EXPECT_EQ(format_table(table),
            "NAME          P99\n"
            "a-long-name   12.5µs\n"
            "b             1.0µs\n");
}

TEST(RenderTest, Ages) {
  EXPECT_EQ(format_age(absl::Seconds(45)), "45s");
  EXPECT_EQ(format_age(absl::Seconds(192)), "3m12s");
  EXPECT_EQ(format_age(absl::Minutes(75)), "75m");
  EXPECT_EQ(format_age(absl::Hours(5)), "5h0m");
  EXPECT_EQ(format_age(absl::Hours(30)), "30h");
  EXPECT_EQ(format_age(absl::Hours(76)), "3d4h");
  EXPECT_EQ(format_age(absl::Hours(24 * 800)), "2y");
  EXPECT_EQ(format_age(absl::Seconds(-5)), "0s");
}

TEST(RenderTest, DescribeShowsEveryFieldAndTheLatencyTable) {
  const std::string deployment = describe_object(from_text(kDeployment));
  EXPECT_THAT(deployment, HasSubstr("Name:         control\n"));
  EXPECT_THAT(deployment, HasSubstr("Kind:         Deployment\n"));
  EXPECT_THAT(deployment, HasSubstr("Labels:       owner=,tier=rt\n"));
  EXPECT_THAT(deployment, HasSubstr("Created:      2024-05-01T12:00:00Z\n"));
  EXPECT_THAT(deployment, HasSubstr("  restart_policy: RESTART_POLICY_ALWAYS\n"));
  EXPECT_THAT(deployment, HasSubstr("    bake_time: 1.500s\n"));
  EXPECT_THAT(deployment, HasSubstr("      - key: class\n        relation: RELATION_IN\n"
                                    "        values: edge-small, x\n"));
  EXPECT_THAT(deployment, HasSubstr("Status:\n  observed_generation: 3\n"));
  const std::string instance = describe_object(from_text(kInstance));
  EXPECT_THAT(instance, HasSubstr("Latency (release latency, window 10s"));
  EXPECT_THAT(instance, HasSubstr("  TASK     JOBS    MISSES   P50     P99      MAX\n"
                                  "  pid      10000   2        1.5µs   12.5µs   40.0µs\n"
                                  "  logger   100     1        2.0µs   8.0µs    9.0µs\n"));
  EXPECT_THAT(instance, ::testing::Not(HasSubstr("p99_ns")));
}

}  // namespace
}  // namespace tenon::controller
