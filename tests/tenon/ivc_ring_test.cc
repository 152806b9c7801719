// The inter-VM channel ring (tenon/ivc_ring.h) on the host: the protocol, every validation of
// what a hostile peer can write, a scribbling peer thread, and a million messages echoed between
// two threads with nothing lost or reordered. The same header is what the guests compile.
#include "tenon/ivc_ring.h"

#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <random>
#include <thread>

#include "gtest/gtest.h"

namespace tenon::ivc {
namespace {

using Clock = std::chrono::steady_clock;

struct Channel {
  Channel() : region(std::make_unique<abi::IvcRegion>()) {
    std::memset(region.get(), 0, sizeof(abi::IvcRegion));
    a = RingEndpoint(region.get(), 0);
    b = RingEndpoint(region.get(), 1);
  }
  std::unique_ptr<abi::IvcRegion> region;
  RingEndpoint a, b;
};

RingStatus send_u64(RingEndpoint& endpoint, uint64_t value) {
  return endpoint.send(&value, sizeof value);
}

TEST(IvcRingTest, MessagesArriveInOrderWithTheirLengths) {
  Channel channel;
  const char first[] = "hello";
  ASSERT_EQ(channel.a.send(first, sizeof first), RingStatus::kOk);
  ASSERT_EQ(channel.a.send(nullptr, 0), RingStatus::kOk);
  char buffer[abi::kIvcMessageMax];
  uint32_t length = 99;
  ASSERT_EQ(channel.b.receive(buffer, sizeof buffer, &length), RingStatus::kOk);
  EXPECT_EQ(length, sizeof first);
  EXPECT_STREQ(buffer, "hello");
  ASSERT_EQ(channel.b.receive(buffer, sizeof buffer, &length), RingStatus::kOk);
  EXPECT_EQ(length, 0u);
  EXPECT_EQ(channel.b.receive(buffer, sizeof buffer, &length), RingStatus::kWouldBlock);
  // The other direction is independent.
  EXPECT_EQ(channel.a.receive(buffer, sizeof buffer, &length), RingStatus::kWouldBlock);
}

TEST(IvcRingTest, FullRingRefusesUntilTheConsumerCatchesUp) {
  Channel channel;
  for (uint64_t i = 0; i < abi::kIvcRingSlots; ++i)
    ASSERT_EQ(send_u64(channel.a, i), RingStatus::kOk);
  EXPECT_EQ(send_u64(channel.a, 99), RingStatus::kWouldBlock);
  uint64_t value = 0;
  uint32_t length = 0;
  ASSERT_EQ(channel.b.receive(&value, sizeof value, &length), RingStatus::kOk);
  EXPECT_EQ(value, 0u);
  EXPECT_EQ(send_u64(channel.a, 64), RingStatus::kOk);
}

TEST(IvcRingTest, TooLongMessagesAndTooSmallBuffersAreRefusedWithoutLoss) {
  Channel channel;
  uint8_t big[abi::kIvcMessageMax + 1] = {};
  EXPECT_EQ(channel.a.send(big, sizeof big), RingStatus::kTooLong);
  ASSERT_EQ(channel.a.send(big, 16), RingStatus::kOk);
  uint8_t small[8];
  uint32_t length = 0;
  EXPECT_EQ(channel.b.receive(small, sizeof small, &length), RingStatus::kTooLong);
  // Still there for a big enough buffer.
  EXPECT_EQ(channel.b.receive(big, sizeof big, &length), RingStatus::kOk);
  EXPECT_EQ(length, 16u);
}

TEST(IvcRingTest, HostilePeerProducedTooFarAheadIsAPeerErrorAndNothingIsRead) {
  Channel channel;
  channel.region->sides[0].produced = abi::kIvcRingSlots + 1;
  uint64_t value = 7;
  uint32_t length = 0;
  EXPECT_EQ(channel.b.receive(&value, sizeof value, &length), RingStatus::kPeerError);
  EXPECT_EQ(value, 7u);
  EXPECT_EQ(channel.b.consumed(), 0u);
}

TEST(IvcRingTest, HostilePeerProducedBehindWhatWasConsumedIsAPeerError) {
  Channel channel;
  ASSERT_EQ(send_u64(channel.a, 1), RingStatus::kOk);
  uint64_t value = 0;
  uint32_t length = 0;
  ASSERT_EQ(channel.b.receive(&value, sizeof value, &length), RingStatus::kOk);
  channel.region->sides[0].produced = 0;  // "un-sends" a message: wraps to a huge distance
  EXPECT_EQ(channel.b.receive(&value, sizeof value, &length), RingStatus::kPeerError);
  channel.region->sides[0].produced = ~0ull;
  EXPECT_EQ(channel.b.receive(&value, sizeof value, &length), RingStatus::kPeerError);
}

TEST(IvcRingTest, HostileSlotLengthIsConsumedAsAPeerErrorAndTheChannelCarriesOn) {
  Channel channel;
  ASSERT_EQ(send_u64(channel.a, 1), RingStatus::kOk);
  ASSERT_EQ(send_u64(channel.a, 2), RingStatus::kOk);
  for (uint32_t bad : {abi::kIvcMessageMax + 1, 0xffffffffu, 0x80000000u}) {
    channel.region->rings[0][0].length = bad;
    Channel copy;  // a fresh receiver over the same region content each time
    std::memcpy(copy.region.get(), channel.region.get(), sizeof(abi::IvcRegion));
    RingEndpoint receiver(copy.region.get(), 1);
    uint8_t buffer[abi::kIvcMessageMax + 8];
    std::memset(buffer, 0xa5, sizeof buffer);
    uint32_t length = 0;
    EXPECT_EQ(receiver.receive(buffer, abi::kIvcMessageMax, &length), RingStatus::kPeerError);
    EXPECT_EQ(buffer[0], 0xa5);
    ASSERT_EQ(receiver.receive(buffer, abi::kIvcMessageMax, &length), RingStatus::kOk);
    uint64_t value = 0;
    std::memcpy(&value, buffer, sizeof value);
    EXPECT_EQ(value, 2u);
  }
}

TEST(IvcRingTest, HostilePeerConsumedAheadOfWhatWasSentIsAPeerErrorOnSend) {
  Channel channel;
  channel.region->sides[1].consumed = 5;  // more than side 0 ever produced
  EXPECT_EQ(send_u64(channel.a, 1), RingStatus::kPeerError);
  channel.region->sides[1].consumed = 0;
  EXPECT_EQ(send_u64(channel.a, 1), RingStatus::kOk);
}

TEST(IvcRingTest, ScribblingOverOwnPublishedStateDoesNotChangeWhatThisSideDoes) {
  Channel channel;
  ASSERT_EQ(send_u64(channel.a, 1), RingStatus::kOk);
  // The peer rewrites side 0's published count; side 0 keeps its private one.
  channel.region->sides[0].produced = 40;
  EXPECT_EQ(channel.a.produced(), 1u);
}

TEST(IvcRingTest, ReattachingEndpointCarriesOnFromWhatTheRegionSays) {
  Channel channel;
  ASSERT_EQ(send_u64(channel.a, 1), RingStatus::kOk);
  RingEndpoint again(channel.region.get(), 0);
  EXPECT_EQ(again.produced(), 1u);
  ASSERT_EQ(send_u64(again, 2), RingStatus::kOk);
  uint64_t value = 0;
  uint32_t length = 0;
  ASSERT_EQ(channel.b.receive(&value, sizeof value, &length), RingStatus::kOk);
  ASSERT_EQ(channel.b.receive(&value, sizeof value, &length), RingStatus::kOk);
  EXPECT_EQ(value, 2u);
}

TEST(IvcRingTest, WaitingFlagIsSeenByThePeer) {
  Channel channel;
  EXPECT_FALSE(channel.a.peer_waiting());
  channel.b.set_waiting(true);
  EXPECT_TRUE(channel.a.peer_waiting());
  channel.b.set_waiting(false);
  EXPECT_FALSE(channel.a.peer_waiting());
}

// A peer thread writes random values everywhere in the region while this side keeps sending and
// receiving: every result is one the API promises, and no receive writes past its length.
TEST(IvcRingTest, ScribblingPeerThreadNeverMakesTheVictimMisbehave) {
  Channel channel;
  std::atomic<bool> stop{false};
  std::thread scribbler([&] {
    std::mt19937_64 random(42);
    auto* words = reinterpret_cast<volatile uint64_t*>(channel.region.get());
    const size_t count = sizeof(abi::IvcRegion) / sizeof(uint64_t);
    while (!stop.load(std::memory_order_relaxed)) {
      const uint64_t value = random();
      const size_t index = value % 2 == 0 ? (value >> 8) % 32 : (value >> 8) % count;
      words[index] = (value >> 60) < 8 ? (value >> 40) % 200 : value;
    }
  });
  uint64_t peer_errors = 0, received = 0;
  const auto deadline = Clock::now() + std::chrono::milliseconds(300);
  uint64_t rounds = 0;
  while (Clock::now() < deadline || rounds < 10000) {
    ++rounds;
    uint8_t buffer[40];
    std::memset(buffer, 0xa5, sizeof buffer);
    uint32_t length = 12345;
    const RingStatus status = channel.b.receive(buffer, 24, &length);
    if (status == RingStatus::kOk) {
      ++received;
      ASSERT_LE(length, 24u);
      for (size_t i = length; i < sizeof buffer; ++i) ASSERT_EQ(buffer[i], 0xa5) << i;
    } else if (status == RingStatus::kPeerError) {
      ++peer_errors;
    } else {
      ASSERT_TRUE(status == RingStatus::kWouldBlock || status == RingStatus::kTooLong);
    }
    const RingStatus sent = send_u64(channel.b, rounds);
    ASSERT_TRUE(sent == RingStatus::kOk || sent == RingStatus::kWouldBlock ||
                sent == RingStatus::kPeerError);
    if (sent == RingStatus::kPeerError) ++peer_errors;
  }
  stop = true;
  scribbler.join();
  EXPECT_GT(peer_errors, 0u);
  RecordProperty("peer_errors", std::to_string(peer_errors));
  RecordProperty("received", std::to_string(received));
}

// A million messages ping-ponged (pipelined) between two threads: every one comes back once, in
// order. Waiting yields the CPU, so the test also finishes on an oversubscribed host.
TEST(IvcRingTest, MillionMessagesEchoedBetweenTwoThreadsWithNoLossOrReordering) {
  constexpr uint64_t kMessages = 1'000'000;
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  Channel channel;
  std::atomic<bool> echo_failed{false};
  std::thread echo([&] {
    uint64_t expected = 0;
    while (expected < kMessages) {
      uint64_t value = 0;
      uint32_t length = 0;
      const RingStatus status = channel.b.receive(&value, sizeof value, &length);
      if (status == RingStatus::kWouldBlock) {
        if (Clock::now() > deadline) break;
        sched_yield();
        continue;
      }
      if (status != RingStatus::kOk || length != sizeof value || value != expected) {
        echo_failed = true;
        return;
      }
      ++expected;
      while (send_u64(channel.b, value) == RingStatus::kWouldBlock) {
        if (Clock::now() > deadline) return;
        sched_yield();
      }
    }
  });
  uint64_t sent = 0, returned = 0;
  while (returned < kMessages && Clock::now() < deadline && !echo_failed) {
    bool progress = false;
    if (sent < kMessages && sent - returned < abi::kIvcRingSlots &&
        send_u64(channel.a, sent) == RingStatus::kOk) {
      ++sent;
      progress = true;
    }
    uint64_t value = 0;
    uint32_t length = 0;
    const RingStatus status = channel.a.receive(&value, sizeof value, &length);
    if (status == RingStatus::kOk) {
      ASSERT_EQ(length, sizeof value);
      ASSERT_EQ(value, returned) << "lost or reordered";
      ++returned;
      progress = true;
    } else {
      ASSERT_EQ(status, RingStatus::kWouldBlock);
    }
    if (!progress) sched_yield();
  }
  echo.join();
  EXPECT_FALSE(echo_failed) << "the echo side saw a gap or a bad message";
  EXPECT_EQ(returned, kMessages);
}

}  // namespace
}  // namespace tenon::ivc
