// Hypercall decoding against a real GuestMemory: good calls act, bad ones are violations.
#include "hypercall_dispatch.h"

#include <cstring>

#include "gtest/gtest.h"

namespace mortise {
namespace {

using tenon::abi::Hypercall;
constexpr uint16_t port(Hypercall number) {
  return tenon::abi::kHypercallPortBase + static_cast<uint16_t>(number);
}

class HypercallDispatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<GuestMemory> memory = GuestMemory::create(64 << 10);
    ASSERT_TRUE(memory.ok());
    memory_.emplace(std::move(*memory));
  }
  HypercallOutcome call(Hypercall number, uint32_t address) {
    return dispatch_hypercall(port(number), address, 4, *memory_, console_);
  }
  std::optional<GuestMemory> memory_;
  BufferConsole console_;
};

TEST_F(HypercallDispatchTest, ConsoleWriteCopiesBytesAndReportsWritten) {
  std::memcpy(memory_->host_base() + 0x4000, "hello", 5);
  ASSERT_TRUE(memory_->write(0x3000, tenon::abi::ConsoleWriteArgs{0x4000, 5, 0}).ok());
  HypercallOutcome outcome = call(Hypercall::kConsoleWrite, 0x3000);
  EXPECT_EQ(outcome.kind, HypercallOutcomeKind::kContinue) << outcome.message;
  EXPECT_EQ(console_.contents(), "hello");
  EXPECT_EQ(memory_->read<tenon::abi::ConsoleWriteArgs>(0x3000)->written, 5u);
}

TEST_F(HypercallDispatchTest, ConsoleWriteOutsideMemoryIsViolation) {
  ASSERT_TRUE(memory_->write(0x3000, tenon::abi::ConsoleWriteArgs{0xfff0, 0x20, 0}).ok());
  EXPECT_EQ(call(Hypercall::kConsoleWrite, 0x3000).kind, HypercallOutcomeKind::kViolation);
  ASSERT_TRUE(memory_->write(0x3000, tenon::abi::ConsoleWriteArgs{0x10, ~0ull, 0}).ok());
  EXPECT_EQ(call(Hypercall::kConsoleWrite, 0x3000).kind, HypercallOutcomeKind::kViolation);
  EXPECT_EQ(console_.contents(), "");
}

TEST_F(HypercallDispatchTest, ArgumentBlockOutsideMemoryIsViolation) {
  HypercallOutcome outcome = call(Hypercall::kExit, 0xfffffff8);
  EXPECT_EQ(outcome.kind, HypercallOutcomeKind::kViolation);
  EXPECT_NE(outcome.message.find("argument block"), std::string::npos) << outcome.message;
  // Straddling the end of memory by one byte.
  EXPECT_EQ(call(Hypercall::kExit, (64 << 10) - 7).kind, HypercallOutcomeKind::kViolation);
}

TEST_F(HypercallDispatchTest, ExitCarriesStatus) {
  ASSERT_TRUE(memory_->write(0x3000, tenon::abi::ExitArgs{-3}).ok());
  HypercallOutcome outcome = call(Hypercall::kExit, 0x3000);
  EXPECT_EQ(outcome.kind, HypercallOutcomeKind::kExit);
  EXPECT_EQ(outcome.exit_status, -3);
}

TEST_F(HypercallDispatchTest, FaultIsDescribed) {
  ASSERT_TRUE(memory_->write(0x3000, tenon::abi::FaultArgs{14, 0x2, 0x8123, 0x7000, 0x3000}).ok());
  HypercallOutcome outcome = call(Hypercall::kFault, 0x3000);
  EXPECT_EQ(outcome.kind, HypercallOutcomeKind::kFault);
  EXPECT_EQ(
      outcome.message,
      "page fault (#PF) at rip 0x8123, error code 0x2, address 0x3000 (write, page not present)");
}

TEST_F(HypercallDispatchTest, PanicMessageIsSanitizedAndBounded) {
  std::memcpy(memory_->host_base() + 0x4000, "bad\nthing\x01", 10);
  ASSERT_TRUE(memory_->write(0x3000, tenon::abi::PanicArgs{0x4000, 10}).ok());
  HypercallOutcome outcome = call(Hypercall::kPanic, 0x3000);
  EXPECT_EQ(outcome.kind, HypercallOutcomeKind::kPanic);
  EXPECT_EQ(outcome.message, "bad?thing?");
  ASSERT_TRUE(memory_->write(0x3000, tenon::abi::PanicArgs{0x4000, 100000}).ok());
  EXPECT_EQ(call(Hypercall::kPanic, 0x3000).kind, HypercallOutcomeKind::kViolation);
}

TEST_F(HypercallDispatchTest, UnknownNumberAndWrongWidthAreViolations) {
  EXPECT_EQ(dispatch_hypercall(tenon::abi::kHypercallPortBase + 99, 0, 4, *memory_, console_).kind,
            HypercallOutcomeKind::kViolation);
  EXPECT_EQ(dispatch_hypercall(port(Hypercall::kExit), 0x3000, 1, *memory_, console_).kind,
            HypercallOutcomeKind::kViolation);
}

}  // namespace
}  // namespace mortise
