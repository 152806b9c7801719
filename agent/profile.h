// The DeviceProfile the agent reports: hypervisor facts from mortised's GetHostInfo, host facts
// from the kernel.
#pragma once

#include "tenon/v1/fleet.pb.h"
#include "tenon/v1/mortise.pb.h"

namespace tenon::agent {

// `host_info` null: mortised did not answer; the profile holds the host facts only.
tenon::v1::DeviceProfile make_profile(const tenon::v1::HostInfo* host_info);

}  // namespace tenon::agent
