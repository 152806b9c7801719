// Which devices an instance may migrate between, from the profiles their agents reported. A
// migration moves a snapshot, and a snapshot comes back only where the same kind of machine
// restores it: the same arch and guest ABI, the same Mortise engine, and for QEMU the same QEMU
// version (its machine-state stream is version-specific) and a guest TSC of the same frequency.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "tenon/v1/fleet.pb.h"

namespace tenon::controller {

// FAILED_PRECONDITION naming the two devices and what differs between them; OK when the
// snapshot of an instance on `source` can be restored on `target`. A profile that reports no
// engine comes from an agent that predates the QEMU engine: it runs kvm.
absl::Status check_migration(const std::string& source_device,
                             const tenon::v1::DeviceProfile& source,
                             const std::string& target_device,
                             const tenon::v1::DeviceProfile& target);

}  // namespace tenon::controller
