// Real KVM guests: hello boots and prints; each hostile guest is stopped with its reason while
// Mortise itself carries on; `mortise run` maps each outcome to its exit status.
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <string>

#include "console_sink.h"
#include "gtest/gtest.h"
#include "instance.h"
#include "kvm.h"
#include "nlohmann/json.hpp"
#include "shell_command.h"

namespace mortise {
namespace {

namespace test_support = tenon::test_support;

using std::chrono::milliseconds;

std::string guest(const std::string& name) {
  return std::string(TEST_GUEST_DIR) + "/" + name + ".elf";
}
std::string hello_image() { return std::string(TENON_IMAGE_DIR) + "/hello.elf"; }

class GuestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<Kvm> kvm = Kvm::open();
    if (!kvm.ok()) GTEST_SKIP() << "skipping: KVM is not available here (" << kvm.status() << ")";
    kvm_.emplace(std::move(*kvm));
  }

  struct Run {
    ExitReason reason;
    std::string console;
  };

  Run run(const std::string& image, uint64_t memory = 1 << 20,
          milliseconds limit = milliseconds(5000)) {
    BufferConsole console;
    InstanceConfig config;
    config.image_path = image;
    config.memory_bytes = memory;
    absl::StatusOr<std::unique_ptr<Instance>> instance = Instance::create(*kvm_, config, console);
    EXPECT_TRUE(instance.ok()) << instance.status();
    if (!instance.ok()) return {};
    ExitReason reason = (*instance)->run(limit);
    return {reason, console.contents()};
  }

  std::optional<Kvm> kvm_;
};

TEST_F(GuestTest, HelloBootsAndPrints) {
  Run result = run(hello_image());
  EXPECT_EQ(result.reason.kind, ExitKind::kGuestExit) << result.reason.message;
  EXPECT_EQ(result.reason.status, 0);
  EXPECT_NE(result.console.find("Hello from Tenon!"), std::string::npos) << result.console;
}

TEST_F(GuestTest, HelloBootsInSmallGuest) {
  Run result = run(hello_image(), 128 << 10);
  EXPECT_EQ(result.reason.kind, ExitKind::kGuestExit) << result.reason.message;
}

TEST_F(GuestTest, ExitStatusReachesHost) {
  Run result = run(guest("exit_status"));
  EXPECT_EQ(result.reason.kind, ExitKind::kGuestExit);
  EXPECT_EQ(result.reason.status, 42);
}

TEST_F(GuestTest, TooSmallGuestIsRefusedWithMinimum) {
  BufferConsole console;
  InstanceConfig config;
  config.image_path = hello_image();
  config.memory_bytes = 48 << 10;
  absl::StatusOr<std::unique_ptr<Instance>> instance = Instance::create(*kvm_, config, console);
  ASSERT_FALSE(instance.ok());
  EXPECT_NE(instance.status().message().find("too small"), std::string::npos) << instance.status();
}

struct HostileCase {
  const char* guest;
  ExitKind kind;
  const char* reason_fragment;
};

class HostileGuestTest : public GuestTest, public ::testing::WithParamInterface<HostileCase> {};

TEST_P(HostileGuestTest, IsStoppedWithReason) {
  const HostileCase& hostile = GetParam();
  Run result = run(guest(hostile.guest), 1 << 20, milliseconds(1000));
  EXPECT_EQ(result.reason.kind, hostile.kind)
      << exit_kind_name(result.reason.kind) << ": " << result.reason.message;
  EXPECT_NE(result.reason.message.find(hostile.reason_fragment), std::string::npos)
      << result.reason.message;
  // Mortise is still whole: the next instance in this process boots normally.
  Run after = run(hello_image());
  EXPECT_EQ(after.reason.kind, ExitKind::kGuestExit) << after.reason.message;
}

INSTANTIATE_TEST_SUITE_P(
    Hostile, HostileGuestTest,
    ::testing::Values(
        HostileCase{"console_buffer_outside", ExitKind::kViolation, "outside guest memory"},
        HostileCase{"arguments_outside", ExitKind::kViolation, "argument block"},
        HostileCase{"huge_length", ExitKind::kViolation, "exceeds the limit"},
        HostileCase{"unknown_hypercall", ExitKind::kViolation, "unknown hypercall number 99"},
        HostileCase{"port_read", ExitKind::kViolation, "read from port 0x60"},
        HostileCase{"unmapped_write", ExitKind::kGuestFault,
                    "address 0x3000 (write, page not present)"},
        HostileCase{"execute_data", ExitKind::kGuestFault,
                    "instruction fetch, protection violation"},
        HostileCase{"spin_interrupts_off", ExitKind::kTimeout, "time limit"},
        HostileCase{"stack_overflow", ExitKind::kGuestFault, "stack overflow into the guard page"},
        HostileCase{"invalid_opcode", ExitKind::kGuestFault, "invalid opcode (#UD)"},
        HostileCase{"own_page_tables", ExitKind::kViolation, "outside guest memory"},
        HostileCase{"panic", ExitKind::kGuestPanic, "assertion failed: answer == 42"}),
    [](const ::testing::TestParamInfo<HostileCase>& info) {
      return std::string(info.param.guest);
    });

// ---- The `mortise` command ----------------------------------------------------------------

using test_support::last_json_line;
using CommandResult = test_support::ShellResult;

// Runs `mortise <arguments>`; stderr joins stdout unless `merge_stderr` is false.
CommandResult run_command(const std::string& arguments, bool merge_stderr = true) {
  return test_support::run_shell(std::string(MORTISE_BINARY) + " " + arguments +
                                 (merge_stderr ? " 2>&1" : ""));
}

TEST_F(GuestTest, CommandRunsHelloAndReportsExit) {
  CommandResult result = run_command("run " + hello_image() + " --memory 256K");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("Hello from Tenon!"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("mortise: guest-exit: guest exited with status 0"),
            std::string::npos)
      << result.output;
}

TEST_F(GuestTest, CommandExitCodesAreDistinct) {
  EXPECT_EQ(run_command("run " + guest("exit_status")).exit_code, 42);
  EXPECT_EQ(run_command("run " + guest("invalid_opcode")).exit_code, 66);
  EXPECT_EQ(run_command("run " + guest("panic")).exit_code, 67);
  EXPECT_EQ(run_command("run " + guest("unknown_hypercall")).exit_code, 68);
  EXPECT_EQ(run_command("run " + guest("spin_interrupts_off") + " --duration 300ms").exit_code, 69);
  EXPECT_EQ(run_command("run /nonexistent/image.elf").exit_code, 65);
  EXPECT_EQ(run_command("run " + hello_image() + " --memory lots").exit_code, 64);
  EXPECT_EQ(run_command("frobnicate").exit_code, 64);
}

TEST_F(GuestTest, CommandJsonRecordIsLastStdoutLine) {
  // stderr (placement and exit lines) is dropped; the JSON record must end stdout.
  CommandResult result = run_command("run " + hello_image() + " -o json 2>/dev/null", false);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const std::optional<nlohmann::json> record = last_json_line(result.output);
  ASSERT_TRUE(record.has_value()) << result.output;
  EXPECT_EQ((*record)["exit"]["kind"], "guest-exit");
  EXPECT_EQ((*record)["exit"]["code"], 0);
  EXPECT_TRUE(record->contains("boot_to_main_ns"));
  EXPECT_EQ((*record)["memory_bytes"], 1 << 20);
}

}  // namespace
}  // namespace mortise
