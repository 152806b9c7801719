// See proto_time.h.
#include "time/proto_time.h"

#include <limits>

#include "absl/numeric/int128.h"
#include "absl/strings/str_cat.h"

namespace tenon::time {
namespace {

// The ranges google/protobuf/duration.proto and timestamp.proto define.
constexpr int64_t kMaxDurationSeconds = 315'576'000'000;
constexpr int64_t kMinTimestampSeconds = -62'135'596'800;  // 0001-01-01T00:00:00Z
constexpr int64_t kMaxTimestampSeconds = 253'402'300'799;  // 9999-12-31T23:59:59Z
constexpr int32_t kNanosPerSecond = 1'000'000'000;

}  // namespace

absl::StatusOr<absl::Duration> from_proto(const google::protobuf::Duration& duration,
                                          absl::string_view field) {
  const int64_t seconds = duration.seconds();
  const int32_t nanos = duration.nanos();
  if (seconds > kMaxDurationSeconds || seconds < -kMaxDurationSeconds || nanos >= kNanosPerSecond ||
      nanos <= -kNanosPerSecond || (seconds > 0 && nanos < 0) || (seconds < 0 && nanos > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": not a valid duration (seconds ", seconds, ", nanos ", nanos,
                     "; at most 10,000 years, nanos below one second and of the same sign)"));
  }
  return absl::Seconds(seconds) + absl::Nanoseconds(nanos);
}

absl::StatusOr<absl::Time> from_proto(const google::protobuf::Timestamp& timestamp,
                                      absl::string_view field) {
  const int64_t seconds = timestamp.seconds();
  const int32_t nanos = timestamp.nanos();
  if (seconds < kMinTimestampSeconds || seconds > kMaxTimestampSeconds || nanos < 0 ||
      nanos >= kNanosPerSecond) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": not a valid timestamp (seconds ",
                                                   seconds, ", nanos ", nanos,
                                                   "; years 1 to 9999, nanos in [0, 10^9))"));
  }
  return absl::FromUnixSeconds(seconds) + absl::Nanoseconds(nanos);
}

google::protobuf::Duration to_proto(absl::Duration duration) {
  google::protobuf::Duration message;
  const absl::Duration longest =
      absl::Seconds(kMaxDurationSeconds) + absl::Nanoseconds(999'999'999);
  if (duration >= longest) {
    message.set_seconds(kMaxDurationSeconds);
    message.set_nanos(999'999'999);
    return message;
  }
  if (duration <= -longest) {
    message.set_seconds(-kMaxDurationSeconds);
    message.set_nanos(-999'999'999);
    return message;
  }
  absl::Duration remainder;
  const int64_t seconds = absl::IDivDuration(duration, absl::Seconds(1), &remainder);
  message.set_seconds(seconds);
  // The remainder has the duration's sign and is below a second.
  message.set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(remainder)));
  return message;
}

google::protobuf::Timestamp to_proto(absl::Time time) {
  google::protobuf::Timestamp message;
  const absl::Time first = absl::FromUnixSeconds(kMinTimestampSeconds);
  const absl::Time last =
      absl::FromUnixSeconds(kMaxTimestampSeconds) + absl::Nanoseconds(999'999'999);
  if (time <= first) {
    message.set_seconds(kMinTimestampSeconds);
    return message;
  }
  if (time >= last) {
    message.set_seconds(kMaxTimestampSeconds);
    message.set_nanos(999'999'999);
    return message;
  }
  // Whole seconds toward the past, so that nanos is never negative.
  const int64_t seconds = absl::ToUnixSeconds(time);
  message.set_seconds(seconds);
  message.set_nanos(
      static_cast<int32_t>(absl::ToInt64Nanoseconds(time - absl::FromUnixSeconds(seconds))));
  return message;
}

absl::StatusOr<uint64_t> to_unsigned_nanoseconds(absl::Duration duration, absl::string_view field) {
  if (duration < absl::ZeroDuration()) {
    return absl::OutOfRangeError(
        absl::StrCat(field, ": negative duration ", absl::FormatDuration(duration)));
  }
  // In 128 bits: whole seconds times 10^9 plus the nanoseconds below a second.
  absl::Duration remainder;
  const int64_t seconds = absl::IDivDuration(duration, absl::Seconds(1), &remainder);
  const absl::uint128 nanoseconds =
      absl::uint128(static_cast<uint64_t>(seconds)) * kNanosPerSecond +
      static_cast<uint64_t>(absl::ToInt64Nanoseconds(remainder));
  if (duration == absl::InfiniteDuration() ||
      nanoseconds > absl::uint128(std::numeric_limits<uint64_t>::max())) {
    return absl::OutOfRangeError(absl::StrCat(field, ": ", absl::FormatDuration(duration),
                                              " is longer than 2^64 - 1 nanoseconds"));
  }
  return absl::Uint128Low64(nanoseconds);
}

}  // namespace tenon::time
