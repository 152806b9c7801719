// See profile.h.
#include "profile.h"

#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/match.h"

namespace tenon::agent {

tenon::v1::DeviceProfile make_profile(const tenon::v1::HostInfo* host_info) {
  tenon::v1::DeviceProfile profile;
  struct utsname names;
  if (uname(&names) == 0) {
    if (std::strcmp(names.machine, "x86_64") == 0) profile.set_arch(tenon::v1::ARCH_X86_64);
    if (std::strcmp(names.machine, "aarch64") == 0) profile.set_arch(tenon::v1::ARCH_ARM64);
    profile.set_kernel_release(names.release);
  }
  const long cores = sysconf(_SC_NPROCESSORS_ONLN);
  if (cores > 0) profile.set_cores(static_cast<uint32_t>(cores));
  struct sysinfo info;
  if (sysinfo(&info) == 0) {
    profile.set_memory_bytes(static_cast<uint64_t>(info.totalram) * info.mem_unit);
  }
  profile.set_agent_version(TENON_AGENT_VERSION);
  if (host_info != nullptr) {
    profile.set_realtime_cores(static_cast<uint32_t>(host_info->realtime_cpus_size()));
    profile.set_guest_memory_bytes(host_info->guest_memory_bytes());
    profile.set_tsc_frequency_khz(host_info->tsc_frequency_khz());
    for (const std::string& feature : host_info->hypervisor_features()) {
      profile.add_hypervisor_features(feature);
    }
    for (const std::string& library : host_info->libraries()) {
      profile.add_mortise_libraries(library);
    }
    profile.set_guest_abi_version(host_info->guest_abi_version());
    profile.set_mortise_version(host_info->mortise_version());
    profile.set_engine(host_info->engine_detail());
    if (absl::StartsWith(host_info->engine(), "qemu")) {
      profile.set_qemu_version(host_info->qemu_version());
    }
  }
  return profile;
}

}  // namespace tenon::agent
