// Inter-VM channels between real KVM guests: two instances in this process, each on its own
// vCPU thread, joined by one IvcChannel exactly as two mortise-vmm processes are (the region and
// doorbells are the same descriptors either way). Ping-pong in both wait modes with every
// sequence number checked, a hostile peer that scribbles over the region, a guest that reaches
// past its region, and the sensor -> ivc-control loop at 1 kHz. Channels are the KVM engine's
// alone: those tests skip where KVM cannot run guests, and the QEMU engine's refusal is tested
// wherever QEMU runs.
#include <algorithm>
#include <chrono>
#include <future>
#include <iostream>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <thread>

#include "console_sink.h"
#include "engines.h"
#include "gtest/gtest.h"
#include "instance.h"
#include "ivc_channel.h"
#include "kvm.h"
#include "kvm_instance.h"

namespace mortise {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

std::string image(const std::string& name) {
  return std::string(TENON_IMAGE_DIR) + "/kvm/" + name + ".elf";
}
std::string guest(const std::string& name) {
  return std::string(TEST_GUEST_DIR) + "/kvm/" + name + ".elf";
}

// "key=value" pairs of the line that starts with `prefix`.
std::map<std::string, std::string> fields(const std::string& console, const std::string& prefix) {
  std::map<std::string, std::string> result;
  const size_t start = console.find(prefix);
  if (start == std::string::npos) return result;
  const std::string line = console.substr(start, console.find('\n', start) - start);
  static const std::regex kPair(R"(([a-z0-9_]+)=([^ ]+))");
  for (std::sregex_iterator it(line.begin(), line.end(), kPair), end; it != end; ++it) {
    result[(*it)[1]] = (*it)[2];
  }
  return result;
}

uint64_t number(const std::map<std::string, std::string>& values, const std::string& key) {
  auto found = values.find(key);
  return found == values.end() ? ~0ull : std::stoull(found->second);
}

struct Endpoint {
  std::string image;
  uint64_t app_run_ns = 0;
};

struct Outcome {
  ExitReason reason;
  std::string console;
  std::optional<ChannelSummary> channel;  // the instance's first channel, after the run
};

class IvcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<Kvm> kvm = Kvm::open();
    if (!kvm.ok()) {
      GTEST_SKIP() << "channels run on the kvm engine only, and KVM is not available here ("
                   << kvm.status() << ")";
    }
    if (!kvm->capabilities().irqchip) GTEST_SKIP() << "skipping: KVM has no in-kernel irqchip";
    kvm_.emplace(std::move(*kvm));
  }

  absl::StatusOr<std::unique_ptr<Instance>> create(const Endpoint& endpoint,
                                                   const IvcChannel& channel, uint32_t side,
                                                   BufferConsole& console) {
    InstanceConfig config;
    config.image_path = endpoint.image;
    config.memory_bytes = 1 << 20;
    config.app_run_ns = endpoint.app_run_ns;
    config.channels.push_back(channel.endpoint(side));
    return KvmInstance::create(*kvm_, config, console);
  }

  // Runs both ends at once; `stop_second_after_first` ends the second once the first is done
  // (for a peer that never exits by itself).
  std::pair<Outcome, Outcome> run_pair(const std::string& channel_name, const Endpoint& first,
                                       const Endpoint& second, bool stop_second_after_first = false,
                                       milliseconds limit = milliseconds(60'000)) {
    absl::StatusOr<IvcChannel> channel = IvcChannel::create(channel_name);
    EXPECT_TRUE(channel.ok()) << channel.status();
    return run_pair_on(*channel, first, second, stop_second_after_first, limit);
  }

  std::pair<Outcome, Outcome> run_pair_on(const IvcChannel& channel, const Endpoint& first,
                                          const Endpoint& second, bool stop_second_after_first,
                                          milliseconds limit) {
    BufferConsole first_console, second_console;
    absl::StatusOr<std::unique_ptr<Instance>> a = create(first, channel, 0, first_console);
    absl::StatusOr<std::unique_ptr<Instance>> b = create(second, channel, 1, second_console);
    EXPECT_TRUE(a.ok()) << a.status();
    EXPECT_TRUE(b.ok()) << b.status();
    if (!a.ok() || !b.ok()) return {};
    std::future<ExitReason> second_run =
        std::async(std::launch::async, [&] { return (*b)->run(limit); });
    ExitReason first_reason = (*a)->run(limit);
    if (stop_second_after_first) (*b)->stop();
    ExitReason second_reason = second_run.get();
    auto summary = [](const Instance& instance) -> std::optional<ChannelSummary> {
      absl::StatusOr<TelemetrySnapshot> telemetry = instance.telemetry();
      if (!telemetry.ok() || telemetry->channels.empty()) return std::nullopt;
      return telemetry->channels[0];
    };
    return {{first_reason, first_console.contents(), summary(**a)},
            {second_reason, second_console.contents(), summary(**b)}};
  }

  void expect_clean_ping_pong(const std::string& ping_image) {
    auto [ping, pong] = run_pair("pingpong", {image(ping_image)}, {image("ivc-pong")});
    ASSERT_EQ(ping.reason.kind, ExitKind::kGuestExit) << ping.reason.message << ping.console;
    EXPECT_EQ(ping.reason.status, 0) << ping.console;
    ASSERT_EQ(pong.reason.kind, ExitKind::kGuestExit) << pong.reason.message << pong.console;
    EXPECT_EQ(pong.reason.status, 0) << pong.console;
    const auto results = fields(ping.console, "ivc-ping:");
    EXPECT_EQ(number(results, "mismatches"), 0u) << ping.console;
    EXPECT_EQ(number(results, "stream_errors"), 0u) << ping.console;
    EXPECT_EQ(number(results, "stream_received"), number(results, "stream_sent")) << ping.console;
    const uint64_t messages = number(results, "round_trips") + number(results, "stream_sent") + 1;
    ASSERT_TRUE(ping.channel && pong.channel);
    EXPECT_EQ(ping.channel->name, "pingpong");
    EXPECT_EQ(ping.channel->messages_sent, messages);
    EXPECT_EQ(pong.channel->messages_received, messages);
    EXPECT_EQ(pong.channel->messages_sent, ping.channel->messages_received);
    EXPECT_EQ(ping.channel->peer_errors + pong.channel->peer_errors, 0u);
    std::cout << ping.console << pong.console;
  }

  std::optional<Kvm> kvm_;
};

