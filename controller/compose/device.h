// A device profile as the composition engine reads it (the YAML twin of tenon.v1.DeviceProfile,
// plus the measured per-job scheduling overhead of that device class).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tenon::controller {

struct DeviceProfile {
  std::string name;
  std::string arch;
  uint32_t cores = 0;
  uint32_t realtime_cores = 0;
  uint64_t memory_bytes = 0;
  uint64_t guest_memory_bytes = 0;  // 0: memory_bytes
  uint64_t tsc_frequency_khz = 0;
  std::vector<std::string> hypervisor_features;  // sorted
  std::vector<std::string> mortise_libraries;    // sorted; empty: not reported
  uint32_t guest_abi_version = 0;                // 0: not reported
  // Scheduler and timer cost charged to every job in the analysis (tenon.v1 per_job_overhead_ns).
  uint64_t scheduling_overhead_ns = 0;
  std::map<std::string, int> field_lines;
  std::string file;
};

absl::StatusOr<DeviceProfile> parse_device_profile(std::string_view text, const std::string& file);

}  // namespace tenon::controller
