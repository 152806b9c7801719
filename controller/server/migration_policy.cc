// Migration between devices; see migration_policy.h.
#include "migration_policy.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace tenon::controller {
namespace {

std::string engine_of(const tenon::v1::DeviceProfile& profile) {
  return profile.engine().empty() ? "kvm" : profile.engine();
}

// QEMU without icount shows the guest the host's TSC; a guest calibrated against one frequency
// keeps it only where the next host's is within this tolerance (Mortise refuses beyond it).
constexpr uint64_t kTscToleranceDivisor = 200;  // 0.5 %

}  // namespace

absl::Status check_migration(const std::string& source_device,
                             const tenon::v1::DeviceProfile& source,
                             const std::string& target_device,
                             const tenon::v1::DeviceProfile& target) {
  auto refuse = [&](const std::string& what) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot migrate from ", source_device, " to ", target_device, ": ", what));
  };
  if (source.arch() != target.arch() || source.guest_abi_version() != target.guest_abi_version()) {
    return refuse(
        absl::StrCat("device ", target_device, " cannot run this image: other arch or guest ABI"));
  }
  const std::string engine = engine_of(source);
  if (engine != engine_of(target)) {
    return refuse(absl::StrCat("the source runs Mortise's ", engine, " engine, the target the ",
                               engine_of(target),
                               " engine; a snapshot is restored only by the engine that took it"));
  }
  if (!absl::StartsWith(engine, "qemu")) return absl::OkStatus();
  if (!source.qemu_version().empty() && !target.qemu_version().empty() &&
      source.qemu_version() != target.qemu_version()) {
    return refuse(absl::StrCat("the source runs QEMU ", source.qemu_version(), ", the target QEMU ",
                               target.qemu_version(),
                               "; QEMU's machine state moves only between the same version"));
  }
  if (engine != "qemu-icount" && source.tsc_frequency_khz() != 0 &&
      target.tsc_frequency_khz() != 0) {
    const uint64_t a = source.tsc_frequency_khz();
    const uint64_t b = target.tsc_frequency_khz();
    if ((a > b ? a - b : b - a) * kTscToleranceDivisor > a) {
      return refuse(absl::StrCat("under ", engine, " the guest sees the host's TSC, ", a,
                                 " kHz at the source and ", b,
                                 " kHz at the target; its timers would run off"));
    }
  }
  return absl::OkStatus();
}

}  // namespace tenon::controller
