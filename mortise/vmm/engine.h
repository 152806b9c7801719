// Mortise's engines: what runs an instance's guest. kKvm is Mortise's own vCPU on /dev/kvm (the
// real-time path on edge hosts); kQemu a QEMU process (TCG, or KVM acceleration where asked),
// for hosts without usable KVM and for deterministic measurement (icount: virtual time counts
// executed instructions). Images say which engine they need: each is linked with one platform
// library (tenon/abi.h, Platform).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "snapshot_format.h"
#include "tenon/abi.h"

namespace mortise {

class ConsoleSink;
class Instance;
struct InstanceConfig;

enum class EngineKind { kKvm, kQemu };
const char* engine_name(EngineKind engine);  // "kvm", "qemu"
// The engine that runs images linked for `platform`, and the platform library an engine needs.
EngineKind engine_for(tenon::abi::Platform platform);
const char* platform_library(tenon::abi::Platform platform);  // "plat-mortise", "plat-qemu"

// How the QEMU engine runs QEMU.
struct QemuSettings {
  std::string binary = "qemu-system-x86_64";
  // Deterministic virtual time: QEMU's -icount shift=0 (one instruction, one nanosecond), with
  // the clock neither aligned to the host's nor sleeping when the guest idles.
  bool icount = false;
  // QEMU on /dev/kvm instead of its TCG translator (only where asked: on this project's hosts
  // KVM may itself be an emulator).
  bool kvm_acceleration = false;
};

// The name a measurement carries: "kvm", "qemu-tcg", "qemu-icount" or "qemu-kvm".
std::string engine_detail(EngineKind engine, const QemuSettings& qemu);

enum class EngineChoice { kAuto, kKvm, kQemu };
// "auto", "kvm" or "qemu"; INVALID_ARGUMENT naming the choices otherwise.
absl::StatusOr<EngineChoice> parse_engine_choice(std::string_view text);

// What this host offers, found by trying: KVM is usable when /dev/kvm opens and a probe guest
// runs on it to its first port write; QEMU when its binary answers -version.
struct EngineProbe {
  bool kvm_usable = false;
  std::string kvm_problem;  // why not, when not
  bool qemu_usable = false;
  std::string qemu_problem;
  std::string qemu_version;  // "7.2.x" as the binary reports it
};
EngineProbe probe_engines(const QemuSettings& qemu);

// The engine a choice means on a host: kAuto picks KVM only where it is usable, else QEMU.
// FAILED_PRECONDITION naming what is missing when the chosen engine (or, for auto, every engine)
// cannot run here.
absl::StatusOr<EngineKind> resolve_engine(EngineChoice choice, const EngineProbe& probe);

// The engine to run one image with: the image's platform decides, and the choice must agree
// with it (FAILED_PRECONDITION naming the platform and the engine otherwise).
absl::StatusOr<EngineKind> engine_for_image(EngineChoice choice, tenon::abi::Platform platform);

// The platform an image file was linked for, from its notes (the image is checked as a whole
// again when an instance is created from it).
absl::StatusOr<tenon::abi::Platform> image_platform(const std::string& image_path);

// Creates an instance on `engine`, ready to run(). `host_start_tsc` marks when the caller
// started (0: now).
absl::StatusOr<std::unique_ptr<Instance>> create_instance(EngineKind engine,
                                                          const InstanceConfig& config,
                                                          const QemuSettings& qemu,
                                                          ConsoleSink& console,
                                                          uint64_t host_start_tsc = 0);

// A snapshot can be restored only by the engine that took it: FAILED_PRECONDITION naming both
// otherwise.
absl::Status check_snapshot_engine(snapshot::Engine taken_on, EngineKind here);

// The TSC frequency a guest of the qemu engine sees: virtual nanoseconds under icount (1 GHz),
// the host's TSC otherwise.
uint64_t qemu_guest_tsc_khz(const QemuSettings& qemu);

// The host's TSC frequency, measured once against CLOCK_MONOTONIC_RAW (QEMU's TCG shows the
// host's TSC to the guest).
uint64_t host_tsc_khz();

}  // namespace mortise
