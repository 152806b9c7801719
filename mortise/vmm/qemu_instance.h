// One Tenon instance on the QEMU engine. Mortise prepares the guest's memory exactly as for the
// native engine (guest_setup.h) in a memory file that QEMU maps as the guest's RAM, hands QEMU a
// boot ROM that enters the image in long mode, and drives the QEMU process over QMP: start,
// pause and resume, stop. Mortise reads the telemetry page live from the shared memory, takes
// console bytes from QEMU's debug console, and decides how the guest ended from QEMU's exit code
// and the exit record the guest left (qemu_exit.h). A snapshot is guest memory (Mortise's file)
// plus QEMU's migration stream of the machine without its RAM.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "console_sink.h"
#include "engine.h"
#include "guest_memory.h"
#include "guest_setup.h"
#include "instance.h"
#include "kvm.h"
#include "qemu_process.h"
#include "qmp_client.h"
#include "snapshot_format.h"

namespace mortise {

class QemuInstance final : public Instance {
 public:
  // Starts QEMU with the instance prepared and held before its first instruction; run() lets it
  // go. `host_start_tsc` marks when the caller started (0: now). Channels are refused: they exist
  // on the native engine only.
  static absl::StatusOr<std::unique_ptr<QemuInstance>> create(const InstanceConfig& config,
                                                              const QemuSettings& qemu,
                                                              ConsoleSink& console,
                                                              uint64_t host_start_tsc = 0);
  // A paused instance from a snapshot this engine took: guest memory from the snapshot, the
  // machine (vCPU, LAPIC, clocks) from QEMU's stream in it. Refused with FAILED_PRECONDITION
  // when the snapshot is another engine's or its guest TSC frequency differs from this engine's.
  static absl::StatusOr<std::unique_ptr<QemuInstance>> restore(const snapshot::Snapshot& parsed,
                                                               const QemuSettings& qemu,
                                                               ConsoleSink& console);
  ~QemuInstance() override;

  EngineKind engine() const override { return EngineKind::kQemu; }
  ExitReason run(std::optional<std::chrono::nanoseconds> time_limit) override;
  void stop() override;
  void pause() override;
  void resume() override;
  bool paused() const override { return paused_.load(); }
  absl::StatusOr<TelemetrySnapshot> telemetry() const override;
  bool telemetry_mid_update() const override;
  uint64_t vcpu_exits() const override { return 0; }
  std::map<std::string, uint64_t> hypervisor_counters() const override { return {}; }
  uint32_t disabled_exits() const override { return 0; }
  BootTiming boot_timing() const override;
  const MemoryLayout& layout() const override { return guest_.layout; }
  const ElfImage& image() const override { return guest_.image; }
  absl::StatusOr<std::unique_ptr<SnapshotCapture>> capture(
      const SnapshotLabels& labels) const override;
  std::optional<pid_t> vcpu_process() const override { return process_.pid(); }

  // What QEMU printed on its stderr so far (bounded).
  std::string qemu_diagnostics() const;

 private:
  QemuInstance(GuestMemory memory, PreparedGuest guest, QemuProcess process, QmpClient qmp,
               FileDescriptor console, FileDescriptor wake, ConsoleSink& console_sink,
               uint64_t tsc_khz);
  // Starts QEMU on prepared memory, held before the first instruction; with `machine_state`
  // (QEMU's stream from a snapshot) the machine is loaded from it first.
  static absl::StatusOr<std::unique_ptr<QemuInstance>> start(
      GuestMemory memory, PreparedGuest guest, const QemuSettings& qemu, ConsoleSink& console,
      uint64_t tsc_khz, std::span<const uint8_t> machine_state);
  // Moves what QEMU wrote to its console and stderr along; false at end of file on both.
  bool drain_output(bool block);
  std::string guest_position();

  GuestMemory memory_;
  PreparedGuest guest_;
  QemuProcess process_;
  mutable std::mutex qmp_mutex_;
  mutable QmpClient qmp_;   // guarded by qmp_mutex_
  FileDescriptor console_;  // QEMU's debug console, read end
  FileDescriptor wake_;     // eventfd: stop() wakes run()
  ConsoleSink& console_sink_;
  uint64_t tsc_khz_ = 0;
  bool console_open_ = true;
  bool diagnostics_open_ = true;
  mutable std::mutex diagnostics_mutex_;
  std::string diagnostics_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> started_{false};   // QEMU was told to run at least once
  std::atomic<bool> finished_{false};  // QEMU has exited
  std::atomic<bool> paused_{false};
  std::atomic<bool> pause_requested_{false};
};

}  // namespace mortise
