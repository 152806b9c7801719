// Time across the wire (common/time): every Duration and Timestamp the messages allow converts
// exactly, everything beyond is an error naming the field, and what we write is clamped; checked
// near the edges against a reference in 128-bit integers.
#include "time/proto_time.h"

#include <limits>
#include <random>

#include "absl/numeric/int128.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tenon::time {
namespace {

using ::testing::HasSubstr;

google::protobuf::Duration duration_message(int64_t seconds, int32_t nanos) {
  google::protobuf::Duration message;
  message.set_seconds(seconds);
  message.set_nanos(nanos);
  return message;
}

google::protobuf::Timestamp timestamp_message(int64_t seconds, int32_t nanos) {
  google::protobuf::Timestamp message;
  message.set_seconds(seconds);
  message.set_nanos(nanos);
  return message;
}

constexpr int64_t kMaxSeconds = 315'576'000'000;

TEST(ProtoTimeTest, DurationsOutsideTheMessagesRangeAreRefusedNamingTheField) {
  for (const auto& [seconds, nanos] :
       std::vector<std::pair<int64_t, int32_t>>{{kMaxSeconds + 1, 0},
                                                {-kMaxSeconds - 1, 0},
                                                {0, 1'000'000'000},
                                                {0, -1'000'000'000},
                                                {1, -1},
                                                {-1, 1},
                                                {std::numeric_limits<int64_t>::max(), 999'999'999},
                                                {std::numeric_limits<int64_t>::min(), 0}}) {
    absl::StatusOr<absl::Duration> converted =
        from_proto(duration_message(seconds, nanos), "spec.ttl");
    EXPECT_FALSE(converted.ok()) << seconds << "s " << nanos << "ns";
    EXPECT_THAT(converted.status().message(), HasSubstr("spec.ttl"));
  }
  EXPECT_EQ(*from_proto(duration_message(kMaxSeconds, 999'999'999), "d"),
            absl::Seconds(kMaxSeconds) + absl::Nanoseconds(999'999'999));
  EXPECT_EQ(*from_proto(duration_message(-1, -5), "d"), -absl::Seconds(1) - absl::Nanoseconds(5));
  EXPECT_EQ(*from_proto(duration_message(0, -5), "d"), -absl::Nanoseconds(5));
}

TEST(ProtoTimeTest, TimestampsOutsideYears1To9999AreRefused) {
  EXPECT_FALSE(from_proto(timestamp_message(-62'135'596'801, 0), "t").ok());
  EXPECT_FALSE(from_proto(timestamp_message(253'402'300'800, 0), "t").ok());
  EXPECT_FALSE(from_proto(timestamp_message(0, -1), "t").ok());
  EXPECT_FALSE(from_proto(timestamp_message(0, 1'000'000'000), "t").ok());
  EXPECT_EQ(*from_proto(timestamp_message(-1, 999'999'999), "t"),
            absl::UnixEpoch() - absl::Nanoseconds(1));
}

TEST(ProtoTimeTest, WhatWeWriteIsClampedAndNeverHasNegativeTimestampNanos) {
  const google::protobuf::Duration longest = to_proto(absl::InfiniteDuration());
  EXPECT_EQ(longest.seconds(), kMaxSeconds);
  EXPECT_EQ(longest.nanos(), 999'999'999);
  const google::protobuf::Duration most_negative = to_proto(-absl::InfiniteDuration());
  EXPECT_EQ(most_negative.seconds(), -kMaxSeconds);
  EXPECT_EQ(most_negative.nanos(), -999'999'999);
  const google::protobuf::Duration negative = to_proto(-absl::Milliseconds(1500));
  EXPECT_EQ(negative.seconds(), -1);
  EXPECT_EQ(negative.nanos(), -500'000'000);
  const google::protobuf::Timestamp before_epoch =
      to_proto(absl::UnixEpoch() - absl::Nanoseconds(1));
  EXPECT_EQ(before_epoch.seconds(), -1);
  EXPECT_EQ(before_epoch.nanos(), 999'999'999);
  EXPECT_EQ(to_proto(absl::InfiniteFuture()).seconds(), 253'402'300'799);
  EXPECT_EQ(to_proto(absl::InfinitePast()).seconds(), -62'135'596'800);
}

TEST(ProtoTimeTest, UnsignedNanosecondsAreExactUpToTwoToThe64AndRefusedBeyond) {
  EXPECT_FALSE(to_unsigned_nanoseconds(-absl::Nanoseconds(1), "run").ok());
  EXPECT_FALSE(to_unsigned_nanoseconds(absl::InfiniteDuration(), "run").ok());
  // 2^64 - 1 ns is 18446744073.709551615 s.
  const absl::Duration largest = absl::Seconds(18'446'744'073) + absl::Nanoseconds(709'551'615);
  EXPECT_EQ(*to_unsigned_nanoseconds(largest, "run"), std::numeric_limits<uint64_t>::max());
  absl::StatusOr<uint64_t> beyond = to_unsigned_nanoseconds(largest + absl::Nanoseconds(1), "run");
  EXPECT_FALSE(beyond.ok());
  EXPECT_THAT(beyond.status().message(), HasSubstr("run"));
}

// Random messages near each edge, against a reference computed in 128-bit integers: a valid
// message round-trips exactly; the nanosecond count is right or refused exactly when it must be.
TEST(ProtoTimeTest, RandomDurationsNearTheEdgesAgreeWithA128BitReference) {
  std::mt19937_64 random(20261207);
  const int64_t edges[] = {0, 18'446'744'073, kMaxSeconds, -kMaxSeconds, 1, -1};
  for (int round = 0; round < 20'000; ++round) {
    const int64_t seconds = edges[round % 6] + static_cast<int64_t>(random() % 5) - 2;
    const int32_t nanos =
        static_cast<int32_t>(static_cast<int64_t>(random() % 2'000'000'001) - 1'000'000'000);
    const bool valid = seconds <= kMaxSeconds && seconds >= -kMaxSeconds &&
                       nanos > -1'000'000'000 && nanos < 1'000'000'000 &&
                       !(seconds > 0 && nanos < 0) && !(seconds < 0 && nanos > 0);
    absl::StatusOr<absl::Duration> converted = from_proto(duration_message(seconds, nanos), "d");
    ASSERT_EQ(converted.ok(), valid) << seconds << "s " << nanos << "ns";
    if (!valid) continue;
    const google::protobuf::Duration back = to_proto(*converted);
    EXPECT_EQ(back.seconds(), seconds);
    EXPECT_EQ(back.nanos(), nanos);
    const absl::int128 reference = absl::int128(seconds) * 1'000'000'000 + nanos;
    absl::StatusOr<uint64_t> count = to_unsigned_nanoseconds(*converted, "d");
    const bool fits =
        reference >= 0 && reference <= absl::int128(std::numeric_limits<uint64_t>::max());
    ASSERT_EQ(count.ok(), fits) << seconds << "s " << nanos << "ns";
    if (fits) {
      EXPECT_EQ(absl::int128(*count), reference);
    }
  }
}

}  // namespace
}  // namespace tenon::time