TEST_F(IvcTest, PingPongByDoorbellLosesAndReordersNothing) { expect_clean_ping_pong("ivc-ping"); }

TEST_F(IvcTest, PingPongByPollingLosesAndReordersNothing) {
  expect_clean_ping_pong("ivc-ping-poll");
}

TEST_F(IvcTest, DoorbellsWakeAHaltedPeer) {
  auto [ping, pong] = run_pair("pingpong", {image("ivc-ping")}, {image("ivc-pong")});
  ASSERT_EQ(ping.reason.kind, ExitKind::kGuestExit) << ping.reason.message;
  ASSERT_TRUE(ping.channel && pong.channel);
  // Each side halted at least once waiting for the other and was woken by its doorbell.
  EXPECT_GT(ping.channel->doorbells_sent, 0u);
  EXPECT_GT(pong.channel->doorbells_sent, 0u);
  EXPECT_GT(ping.channel->doorbells_received, 0u);
  EXPECT_GT(pong.channel->doorbells_received, 0u);
}

TEST_F(IvcTest, ScribblingPeerCannotCrashOrCorruptItsPeer) {
  auto [victim, scribbler] = run_pair("hostile", {guest("ivc_victim")}, {guest("ivc_scribbler")},
                                      /*stop_second_after_first=*/true);
  ASSERT_EQ(victim.reason.kind, ExitKind::kGuestExit) << victim.reason.message << victim.console;
  EXPECT_EQ(victim.reason.status, 0) << victim.console;
  const auto results = fields(victim.console, "ivc-victim:");
  EXPECT_EQ(number(results, "broken"), 0u) << victim.console;
  EXPECT_GT(number(results, "peer_errors"), 0u) << victim.console;
  ASSERT_TRUE(victim.channel);
  EXPECT_GT(victim.channel->peer_errors, 0u);
  // The scribbler kept scribbling until it was stopped.
  EXPECT_EQ(scribbler.reason.kind, ExitKind::kTimeout) << scribbler.reason.message;
  std::cout << victim.console;
}

TEST_F(IvcTest, GuestReachingPastItsRegionIsStoppedAndItsPeerRunsOn) {
  auto [outside, pong] = run_pair("pingpong", {guest("ivc_outside_region")}, {image("ivc-pong")},
                                  /*stop_second_after_first=*/true);
  EXPECT_EQ(outside.reason.kind, ExitKind::kViolation) << outside.reason.message;
  EXPECT_NE(outside.reason.message.find("outside guest memory"), std::string::npos)
      << outside.reason.message;
  // The peer was still waiting for messages, not stopped by its neighbour's fault.
  EXPECT_EQ(pong.reason.kind, ExitKind::kTimeout) << pong.reason.message;
}

