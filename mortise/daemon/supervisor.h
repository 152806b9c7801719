// What mortised does, without the gRPC around it: the VMs of this host by name, the resources
// they hold (guest memory budget, real-time cores), and each MortiseService operation as a
// function returning absl::Status. mortise_service.cc maps it onto the wire.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "child_monitor.h"
#include "engine.h"
#include "ivc_channel.h"
#include "managed_vm.h"
#include "placement.h"
#include "tenon/v1/mortise.pb.h"

namespace mortise {

struct SupervisorOptions {
  std::string vmm_binary;
  std::string image_directory;     // resolved absolute path
  std::string snapshot_directory;  // resolved absolute path
  uint64_t guest_memory_budget = 0;
  HostPartition partition;
  size_t console_ring_bytes = 64 << 10;        // kept per VM by mortised
  size_t vmm_console_buffer_bytes = 64 << 10;  // held by mortise-vmm while the socket is busy
  VmTimeouts timeouts;
  EngineChoice engine = EngineChoice::kAuto;
  QemuSettings qemu;
};

class Supervisor {
 public:
  // Probes the engines once and settles on one (options.engine; auto prefers KVM where it is
  // usable), with its capabilities and TSC frequency for GetHostInfo. A host where the chosen
  // engine cannot run still gets a Supervisor, whose Create fails with FAILED_PRECONDITION.
  static absl::StatusOr<std::unique_ptr<Supervisor>> create(SupervisorOptions options);
  ~Supervisor();

  using ConsoleWriter = std::function<bool(const tenon::v1::ConsoleChunk&)>;
  using TelemetryWriter = std::function<bool(const tenon::v1::InstanceTelemetry&)>;
  using Cancelled = std::function<bool()>;

  absl::StatusOr<tenon::v1::VmOperationResponse> create_vm(
      const tenon::v1::CreateVmRequest& request);
  absl::StatusOr<tenon::v1::VmOperationResponse> start_vm(const std::string& name);
  absl::StatusOr<tenon::v1::VmOperationResponse> pause_vm(const std::string& name);
  absl::StatusOr<tenon::v1::VmOperationResponse> resume_vm(const std::string& name);
  absl::StatusOr<tenon::v1::VmOperationResponse> destroy_vm(const std::string& name);
  absl::StatusOr<tenon::v1::SnapshotVmResponse> snapshot_vm(
      const tenon::v1::SnapshotVmRequest& request);
  absl::StatusOr<tenon::v1::VmOperationResponse> restore_vm(
      const tenon::v1::RestoreVmRequest& request);
  tenon::v1::ListVmsResponse list_vms();
  absl::StatusOr<tenon::v1::Vm> get_vm(const tenon::v1::GetVmRequest& request);
  // Streams write until done; a false return from `write` (the caller went away) ends the
  // stream with OK, as does `cancelled`.
  absl::Status stream_console(const tenon::v1::StreamConsoleRequest& request,
                              const ConsoleWriter& write, const Cancelled& cancelled);
  absl::Status stream_telemetry(const tenon::v1::StreamTelemetryRequest& request,
                                const TelemetryWriter& write, const Cancelled& cancelled);
  tenon::v1::HostInfo host_info() const;

  // Destroys every VM; later calls find none, and Create is refused from then on.
  void shutdown();

 private:
  explicit Supervisor(SupervisorOptions options) : options_(std::move(options)) {}

  struct CpuChoice {
    std::optional<int> vcpu_cpu;
    uint32_t rt_priority = 0;
    std::string note;
  };
  // Claims the name, memory and CPU for a VM about to be created or restored (filling in
  // identity's placement); give it back with release() and by erasing the name from
  // names_being_created_.
  absl::StatusOr<CpuChoice> reserve(VmIdentity& identity, const tenon::v1::CpuRequest& request);
  // Under registry_mutex_.
  absl::StatusOr<CpuChoice> choose_cpu(const tenon::v1::CpuRequest& request) const;
  void release(const VmIdentity& identity);  // under registry_mutex_
  absl::StatusOr<std::shared_ptr<ManagedVm>> find(const std::string& name) const;
  std::vector<std::shared_ptr<ManagedVm>> all_vms() const;
  // Takes the sides of identity.channels for identity.name, creating channels nobody holds yet;
  // ALREADY_EXISTS when a side is held by another VM (nothing is taken then). release() gives
  // them back. The descriptors stay valid while the sides are held.
  absl::StatusOr<std::vector<IvcEndpointConfig>> acquire_channels(const VmIdentity& identity);

  // An inter-VM channel of this host and the VMs holding its two sides ("" for a free side).
  struct ChannelHolders {
    std::shared_ptr<IvcChannel> channel;
    std::string holders[2];
  };

  const SupervisorOptions options_;
  std::unique_ptr<ChildMonitor> monitor_;
  std::string kvm_unavailable_reason_;
  std::optional<EngineKind> engine_;  // none: no engine can run here
  std::string engine_unavailable_reason_;
  std::string qemu_version_;
  // FAILED_PRECONDITION when no engine runs here.
  absl::Status check_engine(const char* operation) const;
  std::vector<std::string> hypervisor_features_;
  uint64_t tsc_frequency_khz_ = 0;

  mutable std::mutex registry_mutex_;
  std::map<std::string, std::shared_ptr<ManagedVm>> vms_;
  std::set<std::string> names_being_created_;
  uint64_t memory_reserved_ = 0;
  std::map<int, int> realtime_users_;  // shared real-time VMs per CPU
  std::set<int> dedicated_cpus_;
  std::map<std::string, ChannelHolders> channels_;  // while one side is held
  bool shutting_down_ = false;
};

}  // namespace mortise
