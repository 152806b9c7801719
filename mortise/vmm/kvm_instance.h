// One Tenon instance on Mortise's native engine: loads the image into guest memory (guest_setup.h),
// creates the vCPU in long mode at the image entry on KVM, and runs it until it exits, faults,
// breaks the ABI, or is stopped.
#pragma once

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
#include "instance.h"
#include "ivc_channel.h"
#include "kvm.h"
#include "snapshot_format.h"

namespace mortise {

class KvmInstance final : public Instance {
 public:
  // `host_start_tsc` marks when the caller started (for boot timing); 0 means now.
  static absl::StatusOr<std::unique_ptr<KvmInstance>> create(const Kvm& kvm,
                                                             const InstanceConfig& config,
                                                             ConsoleSink& console,
                                                             uint64_t host_start_tsc = 0);
  // Brings an instance back from a parsed snapshot (mortise/lib/snapshot), paused: run() waits
  // for resume() before the guest runs again, and the guest then sees a resume (boot info
  // resume_count) like after any pause. The guest's TSC continues from the host's where the two
  // are synchronized, so the time the snapshot lay on disk shows as a gap, never as time going
  // backwards. Refuses (FAILED_PRECONDITION) a snapshot that needs CPU features this host lacks
  // and (DATA_LOSS) vCPU state Mortise never writes.
  static absl::StatusOr<std::unique_ptr<KvmInstance>> restore(const Kvm& kvm,
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
  absl::StatusOr<std::unique_ptr<SnapshotCapture>> capture(
      const SnapshotLabels& labels) const override;
  std::optional<pid_t> vcpu_process() const override { return std::nullopt; }
  // The guest was stopped in the middle of a telemetry update (its seqlock is odd): a snapshot
  // taken now would restore into an instance whose telemetry cannot be read until it runs.
  bool telemetry_mid_update() const override;
  ~KvmInstance() override;

  // Runs the vCPU on the calling thread until the guest stops or `time_limit` passes.
  EngineKind engine() const override { return EngineKind::kKvm; }
  ExitReason run(std::optional<std::chrono::nanoseconds> time_limit) override;
  // Ends a run() in progress (or the next one) with kTimeout. Callable from any thread.
  void stop() override;
  // Holds the vCPU out of the guest until resume(); run() keeps waiting meanwhile. Returns once
  // the vCPU has left the guest. Callable from any thread while run() is in progress.
  void pause() override;
  // Lets a paused vCPU back in, telling the guest (boot info resume_count) that it was paused.
  void resume() override;
  bool paused() const override { return paused_.load(); }

  // The guest's telemetry right now, without stopping it.
  absl::StatusOr<TelemetrySnapshot> telemetry() const override;
  // Exits from the guest to Mortise so far (hypercalls, kicks, faults; not the exits KVM handles
  // in the kernel). Callable from any thread.
  uint64_t vcpu_exits() const override { return vcpu_exits_.load(std::memory_order_relaxed); }
  std::map<std::string, uint64_t> hypervisor_counters() const override {
    absl::StatusOr<std::map<std::string, uint64_t>> counters = vcpu_.kernel_counters();
    return counters.ok() ? *counters : std::map<std::string, uint64_t>{};
  }
  // KVM_X86_DISABLE_EXITS_* bits in force for this instance.
  uint32_t disabled_exits() const override { return disabled_exits_; }

  const MemoryLayout& layout() const override { return layout_; }
  // The instance's inter-VM channel endpoints, in boot info order.
  const std::vector<IvcAttachment>& channels() const { return channels_; }
  const ElfImage& image() const override { return image_; }
  BootTiming boot_timing() const override;

 private:
  KvmInstance(GuestMemory memory, VirtualMachine vm, Vcpu vcpu, ConsoleSink& console);
  absl::Status setup(const Kvm& kvm, const std::vector<uint8_t>& file, const InstanceConfig& config,
                     uint64_t host_start_tsc);
  // Waits while paused; false when stop() ended the pause.
  bool wait_while_paused();
  // The reason the instance stops, or nothing when the guest should simply resume.
  std::optional<ExitReason> handle_exit();
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

// Maps the channels of `config` for a guest of `memory_size` bytes, checking their number, names
// and that the guest's memory ends below the channel window.
absl::StatusOr<std::vector<IvcAttachment>> attach_channels(const InstanceConfig& config,
                                                           uint64_t memory_size);

}  // namespace mortise
