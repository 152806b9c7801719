// Snapshot files as mortise-vmm writes and reads them: a new file appears complete or not at all
// and never replaces an existing one; a snapshot handed over by descriptor is read whole, within
// the format's size cap.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "snapshot_format.h"

namespace mortise {

// Has `produce` write the file's bytes to a temporary file next to `path` and then links it to
// `path`. ALREADY_EXISTS when `path` exists (also when it appeared meanwhile),
// RESOURCE_EXHAUSTED when the disk is full; the temporary file is removed in every case.
// The file is not fsynced: a crash of the host may lose it, and its checksum tells a torn one.
absl::StatusOr<snapshot::Written> write_snapshot_file(
    const std::string& path,
    const std::function<absl::StatusOr<snapshot::Written>(const snapshot::Sink&)>& produce);

// The whole content of the regular file (or memfd) `fd`, at most snapshot::kMaxFileBytes:
// INVALID_ARGUMENT for another kind of file, DATA_LOSS past the cap or when reading fails.
absl::StatusOr<std::string> read_snapshot_fd(int fd);

}  // namespace mortise
