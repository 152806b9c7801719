// One Tenon instance, whatever engine runs it: its configuration, how it ended, and the interface
// its owner drives it through. The engines: kvm_instance.h (Mortise's own vCPU on KVM) and
// qemu_instance.h (a QEMU process).
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "console_sink.h"
#include "elf_loader.h"
#include "engine.h"
#include "guest_memory.h"
#include "ivc_channel.h"
#include "kvm.h"
#include "memory_layout.h"
#include "snapshot_format.h"
#include "telemetry.h"

namespace mortise {

// KVM exit controls: kLowLatency lets the guest halt and pause the CPU without exiting to the
// host (KVM_CAP_X86_DISABLE_EXITS), where KVM offers it; only for vCPUs with a core to themselves.
enum class ExitControl { kDefault, kLowLatency };

struct InstanceConfig {
  std::string image_path;
  uint64_t memory_bytes = 1 << 20;
  uint64_t stack_bytes = 16 << 10;
  uint64_t app_run_ns = 0;  // boot info app_run_ns: how long the app's scheduler runs
  ExitControl exit_control = ExitControl::kDefault;
  // Inter-VM channels this instance is an endpoint of, in boot info order (at most
  // tenon::abi::kIvcMaxChannels; memory_bytes at most tenon::abi::kIvcWindowBase then). The
  // descriptors are borrowed: they must stay open until create() returns.
  std::vector<IvcEndpointConfig> channels;
};

enum class ExitKind {
  kGuestExit,        // the guest called exit; `status` holds its status
  kGuestFault,       // CPU exception in the guest, triple fault, or a VM entry failure
  kGuestPanic,       // the guest reported a failed invariant
  kViolation,        // the guest broke the hypercall ABI or touched memory it has not got
  kTimeout,          // the time limit ran out, or stop() was called
  kHypervisorError,  // KVM itself failed
};
const char* exit_kind_name(ExitKind kind);

struct ExitReason {
  ExitKind kind = ExitKind::kHypervisorError;
  int64_t status = 0;
  std::string message;
};

// What the supervisor adds to a snapshot of an instance (snapshot Metadata and the console
// position, which mortise-vmm keeps).
struct SnapshotLabels {
  std::string run_id;
  std::string image_digest;
  std::string vm_name;
  uint64_t console_offset = 0;
};

// The vCPU of a kvm snapshot, as KVM's own structures.
struct KvmVcpuState {
  std::vector<kvm_cpuid_entry2> cpuid;
  kvm_regs regs{};
  kvm_sregs sregs{};
  std::array<uint8_t, snapshot::kXsaveBytes> xsave{};
  kvm_xcrs xcrs{};
  std::vector<kvm_msr_entry> msrs;
  kvm_lapic_state lapic{};
  kvm_vcpu_events events{};
  kvm_mp_state mp_state{};
};

// The complete state of a paused instance, copied out of it (memory included) so that the guest
// can run again while the copy is hashed and written.
struct SnapshotCapture {
  snapshot::Engine engine = snapshot::Engine::kKvm;
  snapshot::Metadata metadata{};
  snapshot::Machine machine{};
  KvmVcpuState kvm;        // engine kKvm
  std::string qemu_state;  // engine kQemu: QEMU's migration stream without RAM
  std::unique_ptr<uint8_t[]> memory;
  uint64_t memory_bytes = 0;

  // The sections of the snapshot file, pointing into this capture.
  snapshot::Contents contents() const;
};

// What every engine's capture starts with: the labels, the machine record (less what only the
// engine knows: guest_tsc, vcpu_exits) and a copy of guest memory.
absl::StatusOr<std::unique_ptr<SnapshotCapture>> begin_capture(
    snapshot::Engine engine, const SnapshotLabels& labels, const GuestMemory& memory,
    const MemoryLayout& layout, const ElfImage& image, uint64_t tsc_khz);

// The layout and image entry a snapshot's machine record describes (the parser checked them).
MemoryLayout layout_of(const snapshot::Machine& machine);
ElfImage image_of(const snapshot::Machine& machine);

// What every engine's instance offers its owner (mortise-vmm, `mortise run`, tests). The owner
// calls run() on one thread; every other method may be called from any thread while it runs.
class Instance {
 public:
  virtual ~Instance() = default;

  // The engine running this instance.
  virtual EngineKind engine() const = 0;
  // Runs the guest until it stops or `time_limit` passes.
  virtual ExitReason run(std::optional<std::chrono::nanoseconds> time_limit) = 0;
  // Ends a run() in progress (or the next one) with kTimeout.
  virtual void stop() = 0;
  // Holds the guest until resume(); run() keeps waiting meanwhile. Returns once the guest no
  // longer runs (or run() has ended, or has not begun).
  virtual void pause() = 0;
  // Lets a paused guest run again, telling it (boot info resume_count) that it was paused.
  virtual void resume() = 0;
  virtual bool paused() const = 0;

  // The guest's telemetry right now, without stopping it.
  virtual absl::StatusOr<TelemetrySnapshot> telemetry() const = 0;
  // The guest was stopped in the middle of a telemetry update (its seqlock is odd).
  virtual bool telemetry_mid_update() const = 0;
  // Exits from the guest to Mortise so far, where the engine counts them (0 where it does not).
  virtual uint64_t vcpu_exits() const = 0;
  // The hypervisor's own counters of the guest's vCPU where it keeps them (KVM's, including
  // "exits" into the host kernel that never reach Mortise); empty on engines without them.
  virtual std::map<std::string, uint64_t> hypervisor_counters() const = 0;
  // KVM_X86_DISABLE_EXITS_* bits in force (0 on engines without them).
  virtual uint32_t disabled_exits() const = 0;
  virtual BootTiming boot_timing() const = 0;
  virtual const MemoryLayout& layout() const = 0;
  virtual const ElfImage& image() const = 0;

  // The complete state of the paused instance, copied out of it, to be written after the guest
  // was let back in. UNIMPLEMENTED on engines that cannot snapshot.
  virtual absl::StatusOr<std::unique_ptr<SnapshotCapture>> capture(
      const SnapshotLabels& labels) const = 0;

  // The process that runs the guest's vCPU when it is not the owner's calling thread (QEMU's,
  // on the qemu engine); nothing on engines whose vCPU is the thread that calls run().
  virtual std::optional<pid_t> vcpu_process() const = 0;
};

// Reads the host TSC.
uint64_t read_host_tsc();

}  // namespace mortise
