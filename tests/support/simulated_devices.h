// Device profiles as an agent reports them in its Hello, for tests, fuzzers and benchmarks that
// speak the agent protocol without a real device: a native KVM edge host and a QEMU one.
#pragma once

#include "tenon/v1/fleet.pb.h"

namespace tenon::test_support {

enum class SimulatedEngine { kKvm, kQemu };

inline tenon::v1::DeviceProfile simulated_device_profile(
    SimulatedEngine engine = SimulatedEngine::kKvm) {
  const bool qemu = engine == SimulatedEngine::kQemu;
  tenon::v1::DeviceProfile profile;
  profile.set_arch(tenon::v1::ARCH_X86_64);
  profile.set_cores(2);
  profile.set_realtime_cores(1);
  profile.set_memory_bytes(1ull << 30);
  profile.set_guest_memory_bytes(64ull << 20);
  profile.set_tsc_frequency_khz(2'000'000);
  if (qemu) {
    for (const char* feature : {"qemu", "xapic-mmio"}) profile.add_hypervisor_features(feature);
  } else {
    for (const char* feature : {"disable-exits-hlt", "kvm", "tsc-deadline-timer", "x2apic"}) {
      profile.add_hypervisor_features(feature);
    }
  }
  for (const char* library : {"console", "hypercall", "kvm", "loader", "memory", "pagetable"}) {
    profile.add_mortise_libraries(library);
  }
  if (qemu) profile.add_mortise_libraries("qemu");
  profile.set_engine(qemu ? "qemu-tcg" : "kvm");
  profile.set_guest_abi_version(1);
  return profile;
}

}  // namespace tenon::test_support
