// Time across the wire, checked: protobuf's Timestamp and Duration to absl time and back, and a
// duration as whole nanoseconds. A value from the network or a file that is out of range is an
// error that names its field, never a wrapped or saturated number; a value we produce is clamped
// to what the message can hold.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"

namespace tenon::time {

// A Duration message as absl::Duration. INVALID_ARGUMENT naming `field` unless it is valid as
// the message defines it: |seconds| at most 315,576,000,000 (10,000 years), |nanos| below 10^9,
// and both of the same sign.
absl::StatusOr<absl::Duration> from_proto(const google::protobuf::Duration& duration,
                                          absl::string_view field);
// A Timestamp message as absl::Time. INVALID_ARGUMENT naming `field` unless it lies within
// 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z with nanos in [0, 10^9).
absl::StatusOr<absl::Time> from_proto(const google::protobuf::Timestamp& timestamp,
                                      absl::string_view field);

// absl time as messages, clamped to the messages' ranges (an infinite duration becomes the
// longest Duration, an infinite future the last Timestamp).
google::protobuf::Duration to_proto(absl::Duration duration);
google::protobuf::Timestamp to_proto(absl::Time time);

// Whole nanoseconds of `duration` (truncated) as an unsigned 64-bit count. OUT_OF_RANGE naming
// `field` when it is negative or longer than 2^64 - 1 ns (about 584 years).
absl::StatusOr<uint64_t> to_unsigned_nanoseconds(absl::Duration duration, absl::string_view field);

}  // namespace tenon::time
