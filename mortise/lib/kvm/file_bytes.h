// Whole files in and out of descriptors (FileDescriptor, kvm.h): the bytes of a regular file,
// read with a cap, and a memfd holding given bytes. Every caller that hands files across a
// process boundary (images, snapshots, QEMU's ROM and machine state) uses these two.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "kvm.h"

namespace mortise {

// The whole content of the regular file `fd` from offset 0. INVALID_ARGUMENT when `fd` is not a
// regular file, OUT_OF_RANGE when it holds more than `max_bytes` (never more than one byte past
// the cap is read, even of a file that grows meanwhile), DATA_LOSS when reading fails.
absl::StatusOr<std::string> read_regular_file(int fd, uint64_t max_bytes);

// A memfd named `name` holding `bytes`, its offset at 0; when `seal`, sealed against any change
// (so that what was checked is what the receiver reads).
absl::StatusOr<FileDescriptor> memfd_with(const char* name, std::string_view bytes, bool seal);

}  // namespace mortise
