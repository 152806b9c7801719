// One Tenon instance on KVM: loads the image, builds the guest's memory (layout, page tables,
// boot info), creates the vCPU in long mode at the image entry, and runs it until it exits,
// faults, breaks the ABI, or is stopped.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "console_sink.h"
#include "elf_loader.h"
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

// Boot timing from the guest's telemetry page, in host TSC ticks where the guest TSC is
// synchronized with the host's (tsc_synchronized), else unavailable.
struct BootTiming {
  bool tsc_synchronized = false;
  uint64_t tsc_khz = 0;
  uint64_t host_start_tsc = 0;
  uint64_t guest_entry_tsc = 0;  // 0 when the guest never got there
  uint64_t main_entry_tsc = 0;
};

// What the supervisor adds to a snapshot of an instance (snapshot Metadata and the console
// position, which mortise-vmm keeps).
struct SnapshotLabels {
  std::string run_id;
  std::string image_digest;
  std::string vm_name;
  uint64_t console_offset = 0;
};

// The complete state of a paused instance, copied out of it (memory included) so that the guest
// can run again while the copy is hashed and written.
struct SnapshotCapture {
  snapshot::Metadata metadata{};
  snapshot::Machine machine{};
  std::vector<kvm_cpuid_entry2> cpuid;
  kvm_regs regs{};
  kvm_sregs sregs{};
  std::array<uint8_t, snapshot::kXsaveBytes> xsave{};
  kvm_xcrs xcrs{};
  std::vector<kvm_msr_entry> msrs;
  kvm_lapic_state lapic{};
  kvm_vcpu_events events{};
  kvm_mp_state mp_state{};
  std::unique_ptr<uint8_t[]> memory;
  uint64_t memory_bytes = 0;

  // The sections of the snapshot file, pointing into this capture.
  snapshot::Contents contents() const;
};

class Instance {
 public:
  // `host_start_tsc` marks when the caller started (for boot timing); 0 means now.
  static absl::StatusOr<std::unique_ptr<Instance>> create(const Kvm& kvm,
                                                          const InstanceConfig& config,
                                                          ConsoleSink& console,
                                                          uint64_t host_start_tsc = 0);
  // Brings an instance back from a parsed snapshot (mortise/lib/snapshot), paused: run() waits
  // for resume() before the guest runs again, and the guest then sees a resume (boot info
  // resume_count) like after any pause. The guest's TSC continues from the host's where the two
  // are synchronized, so the time the snapshot lay on disk shows as a gap, never as time going
  // backwards. Refuses (FAILED_PRECONDITION) a snapshot that needs CPU features this host lacks
  // and (DATA_LOSS) vCPU state Mortise never writes.
  static absl::StatusOr<std::unique_ptr<Instance>> restore(const Kvm& kvm,
                                                           const snapshot::Snapshot& snapshot,
                                                           ExitControl exit_control,
                                                           ConsoleSink& console);
  // Writes the complete state of the paused instance (paused() is true) as a snapshot through
  // `sink`: memory, vCPU registers, special registers, FPU/XSAVE, MSRs (TSC deadline included),
  // LAPIC, pending events, multiprocessing state, CPUID, layout and clocks.
  absl::StatusOr<snapshot::Written> write_snapshot(const SnapshotLabels& labels,
                                                   const snapshot::Sink& sink) const;
  // The same state copied out of the paused instance (a copy of its memory included), to be
  // written after the guest was let back in.
  absl::StatusOr<std::unique_ptr<SnapshotCapture>> capture(const SnapshotLabels& labels) const;
  // The guest was stopped in the middle of a telemetry update (its seqlock is odd): a snapshot
  // taken now would restore into an instance whose telemetry cannot be read until it runs.
  bool telemetry_mid_update() const;
  ~Instance();

  // Runs the vCPU on the calling thread until the guest stops or `time_limit` passes.
  ExitReason run(std::optional<std::chrono::nanoseconds> time_limit);
  // Ends a run() in progress (or the next one) with kTimeout. Callable from any thread.
  void stop();
  // Holds the vCPU out of the guest until resume(); run() keeps waiting meanwhile. Returns once
  // the vCPU has left the guest. Callable from any thread while run() is in progress.
  void pause();
  // Lets a paused vCPU back in, telling the guest (boot info resume_count) that it was paused.
  void resume();
  bool paused() const { return paused_.load(); }

  // The guest's telemetry right now, without stopping it.
  absl::StatusOr<TelemetrySnapshot> telemetry() const;
  // Exits from the guest to Mortise so far (hypercalls, kicks, faults; not the exits KVM handles
  // in the kernel). Callable from any thread.
  uint64_t vcpu_exits() const { return vcpu_exits_.load(std::memory_order_relaxed); }
  // KVM_X86_DISABLE_EXITS_* bits in force for this instance.
  uint32_t disabled_exits() const { return disabled_exits_; }

  const MemoryLayout& layout() const { return layout_; }
  // The instance's inter-VM channel endpoints, in boot info order.
  const std::vector<IvcAttachment>& channels() const { return channels_; }
  const ElfImage& image() const { return image_; }
  BootTiming boot_timing() const;

 private:
  Instance(GuestMemory memory, VirtualMachine vm, Vcpu vcpu, ConsoleSink& console);
  absl::Status setup(const Kvm& kvm, const std::vector<uint8_t>& file, const InstanceConfig& config,
                     uint64_t host_start_tsc);
  // Waits while paused; false when stop() ended the pause.
  bool wait_while_paused();
  // The reason the instance stops, or nothing when the guest should simply resume.
  std::optional<ExitReason> handle_exit();
  std::string describe_fault_with_layout(const std::string& message, uint64_t address) const;
  absl::Status restore_state(const Kvm& kvm, const snapshot::Snapshot& snapshot);

  std::vector<IvcAttachment> channels_;  // declared first: unmapped after the VM is gone
  GuestMemory memory_;
  VirtualMachine vm_;
  Vcpu vcpu_;
  ConsoleSink& console_;
  MemoryLayout layout_;
  ElfImage image_;
  uint64_t tsc_khz_ = 0;
  bool tsc_synchronized_ = false;
  int64_t tsc_offset_ = 0;  // guest TSC minus host TSC (non-zero only after some restores)
  std::atomic<bool> stop_requested_{false};
  std::atomic<pthread_t> vcpu_thread_{};
  std::atomic<bool> running_{false};
  std::atomic<uint64_t> vcpu_exits_{0};
  uint32_t disabled_exits_ = 0;
  // Pause protocol: pause() sets pause_requested_ and kicks; run() parks in paused_ until resume.
  mutable std::mutex pause_mutex_;
  std::condition_variable pause_changed_;
  std::atomic<bool> pause_requested_{false};
  std::atomic<bool> paused_{false};
};

// Reads the host TSC.
uint64_t read_host_tsc();

// Maps the channels of `config` for a guest of `memory_size` bytes, checking their number, names
// and that the guest's memory ends below the channel window.
absl::StatusOr<std::vector<IvcAttachment>> attach_channels(const InstanceConfig& config,
                                                           uint64_t memory_size);

}  // namespace mortise