TEST_F(IvcTest, SensorFeedsControlLoopAtOneKilohertz) {
  const uint64_t run_ns = 1'000'000'000;
  auto [sensor, control] =
      run_pair("plant", {image("sensor"), run_ns}, {image("ivc-control"), run_ns});
  ASSERT_EQ(sensor.reason.kind, ExitKind::kGuestExit) << sensor.reason.message << sensor.console;
  ASSERT_EQ(control.reason.kind, ExitKind::kGuestExit) << control.reason.message;
  const auto sensor_results = fields(sensor.console, "sensor: readings");
  const auto control_results = fields(control.console, "ivc-control: readings");
  // Timing-insensitive: the loop closed (readings one way, commands the other).
  EXPECT_GT(number(sensor_results, "readings_sent"), 0u) << sensor.console;
  EXPECT_GT(number(sensor_results, "commands_received"), 0u) << sensor.console;
  EXPECT_GT(number(control_results, "readings"), 0u) << control.console;
  ASSERT_TRUE(sensor.channel && control.channel);
  EXPECT_EQ(sensor.channel->messages_sent, number(sensor_results, "readings_sent"));
  EXPECT_EQ(control.channel->messages_received, number(control_results, "readings"));
  EXPECT_EQ(sensor.channel->peer_errors + control.channel->peer_errors, 0u);
  std::cout << sensor.console << control.console;
}

TEST_F(IvcTest, InstanceWithChannelsMustEndBelowTheChannelWindow) {
  absl::StatusOr<IvcChannel> channel = IvcChannel::create("big");
  ASSERT_TRUE(channel.ok());
  BufferConsole console;
  InstanceConfig config;
  config.image_path = image("ivc-pong");
  config.memory_bytes = tenon::abi::kIvcWindowBase + (2 << 20);
  config.channels.push_back(channel->endpoint(0));
  absl::StatusOr<std::unique_ptr<Instance>> instance = KvmInstance::create(*kvm_, config, console);
  ASSERT_FALSE(instance.ok());
  EXPECT_EQ(instance.status().code(), absl::StatusCode::kInvalidArgument) << instance.status();
}

TEST_F(IvcTest, ChannelNamedTwiceIsRefused) {
  absl::StatusOr<IvcChannel> channel = IvcChannel::create("twice");
  ASSERT_TRUE(channel.ok());
  BufferConsole console;
  InstanceConfig config;
  config.image_path = image("ivc-pong");
  config.channels = {channel->endpoint(0), channel->endpoint(1)};
  absl::StatusOr<std::unique_ptr<Instance>> instance = KvmInstance::create(*kvm_, config, console);
  ASSERT_FALSE(instance.ok());
  EXPECT_EQ(instance.status().code(), absl::StatusCode::kInvalidArgument) << instance.status();
}

TEST(IvcChannelTest, NamesMustFitTheGuestsNameField) {
  EXPECT_TRUE(check_channel_name("sensor-feed").ok());
  EXPECT_FALSE(check_channel_name("").ok());
  EXPECT_FALSE(check_channel_name("sixteen-chars-xx").ok());
  EXPECT_FALSE(check_channel_name("Upper").ok());
  EXPECT_FALSE(IvcChannel::create("bad/name").ok());
}

// On the QEMU engine a channel is refused when the instance is created, naming what is missing.
TEST(IvcQemuTest, ChannelsAreRefusedOnTheQemuEngineWithTheReason) {
  const std::vector<EngineKind>& engines = tenon::test_support::usable_engines();
  if (std::find(engines.begin(), engines.end(), EngineKind::kQemu) == engines.end()) {
    GTEST_SKIP() << "the qemu engine cannot run here";
  }
  absl::StatusOr<IvcChannel> channel = IvcChannel::create("refused");
  ASSERT_TRUE(channel.ok()) << channel.status();
  BufferConsole console;
  InstanceConfig config;
  config.image_path = std::string(TENON_IMAGE_DIR) + "/hello.elf";
  config.channels.push_back(channel->endpoint(0));
  absl::StatusOr<std::unique_ptr<Instance>> instance =
      create_instance(EngineKind::kQemu, config, QemuSettings{}, console);
  ASSERT_FALSE(instance.ok());
  EXPECT_EQ(instance.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(instance.status().message().find("kvm engine only"), std::string::npos)
      << instance.status();
}

}  // namespace
}  // namespace mortise
