// Real guests on every engine usable here (KVM, QEMU): hello boots and prints; each hostile
// guest is stopped with its reason while Mortise itself carries on; `mortise run` maps each
// outcome to its exit status. Skipped only where no engine can run guests.
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "console_sink.h"
#include "engine.h"
#include "engines.h"
#include "gtest/gtest.h"
#include "instance.h"
#include "nlohmann/json.hpp"
#include "placement.h"
#include "shell_command.h"

namespace mortise {
namespace {

namespace test_support = tenon::test_support;

using std::chrono::milliseconds;

std::string guest(EngineKind engine, const std::string& name) {
  return test_support::image_dir(TEST_GUEST_DIR, engine) + "/" + name + ".elf";
}
std::string hello_image(EngineKind engine) {
  return test_support::image_dir(TENON_IMAGE_DIR, engine) + "/hello.elf";
}

std::string engine_test_name(EngineKind engine) { return engine_name(engine); }

// Where no engine runs, this is the test that says so (skipped); elsewhere the engines the tests
// run on are the ones `mortise engines` reports, and auto picks the same one.
TEST(GuestEngines, TheTestsRunOnWhatMortiseReports) {
  if (test_support::usable_engines().empty()) GTEST_SKIP() << test_support::no_engine_reason();
  const test_support::ShellResult result =
      test_support::run_shell(std::string(MORTISE_BINARY) + " engines -o json");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const std::optional<nlohmann::json> record = test_support::last_json_line(result.output);
  ASSERT_TRUE(record.has_value()) << result.output;
  for (const EngineKind engine : {EngineKind::kKvm, EngineKind::kQemu}) {
    const bool tested =
        std::find(test_support::usable_engines().begin(), test_support::usable_engines().end(),
                  engine) != test_support::usable_engines().end();
    EXPECT_EQ((*record)[engine_name(engine)]["usable"], tested) << result.output;
  }
  EXPECT_EQ((*record)["auto"], engine_name(test_support::auto_engine())) << result.output;
}

struct GuestRun {
  ExitReason reason;
  std::string console;
};

GuestRun run_guest(EngineKind engine, const std::string& image, uint64_t memory = 1 << 20,
                   milliseconds limit = milliseconds(5000)) {
  BufferConsole console;
  InstanceConfig config;
  config.image_path = image;
  config.memory_bytes = memory;
  absl::StatusOr<std::unique_ptr<Instance>> instance =
      create_instance(engine, config, QemuSettings{}, console);
  EXPECT_TRUE(instance.ok()) << instance.status();
  if (!instance.ok()) return {};
  ExitReason reason = (*instance)->run(limit);
  return {reason, console.contents()};
}

class GuestTest : public ::testing::TestWithParam<EngineKind> {
 protected:
  EngineKind engine() const { return GetParam(); }
  GuestRun run(const std::string& image, uint64_t memory = 1 << 20,
               milliseconds limit = milliseconds(5000)) {
    return run_guest(engine(), image, memory, limit);
  }
};

TEST_P(GuestTest, HelloBootsAndPrints) {
  GuestRun result = run(hello_image(engine()));
  EXPECT_EQ(result.reason.kind, ExitKind::kGuestExit) << result.reason.message;
  EXPECT_EQ(result.reason.status, 0);
  EXPECT_NE(result.console.find("Hello from Tenon!"), std::string::npos) << result.console;
}

TEST_P(GuestTest, HelloBootsInSmallGuest) {
  GuestRun result = run(hello_image(engine()), 128 << 10);
  EXPECT_EQ(result.reason.kind, ExitKind::kGuestExit) << result.reason.message;
}

TEST_P(GuestTest, ExitStatusReachesHost) {
  GuestRun result = run(guest(engine(), "exit_status"));
  EXPECT_EQ(result.reason.kind, ExitKind::kGuestExit) << result.reason.message;
  EXPECT_EQ(result.reason.status, 42);
}

TEST_P(GuestTest, TooSmallGuestIsRefusedWithMinimum) {
  BufferConsole console;
  InstanceConfig config;
  config.image_path = hello_image(engine());
  config.memory_bytes = 48 << 10;
  absl::StatusOr<std::unique_ptr<Instance>> instance =
      create_instance(engine(), config, QemuSettings{}, console);
  ASSERT_FALSE(instance.ok());
  EXPECT_NE(instance.status().message().find("too small"), std::string::npos) << instance.status();
}

TEST_P(GuestTest, ImageForTheOtherEngineIsRefused) {
  const EngineKind other = engine() == EngineKind::kKvm ? EngineKind::kQemu : EngineKind::kKvm;
  BufferConsole console;
  InstanceConfig config;
  config.image_path = hello_image(other);
  absl::StatusOr<std::unique_ptr<Instance>> instance =
      create_instance(engine(), config, QemuSettings{}, console);
  ASSERT_FALSE(instance.ok());
  EXPECT_NE(instance.status().message().find(platform_library(other == EngineKind::kKvm
                                                                  ? tenon::abi::Platform::kMortise
                                                                  : tenon::abi::Platform::kQemu)),
            std::string::npos)
      << instance.status();
}

INSTANTIATE_TEST_SUITE_P(Engines, GuestTest, ::testing::ValuesIn(test_support::usable_engines()),
                         [](const ::testing::TestParamInfo<EngineKind>& info) {
                           return engine_test_name(info.param);
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(GuestTest);

// ---- Hostile guests -----------------------------------------------------------------------

struct HostileCase {
  EngineKind engine;
  const char* guest;
  ExitKind kind;
  const char* reason_fragment;
};

// What each engine does with each misbehaviour. On QEMU the guest's stray port read and its own
// page tables reach only QEMU's empty machine (unassigned ports and memory read as ones, writes
// vanish), so the guest carries on to a normal exit: contained, not stopped.
std::vector<HostileCase> hostile_cases() {
  const EngineKind kvm = EngineKind::kKvm;
  const EngineKind qemu = EngineKind::kQemu;
  const std::vector<HostileCase> all = {
      {kvm, "console_buffer_outside", ExitKind::kViolation, "outside guest memory"},
      {kvm, "arguments_outside", ExitKind::kViolation, "argument block"},
      {kvm, "huge_length", ExitKind::kViolation, "exceeds the limit"},
      {kvm, "unknown_hypercall", ExitKind::kViolation, "unknown hypercall number 99"},
      {kvm, "port_read", ExitKind::kViolation, "read from port 0x60"},
      {kvm, "own_page_tables", ExitKind::kViolation, "outside guest memory"},
      {qemu, "port_read", ExitKind::kGuestExit, "guest exited with status 4294967295"},
      {qemu, "own_page_tables", ExitKind::kGuestExit, "guest exited with status 0"},
      {qemu, "exit_record_garbage", ExitKind::kViolation, "without an exit record"},
      {qemu, "exit_kind_mismatch", ExitKind::kViolation, "but the guest wrote"},
      {qemu, "panic_length_huge", ExitKind::kViolation, "exceeds the limit"},
      {qemu, "unknown_exit_value", ExitKind::kViolation, "names no way to end"},
  };
  std::vector<HostileCase> cases;
  for (const EngineKind engine : test_support::usable_engines()) {
    for (const HostileCase& hostile : all) {
      if (hostile.engine == engine) cases.push_back(hostile);
    }
    // The same CPU-level misbehaviour, stopped the same way on every engine.
    const std::vector<HostileCase> common = {
        {engine, "unmapped_write", ExitKind::kGuestFault,
         "address 0x3000 (write, page not present)"},
        {engine, "execute_data", ExitKind::kGuestFault, "instruction fetch, protection violation"},
        {engine, "spin_interrupts_off", ExitKind::kTimeout, "time limit"},
        {engine, "stack_overflow", ExitKind::kGuestFault, "stack overflow into the guard page"},
        {engine, "invalid_opcode", ExitKind::kGuestFault, "invalid opcode (#UD)"},
        {engine, "triple_fault", ExitKind::kGuestFault, "triple fault"},
        {engine, "panic", ExitKind::kGuestPanic, "assertion failed: answer == 42"},
    };
    cases.insert(cases.end(), common.begin(), common.end());
  }
  return cases;
}

class HostileGuestTest : public ::testing::TestWithParam<HostileCase> {};

TEST_P(HostileGuestTest, IsStoppedWithReason) {
  const HostileCase& hostile = GetParam();
  GuestRun result =
      run_guest(hostile.engine, guest(hostile.engine, hostile.guest), 1 << 20, milliseconds(1000));
  EXPECT_EQ(result.reason.kind, hostile.kind)
      << exit_kind_name(result.reason.kind) << ": " << result.reason.message;
  EXPECT_NE(result.reason.message.find(hostile.reason_fragment), std::string::npos)
      << result.reason.message;
  // Mortise is still whole: the next instance in this process boots normally.
  GuestRun after = run_guest(hostile.engine, hello_image(hostile.engine));
  EXPECT_EQ(after.reason.kind, ExitKind::kGuestExit) << after.reason.message;
}

INSTANTIATE_TEST_SUITE_P(Hostile, HostileGuestTest, ::testing::ValuesIn(hostile_cases()),
                         [](const ::testing::TestParamInfo<HostileCase>& info) {
                           return engine_test_name(info.param.engine) + "_" + info.param.guest;
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(HostileGuestTest);

// ---- The `mortise` command ----------------------------------------------------------------

using test_support::last_json_line;
using CommandResult = test_support::ShellResult;

class CommandTest : public GuestTest {
 protected:
  // Runs `mortise <arguments>` on this engine; stderr joins stdout unless `merge_stderr` is false.
  CommandResult command(const std::string& arguments, bool merge_stderr = true) {
    return test_support::run_shell(std::string(MORTISE_BINARY) + " " + arguments + " --engine " +
                                   engine_name(engine()) + (merge_stderr ? " 2>&1" : ""));
  }
};

TEST_P(CommandTest, RunsHelloAndReportsExit) {
  CommandResult result = command("run " + hello_image(engine()) + " --memory 256K");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("Hello from Tenon!"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("mortise: guest-exit: guest exited with status 0"),
            std::string::npos)
      << result.output;
}

TEST_P(CommandTest, ExitCodesAreDistinct) {
  EXPECT_EQ(command("run " + guest(engine(), "exit_status")).exit_code, 42);
  EXPECT_EQ(command("run " + guest(engine(), "invalid_opcode")).exit_code, 66);
  EXPECT_EQ(command("run " + guest(engine(), "panic")).exit_code, 67);
  const char* violating = engine() == EngineKind::kKvm ? "unknown_hypercall" : "unknown_exit_value";
  EXPECT_EQ(command("run " + guest(engine(), violating)).exit_code, 68);
  EXPECT_EQ(
      command("run " + guest(engine(), "spin_interrupts_off") + " --duration 300ms").exit_code, 69);
  EXPECT_EQ(command("run /nonexistent/image.elf").exit_code, 65);
  EXPECT_EQ(command("run " + hello_image(engine()) + " --memory lots").exit_code, 64);
  EXPECT_EQ(command("frobnicate").exit_code, 64);
  EXPECT_EQ(command("run " + hello_image(engine()) + " --icount --qemu-kvm").exit_code, 64);
}

TEST_P(CommandTest, JsonRecordIsLastStdoutLineAndNamesEngine) {
  // stderr (placement and exit lines) is dropped; the JSON record must end stdout.
  CommandResult result = command("run " + hello_image(engine()) + " -o json 2>/dev/null", false);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const std::optional<nlohmann::json> record = last_json_line(result.output);
  ASSERT_TRUE(record.has_value()) << result.output;
  EXPECT_EQ((*record)["exit"]["kind"], "guest-exit");
  EXPECT_EQ((*record)["exit"]["code"], 0);
  EXPECT_EQ((*record)["engine"], engine_name(engine()));
  EXPECT_EQ((*record)["engine_detail"], engine_detail(engine(), QemuSettings{}));
  EXPECT_TRUE(record->contains("boot_to_main_ns"));
  EXPECT_EQ((*record)["memory_bytes"], 1 << 20);
  if (engine() == EngineKind::kKvm) {
    // KVM's own count of exits into the host kernel includes every exit that reached Mortise.
    ASSERT_TRUE(record->contains("kvm_counters")) << record->dump();
    EXPECT_GE((*record)["kvm_counters"].value("exits", uint64_t{0}),
              (*record)["vcpu_exits"].get<uint64_t>())
        << record->dump();
  } else {
    EXPECT_FALSE(record->contains("kvm_counters")) << record->dump();
  }
}

TEST_P(CommandTest, RealtimePlacementPinsTheVcpuAndNeverMakesQemuFifo) {
  const int rt_cpu = default_partition().realtime_cpus.front();
  // While the guest runs, list each thread of the process that runs the vCPU (QEMU, the child of
  // mortise; mortise itself on kvm) as "<allowed cpus> <policy>".
  const std::string work = ::testing::TempDir() + "placement-" + engine_name(engine());
  std::ofstream(work + ".sh")
      << '"' << MORTISE_BINARY << "\" run " << test_support::image_dir(TENON_IMAGE_DIR, engine())
      << "/latency-probe.elf --realtime --app-run 3s --duration 120s --engine "
      << engine_name(engine()) << " -o json >\"$1\" 2>/dev/null &\n"
      << "m=$!\n"
      << "for i in $(seq 100); do q=$(pgrep -P $m); [ -n \"$q\" ] && break; sleep 0.05; done\n"
      << "p=${q:-$m}; sleep 1\n"
      << "for t in /proc/$p/task/*; do\n"
      << "  echo \"$(awk '/Cpus_allowed_list/{print $2}' $t/status)"
         " $(chrt -p ${t##*/} | awk 'NR==1{print $NF}')\"\n"
      << "done\n"
      << "wait $m\n";
  CommandResult threads = test_support::run_shell("bash " + work + ".sh " + work + ".json 2>&1");
  ASSERT_EQ(threads.exit_code, 0) << threads.output;
  const std::optional<nlohmann::json> record =
      last_json_line(test_support::run_shell("cat " + work + ".json").output);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ((*record)["exit"]["kind"], "guest-exit") << record->dump();
  EXPECT_EQ((*record)["placement"]["cpu"], rt_cpu) << record->dump();
  std::istringstream lines(threads.output);
  int counted = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    ++counted;
    if (engine() == EngineKind::kQemu) {
      // Every thread of QEMU: on the real-time core, none SCHED_FIFO.
      EXPECT_EQ(line, std::to_string(rt_cpu) + " SCHED_OTHER") << threads.output;
    }
  }
  EXPECT_GE(counted, engine() == EngineKind::kQemu ? 2 : 1) << threads.output;
  if (engine() == EngineKind::kQemu) {
    EXPECT_EQ((*record)["placement"]["sched_fifo"], false);
    EXPECT_NE((*record)["placement"]["note"].get<std::string>().find("not SCHED_FIFO"),
              std::string::npos);
  } else {
    // mortise's own thread runs the vCPU: SCHED_FIFO where the host grants it.
    EXPECT_EQ((*record)["placement"]["sched_fifo"], (*record)["placement"]["note"] == "")
        << record->dump();
  }
}

TEST_P(CommandTest, EnginesListsThisEngineAsUsable) {
  CommandResult result = test_support::run_shell(std::string(MORTISE_BINARY) + " engines -o json");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const std::optional<nlohmann::json> record = last_json_line(result.output);
  ASSERT_TRUE(record.has_value()) << result.output;
  EXPECT_EQ((*record)[engine_name(engine())]["usable"], true) << result.output;
}

INSTANTIATE_TEST_SUITE_P(Engines, CommandTest, ::testing::ValuesIn(test_support::usable_engines()),
                         [](const ::testing::TestParamInfo<EngineKind>& info) {
                           return engine_test_name(info.param);
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(CommandTest);

}  // namespace
}  // namespace mortise
