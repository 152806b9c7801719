// The composition engine on the real catalog: goldens for the example apps, every refusal with
// its message, determinism, and the memory plan against Mortise's own layout code.
#include <cstdlib>
#include <fstream>
#include <regex>

#include "composition.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "guest_setup.h"
#include "instance.h"
#include "memory_layout.h"
#include "render.h"
#include "test_support.h"

namespace tenon::controller {
namespace {

using ::testing::HasSubstr;
using testing::load_app;
using testing::load_device;
using testing::real_catalog;

absl::StatusOr<Composition> compose_example(const std::string& app, const std::string& device) {
  return compose(real_catalog(), load_app(app), load_device(device));
}

std::vector<std::string> library_names(const Composition& composition) {
  std::vector<std::string> names;
  for (const ChosenLibrary& library : composition.libraries) names.push_back(library.name);
  return names;
}

// Measured bytes change whenever anyone edits a library; goldens pin everything else.
nlohmann::ordered_json masked(nlohmann::ordered_json node, const std::string& key = "") {
  static const std::regex kBytes(R"(\d+ (bytes|KiB))");
  if (node.is_object()) {
    for (auto& [child_key, value] : node.items()) value = masked(value, child_key);
  } else if (node.is_array()) {
    for (auto& value : node) value = masked(value, key);
  } else if (node.is_number() &&
             (key.ends_with("_bytes") || key == "guest_address" || key == "image_end_bound")) {
    node = "<measured>";
  } else if (node.is_string() && key.ends_with("_digest")) {
    node = "<digest>";
  } else if (node.is_string()) {
    node = std::regex_replace(node.get<std::string>(), kBytes, "<n> $1");
  }
  return node;
}

class GoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenTest, MatchesGolden) {
  absl::StatusOr<Composition> composition =
      compose_example(GetParam() + ".app.yaml", "edge-small.device.yaml");
  ASSERT_TRUE(composition.ok()) << composition.status();
  nlohmann::ordered_json document = masked(composition_to_json(*composition));
  document["name"] = "<name>";  // carries the input digest
  const std::string actual = json_to_yaml(document);
  const std::string golden = std::string(GOLDEN_DIR) + "/" + GetParam() + ".edge-small.yaml";
  if (std::getenv("UPDATE_GOLDENS") != nullptr) {
    std::ofstream(golden) << actual;
    GTEST_SKIP() << "rewrote " << golden;
  }
  absl::StatusOr<std::string> expected = read_text_file(golden);
  ASSERT_TRUE(expected.ok()) << expected.status() << " (run with UPDATE_GOLDENS=1 to create)";
  EXPECT_EQ(actual, *expected) << "rerun with UPDATE_GOLDENS=1 if the change is intended";
}

INSTANTIATE_TEST_SUITE_P(ExampleApps, GoldenTest,
                         ::testing::Values("hello", "latency-probe", "control-loop",
                                           "control-loop-edf", "control-loop-overloaded"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST(ComposeTest, HelloCarriesNoSchedulerCode) {
  absl::StatusOr<Composition> composition =
      compose_example("hello.app.yaml", "edge-small.device.yaml");
  ASSERT_TRUE(composition.ok()) << composition.status();
  EXPECT_EQ(library_names(*composition),
            (std::vector<std::string>{"arch-x86_64", "console", "plat-mortise"}));
  EXPECT_FALSE(composition->schedulability.analysed);
}

// Inter-VM channels: an app that needs ivc gets the guest library and Mortise's channel support;
// an app that does not carries none of its code.
TEST(ComposeTest, AppThatNeedsIvcGetsTheIvcLibraryAndMortiseChannels) {
  absl::StatusOr<Composition> composition =
      compose_example("sensor.app.yaml", "edge-small.device.yaml");
  ASSERT_TRUE(composition.ok()) << composition.status();
  EXPECT_THAT(library_names(*composition), ::testing::Contains("ivc"));
  std::vector<std::string> host;
  for (const ChosenLibrary& library : composition->mortise_libraries) host.push_back(library.name);
  EXPECT_THAT(host, ::testing::Contains("ivc"));
}

TEST(ComposeTest, AppWithoutIvcNeedCarriesNoIvcCode) {
  for (const char* app : {"hello.app.yaml", "control-loop.app.yaml", "latency-probe.app.yaml"}) {
    absl::StatusOr<Composition> composition = compose_example(app, "edge-small.device.yaml");
    ASSERT_TRUE(composition.ok()) << app << ": " << composition.status();
    EXPECT_THAT(library_names(*composition), ::testing::Not(::testing::Contains("ivc"))) << app;
    for (const ChosenLibrary& library : composition->mortise_libraries) {
      EXPECT_NE(library.name, "ivc") << app;
    }
  }
}

TEST(ComposeTest, PicksTheSmallerSchedulerWhenBothMeetTheDeadlines) {
  absl::StatusOr<Composition> composition =
      compose_example("latency-probe.app.yaml", "edge-small.device.yaml");
  ASSERT_TRUE(composition.ok()) << composition.status();
  const Catalog& catalog = real_catalog();
  const uint64_t fixed_priority =
      catalog.find_library(LibraryLayer::kTenon, "sched-fp")->footprint.total_bytes();
  const uint64_t edf =
      catalog.find_library(LibraryLayer::kTenon, "sched-edf")->footprint.total_bytes();
  const std::string expected =
      edf < fixed_priority || (edf == fixed_priority) ? "sched-edf" : "sched-fp";
  std::vector<std::string> names = library_names(*composition);
  EXPECT_NE(std::find(names.begin(), names.end(), expected), names.end());
  EXPECT_TRUE(composition->schedulability.schedulable);
}

TEST(ComposeTest, PicksEdfWhenFixedPriorityMissesADeadline) {
  absl::StatusOr<Composition> composition =
      compose_example("control-loop-overloaded.app.yaml", "edge-small.device.yaml");
  ASSERT_TRUE(composition.ok()) << composition.status();
  EXPECT_EQ(composition->schedulability.scheduler, SchedulerKind::kEarliestDeadlineFirst);
  bool explained = false;
  for (const std::string& line : composition->explanation) {
    explained |=
        line.find("not fixed-priority: under fixed-priority task 'pid'") != std::string::npos;
  }
  EXPECT_TRUE(explained);
}

TEST(ComposeTest, PinnedSchedulerAndOptionOverride) {
  absl::StatusOr<Composition> composition =
      compose_example("control-loop-edf.app.yaml", "edge-small.device.yaml");
  ASSERT_TRUE(composition.ok()) << composition.status();
  EXPECT_EQ(composition->schedulability.scheduler, SchedulerKind::kEarliestDeadlineFirst);
  EXPECT_EQ(composition->memory_plan.task_stack_bytes, 8192u);
  EXPECT_EQ(composition->memory_plan.heap_bytes, 3u * 8192u);
}

TEST(ComposeTest, DeterministicAcrossRunsAndDeviceNames) {
  absl::StatusOr<Composition> first =
      compose_example("control-loop.app.yaml", "edge-small.device.yaml");
  absl::StatusOr<Composition> second =
      compose_example("control-loop.app.yaml", "edge-small.device.yaml");
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(composition_to_json(*first).dump(), composition_to_json(*second).dump());
  DeviceProfile renamed = load_device("edge-small.device.yaml");
  renamed.name = "another-box-of-the-same-kind";
  absl::StatusOr<Composition> third =
      compose(real_catalog(), load_app("control-loop.app.yaml"), renamed);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->input_digest, first->input_digest);
}

// ---- Refusals -------------------------------------------------------------------------------

void expect_refusal(const absl::StatusOr<Composition>& composition, const std::string& message) {
  ASSERT_FALSE(composition.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(composition.status())) << composition.status();
  EXPECT_THAT(composition.status().message(), HasSubstr(message));
}

TEST(RefusalTest, UnsupportedArch) {
  expect_refusal(compose_example("latency-probe.app.yaml", "arm-gateway.device.yaml"),
                 "unsupported arch: device arm-gateway is arm64; the catalog builds images for "
                 "x86_64 (Tenon libraries support: x86_64)");
}

TEST(RefusalTest, UnsatisfiableNeedNamesTheMissingFeature) {
  expect_refusal(compose_example("latency-probe.app.yaml", "no-tsc-deadline.device.yaml"),
                 "unsatisfiable: no set of libraries meets every need of latency-probe on "
                 "legacy-host: 'timer': timer-lapic needs hypervisor feature 'xapic-mmio', "
                 "which the device lacks; timer-tscdeadline needs hypervisor feature "
                 "'tsc-deadline-timer', which the device lacks");
  // Without tasks the same device is fine.
  EXPECT_TRUE(compose_example("hello.app.yaml", "no-tsc-deadline.device.yaml").ok());
}

TEST(RefusalTest, UnknownCapability) {
  AppSpec app = load_app("hello.app.yaml");
  app.needs.push_back("multi-process");  // not in the catalog (yet)
  expect_refusal(compose(real_catalog(), app, load_device("edge-small.device.yaml")),
                 "'multi-process': (none) no library in the catalog provides it");
}

TEST(RefusalTest, ConflictingLibraries) {
  AppSpec app = load_app("latency-probe.app.yaml");
  app.libraries = {"sched-fp", "sched-edf"};
  expect_refusal(compose(real_catalog(), app, load_device("edge-small.device.yaml")),
                 "conflict: the spec asks for sched-edf, which conflicts with sched-fp (asked "
                 "for by the app spec)");
}

TEST(RefusalTest, PinnedSchedulerAgainstAskedLibrary) {
  AppSpec app = load_app("latency-probe.app.yaml");
  app.libraries = {"sched-fp"};
  app.scheduler = SchedulerKind::kEarliestDeadlineFirst;
  expect_refusal(compose(real_catalog(), app, load_device("edge-small.device.yaml")),
                 "unsatisfiable: the spec pins scheduler edf");
}

TEST(RefusalTest, UnschedulableNamesTaskAndNumbers) {
  expect_refusal(compose_example("control-loop-unschedulable.app.yaml", "edge-small.device.yaml"),
                 "unschedulable: control-loop: under fixed-priority task 'supervisor' has a "
                 "worst-case response time of at least");
  expect_refusal(compose_example("control-loop-unschedulable.app.yaml", "edge-small.device.yaml"),
                 "under edf the utilisation 1.05");
}

TEST(RefusalTest, DoesNotFitTheDevice) {
  expect_refusal(compose_example("latency-probe.app.yaml", "tiny-mcu.device.yaml"),
                 "does not fit: latency-probe needs");
  expect_refusal(compose_example("latency-probe.app.yaml", "tiny-mcu.device.yaml"),
                 "but device tiny offers 64 KiB");
}

TEST(RefusalTest, MissingMortiseLibrary) {
  DeviceProfile device = load_device("edge-small.device.yaml");
  device.mortise_libraries = {"console", "hypercall", "kvm", "memory", "pagetable"};
  expect_refusal(compose(real_catalog(), load_app("hello.app.yaml"), device),
                 "needs hypervisor capability 'elf-loader' (Mortise library loader), which "
                 "device edge-small's Mortise does not have");
}

TEST(RefusalTest, IvcAppOnADeviceWhoseMortiseHasNoChannels) {
  DeviceProfile device = load_device("edge-small.device.yaml");
  device.mortise_libraries = {"console", "hypercall", "kvm", "loader", "memory", "pagetable"};
  expect_refusal(compose(real_catalog(), load_app("ivc-control.app.yaml"), device),
                 "needs hypervisor capability 'ivc-channels' (Mortise library ivc)");
}

TEST(RefusalTest, GuestAbiMismatch) {
  DeviceProfile device = load_device("edge-small.device.yaml");
  device.guest_abi_version = 99;
  expect_refusal(compose(real_catalog(), load_app("hello.app.yaml"), device),
                 "accepts guest ABI 99");
}

TEST(BadInputTest, UnknownProgramAndTaskMismatchNameFileLineField) {
  AppSpec app = load_app("latency-probe.app.yaml");
  app.program = "nonexistent";
  absl::StatusOr<Composition> composition =
      compose(real_catalog(), app, load_device("edge-small.device.yaml"));
  ASSERT_FALSE(composition.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(composition.status()));
  EXPECT_THAT(
      composition.status().message(),
      HasSubstr("deploy/examples/latency-probe.app.yaml:2: program: no program 'nonexistent'"));
  app = load_app("latency-probe.app.yaml");
  app.tasks[0].name = "other";
  composition = compose(real_catalog(), app, load_device("edge-small.device.yaml"));
  ASSERT_FALSE(composition.ok());
  EXPECT_THAT(composition.status().message(),
              HasSubstr(":4: tasks: program 'latency-probe' creates tasks [probe] but the spec "
                        "lists [other]"));
}

TEST(BadInputTest, OptionOutsideItsRange) {
  absl::StatusOr<AppSpec> app = parse_app_spec(
      "program: latency-probe\noptions:\n  sched:\n    task_stack_bytes: 100\n", "a.yaml");
  ASSERT_TRUE(app.ok()) << app.status();
  absl::StatusOr<Composition> composition =
      compose(real_catalog(), *app, load_device("edge-small.device.yaml"));
  ASSERT_FALSE(composition.ok());
  EXPECT_THAT(composition.status().message(),
              HasSubstr("a.yaml:4: options.sched.task_stack_bytes: 100 is outside [2048, 65536]"));
}

// ---- Memory plan ----------------------------------------------------------------------------

// Mortise's layout for `plan` on the machine of `engine`; checks the plan against it.
void expect_plan_matches_mortise(const MemoryPlan& plan, mortise::EngineKind engine,
                                 const std::string& what) {
  SCOPED_TRACE(what);
  const mortise::MachineConstraints machine = mortise::machine_constraints(engine);
  const GuestMachine mirror = guest_machine(engine == mortise::EngineKind::kQemu);
  EXPECT_EQ(mirror.hole_start, machine.hole_start);
  EXPECT_EQ(mirror.hole_end, machine.hole_end);
  EXPECT_EQ(mirror.device_window, machine.device_window == mortise::DeviceWindow::kPresent);
  EXPECT_EQ(plan.total_bytes % 4096, 0u);
  absl::StatusOr<mortise::MemoryLayout> layout = mortise::plan_memory_layout(
      plan.total_bytes, plan.image_end_bound, plan.boot_stack_bytes, machine);
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_EQ(layout->heap_end - layout->heap_start, plan.heap_bytes);
  EXPECT_EQ(layout->page_tables, plan.total_bytes - plan.page_table_bytes);
  // One page less and Mortise refuses, or the heap shrinks: the plan is the smallest that works.
  absl::StatusOr<mortise::MemoryLayout> smaller = mortise::plan_memory_layout(
      plan.total_bytes - 4096, plan.image_end_bound, plan.boot_stack_bytes, machine);
  EXPECT_TRUE(!smaller.ok() || smaller->heap_end - smaller->heap_start < plan.heap_bytes);
  uint64_t address = 0;
  for (const MemoryRegion& region : plan.regions) {
    EXPECT_EQ(region.guest_address, address) << region.name;
    if (region.name == "heap") {
      EXPECT_EQ(region.guest_address, layout->heap_start);
    }
    if (region.name == "guard") {
      EXPECT_EQ(region.guest_address, layout->guard_page);
    }
    address += region.size_bytes;
  }
  EXPECT_EQ(address, plan.total_bytes);
}

TEST(MemoryPlanTest, MatchesMortiseLayoutOnEveryEngine) {
  EXPECT_EQ(mortise::InstanceConfig{}.stack_bytes, kBootStackBytes);
  for (const auto& [device, engine] :
       {std::pair{"edge-small.device.yaml", mortise::EngineKind::kKvm},
        std::pair{"qemu-edge.device.yaml", mortise::EngineKind::kQemu}}) {
    for (const char* app :
         {"hello.app.yaml", "latency-probe.app.yaml", "control-loop-edf.app.yaml"}) {
      absl::StatusOr<Composition> composition = compose_example(app, device);
      ASSERT_TRUE(composition.ok()) << composition.status();
      expect_plan_matches_mortise(composition->memory_plan, engine,
                                  std::string(app) + " on " + device);
    }
  }
}

// Around the QEMU machine's firmware hole at 960 KiB: a heap that fits below it with the rest
// above, a heap that does not fit below, and a plan that ends just under it.
TEST(MemoryPlanTest, QemuMachineKeepsItsFirmwareHoleFree) {
  const GuestMachine qemu = guest_machine(true);
  for (const uint64_t heap : {uint64_t{880} << 10, uint64_t{900} << 10, uint64_t{2} << 20,
                              uint64_t{800} << 10, uint64_t{4} << 10}) {
    const MemoryPlan plan = plan_memory(8192, 4096, 4096, heap, 4096, qemu);
    expect_plan_matches_mortise(plan, mortise::EngineKind::kQemu,
                                "heap " + std::to_string(heap >> 10) + " KiB");
    EXPECT_GE(plan.heap_bytes, heap);
    for (const MemoryRegion& region : plan.regions) {
      const bool overlaps = region.guest_address < qemu.hole_end &&
                            region.guest_address + region.size_bytes > qemu.hole_start;
      if (overlaps) {
        EXPECT_EQ(region.name, "machine-firmware");
      }
    }
  }
}

TEST(MemoryPlanTest, PageTablesGrowPastTwoMegabytes) {
  MemoryPlan plan = plan_memory(4096, 0, 0, 3 << 20, 4096);
  absl::StatusOr<mortise::MemoryLayout> layout =
      mortise::plan_memory_layout(plan.total_bytes, plan.image_end_bound, plan.boot_stack_bytes);
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_EQ(layout->heap_end - layout->heap_start, plan.heap_bytes);
  EXPECT_EQ(plan.page_table_bytes, (3 + 2) * 4096u);
}

}  // namespace
}  // namespace tenon::controller
