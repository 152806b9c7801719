// Inter-VM channels through mortised: two VMs declared as the two sides of a channel in their
// CreateVmRequest, each in its own mortise-vmm process, ping-pong to completion; the channel's
// counters reach the API; a side is held by one VM at a time and freed by Destroy; bad
// declarations are refused. Channels are the kvm engine's alone: under the qemu engine the tests
// check that mortised refuses them, naming why.
#include <unistd.h>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "mortised_fixture.h"
#include "mortised_process.h"
#include "tenon/v1/mortise.grpc.pb.h"

namespace {

using mortise::testing::image;
using mortise::testing::MortisedProcess;
using mortise::testing::open_descriptor_count;
using mortise::testing::rpc_deadline;
using mortise::testing::wait_until;

constexpr uint64_t kGuestMemory = 256 << 10;

class MortisedIvcTest : public mortise::testing::MortisedFixture {
 protected:
  void SetUp() override {
    MortisedFixture::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    if (mortise::testing::test_engine() != mortise::EngineKind::kKvm) {
      GTEST_SKIP() << "channels run on the kvm engine only, and mortised runs the qemu engine "
                      "here (MortisedQemuIvcTest checks the refusal)";
    }
  }
  tenon::v1::CreateVmRequest request(const std::string& name, const std::string& image_name,
                                     const std::string& channel, tenon::v1::ChannelSide side) {
    tenon::v1::CreateVmRequest request;
    request.set_name(name);
    request.set_image_path(image(image_name));
    request.set_memory_bytes(kGuestMemory);
    tenon::v1::ChannelEndpoint* endpoint = request.add_channels();
    endpoint->set_name(channel);
    endpoint->set_side(side);
    return request;
  }
  grpc::Status create(const tenon::v1::CreateVmRequest& request) {
    tenon::v1::VmOperationResponse response;
    grpc::ClientContext context;
    context.set_deadline(rpc_deadline());
    return mortised_->stub().Create(&context, request, &response);
  }
  grpc::Status start(const std::string& name) {
    tenon::v1::StartVmRequest request;
    request.set_name(name);
    tenon::v1::VmOperationResponse response;
    grpc::ClientContext context;
    context.set_deadline(rpc_deadline());
    return mortised_->stub().Start(&context, request, &response);
  }
  grpc::Status destroy(const std::string& name) {
    tenon::v1::DestroyVmRequest request;
    request.set_name(name);
    tenon::v1::VmOperationResponse response;
    grpc::ClientContext context;
    context.set_deadline(rpc_deadline());
    return mortised_->stub().Destroy(&context, request, &response);
  }
  tenon::v1::Vm get(const std::string& name) {
    tenon::v1::GetVmRequest request;
    request.set_name(name);
    request.set_include_telemetry(true);
    tenon::v1::Vm vm;
    grpc::ClientContext context;
    context.set_deadline(rpc_deadline());
    const grpc::Status status = mortised_->stub().Get(&context, request, &vm);
    EXPECT_TRUE(status.ok()) << name << ": " << status.error_message();
    return vm;
  }
  bool exited(const std::string& name) { return get(name).state() == tenon::v1::VM_STATE_EXITED; }
};

TEST_F(MortisedIvcTest, TwoVmsDeclaredOnOneChannelPingPongToTheEnd) {
  const int baseline = open_descriptor_count(mortised_->pid());
  ASSERT_TRUE(create(request("pong", "ivc-pong.elf", "pingpong", tenon::v1::CHANNEL_SIDE_B)).ok());
  ASSERT_TRUE(create(request("ping", "ivc-ping.elf", "pingpong", tenon::v1::CHANNEL_SIDE_A)).ok());
  ASSERT_TRUE(start("pong").ok());
  ASSERT_TRUE(start("ping").ok());
  ASSERT_TRUE(wait_until([&] { return exited("ping") && exited("pong"); }, absl::Seconds(120)))
      << "ping " << get("ping").DebugString() << "pong " << get("pong").DebugString();

  const tenon::v1::Vm ping = get("ping");
  const tenon::v1::Vm pong = get("pong");
  EXPECT_EQ(ping.exit_reason().status(), 0) << ping.exit_reason().message();
  EXPECT_EQ(pong.exit_reason().status(), 0) << pong.exit_reason().message();
  ASSERT_EQ(ping.channels_size(), 1);
  EXPECT_EQ(ping.channels(0).name(), "pingpong");
  EXPECT_EQ(ping.channels(0).side(), tenon::v1::CHANNEL_SIDE_A);
  ASSERT_EQ(ping.telemetry().channels_size(), 1);
  ASSERT_EQ(pong.telemetry().channels_size(), 1);
  const tenon::v1::ChannelTelemetry& sent = ping.telemetry().channels(0);
  const tenon::v1::ChannelTelemetry& received = pong.telemetry().channels(0);
  EXPECT_EQ(sent.name(), "pingpong");
  EXPECT_GT(sent.messages_sent(), 0u);
  EXPECT_EQ(sent.messages_sent(), received.messages_received());
  EXPECT_EQ(received.messages_sent(), sent.messages_received());
  EXPECT_EQ(sent.peer_errors() + received.peer_errors(), 0u);

  // Destroying both frees the channel: mortised holds no descriptor of it any more.
  ASSERT_TRUE(destroy("ping").ok());
  ASSERT_TRUE(destroy("pong").ok());
  int count = -1;
  wait_until(
      [&] {
        count = open_descriptor_count(mortised_->pid());
        return count == baseline;
      },
      absl::Seconds(10));
  EXPECT_EQ(count, baseline);
}

TEST_F(MortisedIvcTest, ASideIsHeldByOneVmAtATimeAndDestroyFreesIt) {
  ASSERT_TRUE(create(request("first", "ivc-pong.elf", "held", tenon::v1::CHANNEL_SIDE_A)).ok());
  const grpc::Status second =
      create(request("second", "ivc-pong.elf", "held", tenon::v1::CHANNEL_SIDE_A));
  EXPECT_EQ(second.error_code(), grpc::StatusCode::ALREADY_EXISTS) << second.error_message();
  EXPECT_NE(second.error_message().find("held by VM first"), std::string::npos)
      << second.error_message();
  // The refused VM took nothing: the other side is still free, and its name too.
  EXPECT_TRUE(create(request("other", "ivc-pong.elf", "held", tenon::v1::CHANNEL_SIDE_B)).ok());
  ASSERT_TRUE(destroy("first").ok());
  EXPECT_TRUE(create(request("second", "ivc-pong.elf", "held", tenon::v1::CHANNEL_SIDE_A)).ok());
}

TEST_F(MortisedIvcTest, BadChannelDeclarationsAreInvalidArguments) {
  auto expect_invalid = [&](tenon::v1::CreateVmRequest request, const std::string& why) {
    const grpc::Status status = create(request);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << why << ": " << status.error_message();
  };
  expect_invalid(request("a", "ivc-pong.elf", "x", tenon::v1::CHANNEL_SIDE_UNSPECIFIED),
                 "side unspecified");
  expect_invalid(request("a", "ivc-pong.elf", "Bad_Name", tenon::v1::CHANNEL_SIDE_A), "name");
  expect_invalid(request("a", "ivc-pong.elf", "much-too-long-name", tenon::v1::CHANNEL_SIDE_A),
                 "long name");
  tenon::v1::CreateVmRequest twice = request("a", "ivc-pong.elf", "x", tenon::v1::CHANNEL_SIDE_A);
  *twice.add_channels() = twice.channels(0);
  expect_invalid(twice, "named twice");
  tenon::v1::CreateVmRequest big = request("a", "ivc-pong.elf", "x", tenon::v1::CHANNEL_SIDE_A);
  big.set_memory_bytes(1ull << 30);
  expect_invalid(big, "memory above the channel window");
}

// A mortised on the qemu engine, wherever QEMU runs (beside KVM too).
TEST(MortisedQemuIvcTest, ChannelsAreRefusedUnderTheQemuEngineWithTheReason) {
  const std::vector<mortise::EngineKind>& engines = tenon::test_support::usable_engines();
  if (std::find(engines.begin(), engines.end(), mortise::EngineKind::kQemu) == engines.end()) {
    GTEST_SKIP() << "the qemu engine cannot run here";
  }
  std::unique_ptr<MortisedProcess> mortised =
      mortise::testing::start_test_mortised(mortise::EngineKind::kQemu);
  ASSERT_NE(mortised, nullptr);
  tenon::v1::CreateVmRequest request;
  request.set_name("ping");
  request.set_image_path(image("hello.elf", mortise::EngineKind::kQemu));
  request.set_memory_bytes(kGuestMemory);
  tenon::v1::ChannelEndpoint* endpoint = request.add_channels();
  endpoint->set_name("refused");
  endpoint->set_side(tenon::v1::CHANNEL_SIDE_A);
  tenon::v1::VmOperationResponse response;
  grpc::ClientContext context;
  context.set_deadline(rpc_deadline());
  const grpc::Status status = mortised->stub().Create(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(status.error_message().find("kvm engine only"), std::string::npos)
      << status.error_message();
}

}  // namespace
