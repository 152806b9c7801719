// Where snapshots go and come from for mortised: paths inside its snapshot directory, and
// snapshot files read once, hashed, checked in full and sealed into a memfd for the mortise-vmm
// that restores them (so nothing can change the file between check and restore).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "kvm.h"
#include "snapshot_format.h"
#include "tenon/v1/mortise.pb.h"

namespace mortise {

// Checks a Snapshot target: absolute (INVALID_ARGUMENT), its directory inside
// `snapshot_directory` once symlinks are resolved (PERMISSION_DENIED), the file itself not there
// yet (ALREADY_EXISTS). Returns the path with its directory resolved.
absl::StatusOr<std::string> resolve_snapshot_target(const std::string& path,
                                                    const std::string& snapshot_directory);

struct ResolvedSnapshot {
  FileDescriptor memfd;
  std::string digest;  // "sha256:<hex>" of the file
  uint64_t memory_bytes = 0;
  std::string run_id;                                // of the run it was taken from
  std::string image_digest;                          // of the image that run was created from
  snapshot::Engine engine = snapshot::Engine::kKvm;  // the engine that took it
};

// Reads the snapshot a Restore names and checks it completely: INVALID_ARGUMENT (relative path,
// malformed expected_digest), PERMISSION_DENIED (outside the snapshot directory), NOT_FOUND,
// DATA_LOSS (the file does not hash to expected_digest, or is corrupt: bad magic, checksum,
// truncation, a table or record that breaks the format), FAILED_PRECONDITION (format version,
// arch or guest ABI version not supported here).
absl::StatusOr<ResolvedSnapshot> read_snapshot(const tenon::v1::RestoreVmRequest& request,
                                               const std::string& snapshot_directory);

}  // namespace mortise
