// Snapshot and restore of a KvmInstance (see kvm_instance.h): the vCPU and machine state into the
// sections of mortise/lib/snapshot's format, and back into a new VM.
#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kvm_instance.h"
#include "tenon/abi.h"

namespace mortise {
namespace {

constexpr uint32_t kTscMsr = 0x10;
constexpr uint32_t kTscDeadlineMsr = 0x6e0;
// What Mortise saves and restores besides what kvm_sregs holds (EFER, APIC base). A snapshot
// naming any other MSR is refused: MSR writes from the host bypass checks a guest's would meet.
// The TSC deadline comes last on restore: KVM ignores it unless the LAPIC timer is already in
// TSC-deadline mode, and it is relative to the guest TSC, which is set up before it.
constexpr uint32_t kSavedMsrs[] = {
    0x174,           0x175,      0x176,       // SYSENTER CS, ESP, EIP
    0x1a0,                                    // MISC_ENABLE
    0x277,                                    // PAT
    0x2ff,                                    // MTRR default type
    0xc0000081,      0xc0000082, 0xc0000083,  // STAR, LSTAR, CSTAR
    0xc0000084,                               // SFMASK
    0xc0000102,                               // KERNEL_GS_BASE
    0xc0000103,                               // TSC_AUX
    kTscDeadlineMsr,
};

static_assert(sizeof(kvm_regs) == snapshot::kRegistersBytes);
static_assert(sizeof(kvm_sregs) == snapshot::kSpecialRegistersBytes);
static_assert(sizeof(kvm_xcrs) == snapshot::kXcrsBytes);
static_assert(sizeof(kvm_lapic_state) == snapshot::kLapicBytes);
static_assert(sizeof(kvm_vcpu_events) == snapshot::kVcpuEventsBytes);
static_assert(sizeof(kvm_mp_state) == snapshot::kMpStateBytes);
static_assert(sizeof(kvm_cpuid_entry2) == snapshot::kCpuidEntryBytes);
static_assert(sizeof(kvm_msr_entry) == snapshot::kMsrEntryBytes);

// Copies a fixed record out of a section whose size the parser has checked.
template <typename T>
T record(const snapshot::Snapshot& parsed, snapshot::SectionType type) {
  T value;
  const std::span<const uint8_t> bytes = parsed.section(type);
  std::memcpy(&value, bytes.data(), std::min(bytes.size(), sizeof(T)));
  return value;
}

template <typename T>
std::vector<T> list(const snapshot::Snapshot& parsed, snapshot::SectionType type) {
  const std::span<const uint8_t> bytes = parsed.section(type);
  std::vector<T> values(bytes.size() / sizeof(T));
  std::memcpy(values.data(), bytes.data(), values.size() * sizeof(T));
  return values;
}

// Feature registers the guest may rely on: a snapshot taken where one of their bits was set can
// only run where KVM offers that bit too. Bits that mirror guest state (OSXSAVE, OSPKE) are
// not features of the host.
struct FeatureRegister {
  uint32_t function;
  const char* name;
  uint32_t kvm_cpuid_entry2::*reg;
  uint32_t ignored_bits;
};
constexpr FeatureRegister kFeatureRegisters[] = {
    {1, "CPUID.1:ECX", &kvm_cpuid_entry2::ecx, 1u << 27},
    {1, "CPUID.1:EDX", &kvm_cpuid_entry2::edx, 0},
    {7, "CPUID.7.0:EBX", &kvm_cpuid_entry2::ebx, 0},
    {7, "CPUID.7.0:ECX", &kvm_cpuid_entry2::ecx, 1u << 4},
    {7, "CPUID.7.0:EDX", &kvm_cpuid_entry2::edx, 0},
    {0x80000001, "CPUID.80000001h:ECX", &kvm_cpuid_entry2::ecx, 0},
    {0x80000001, "CPUID.80000001h:EDX", &kvm_cpuid_entry2::edx, 0},
};

const kvm_cpuid_entry2* find_leaf(std::span<const kvm_cpuid_entry2> entries, uint32_t function) {
  for (const kvm_cpuid_entry2& entry : entries) {
    if (entry.function == function && entry.index == 0) return &entry;
  }
  return nullptr;
}

// `offered` is what a vCPU of this host reads back after Mortise gave it the supported CPUID,
// as the snapshot's vCPU did on its host (KVM's answer to KVM_GET_SUPPORTED_CPUID can hold fewer
// bits than a vCPU then reports, so the two lists are not comparable with each other).
absl::Status check_cpu_features(std::span<const kvm_cpuid_entry2> offered,
                                std::span<const kvm_cpuid_entry2> wanted) {
  for (const FeatureRegister& feature : kFeatureRegisters) {
    const kvm_cpuid_entry2* asked = find_leaf(wanted, feature.function);
    if (asked == nullptr) continue;
    const kvm_cpuid_entry2* host = find_leaf(offered, feature.function);
    const uint32_t need = asked->*feature.reg & ~feature.ignored_bits;
    const uint32_t have = host != nullptr ? host->*feature.reg : 0;
    if ((need & ~have) != 0) {
      return absl::FailedPreconditionError(
          absl::StrFormat("the snapshot needs CPU features this host's KVM does not offer: %s "
                          "bits %#x (the snapshot's CPU had %#x, this host offers %#x)",
                          feature.name, need & ~have, need, have));
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool KvmInstance::telemetry_mid_update() const { return mortise::telemetry_mid_update(memory_); }

absl::StatusOr<std::unique_ptr<SnapshotCapture>> KvmInstance::capture(
    const SnapshotLabels& labels) const {
  if (!paused_.load()) {
    return absl::FailedPreconditionError("the instance must be paused for a snapshot");
  }
  if (!channels_.empty()) {
    return absl::FailedPreconditionError(
        "instances with inter-VM channels cannot be snapshotted yet: the peer's half of each "
        "channel lives in another instance");
  }
  absl::StatusOr<std::unique_ptr<SnapshotCapture>> captured =
      begin_capture(snapshot::Engine::kKvm, labels, memory_, layout_, image_, tsc_khz_);
  if (!captured.ok()) return captured.status();
  KvmVcpuState& state = (*captured)->kvm;
  absl::StatusOr<std::vector<kvm_cpuid_entry2>> cpuid = vcpu_.get_cpuid();
  if (!cpuid.ok()) return cpuid.status();
  state.cpuid = std::move(*cpuid);
  for (absl::Status status :
       {vcpu_.get_regs(state.regs), vcpu_.get_sregs(state.sregs), vcpu_.get_xsave(state.xsave),
        vcpu_.get_xcrs(state.xcrs), vcpu_.get_lapic(state.lapic),
        vcpu_.get_vcpu_events(state.events), vcpu_.get_mp_state(state.mp_state)}) {
    if (!status.ok()) return status;
  }
  for (uint32_t index : kSavedMsrs) {
    // An MSR this KVM does not have is simply not part of the guest's state.
    absl::StatusOr<uint64_t> value = vcpu_.get_msr(index);
    if (!value.ok()) continue;
    kvm_msr_entry entry{};
    entry.index = index;
    entry.data = *value;
    state.msrs.push_back(entry);
  }
  absl::StatusOr<uint64_t> guest_tsc = vcpu_.get_msr(kTscMsr);
  if (!guest_tsc.ok()) return guest_tsc.status();
  (*captured)->machine.guest_tsc = *guest_tsc;
  (*captured)->machine.vcpu_exits = vcpu_exits_.load();
  return captured;
}

absl::StatusOr<snapshot::Written> KvmInstance::write_snapshot(const SnapshotLabels& labels,
                                                              const snapshot::Sink& sink) const {
  absl::StatusOr<std::unique_ptr<SnapshotCapture>> captured = capture(labels);
  if (!captured.ok()) return captured.status();
  return snapshot::write_snapshot((*captured)->contents(), sink);
}

absl::StatusOr<std::unique_ptr<KvmInstance>> KvmInstance::restore(const Kvm& kvm,
                                                                  const snapshot::Snapshot& parsed,
                                                                  ExitControl exit_control,
                                                                  ConsoleSink& console) {
  // Everything that can be checked without KVM is checked first.
  if (absl::Status status = check_snapshot_engine(parsed.engine, EngineKind::kKvm); !status.ok()) {
    return status;
  }
  for (const kvm_msr_entry& entry : list<kvm_msr_entry>(parsed, snapshot::SectionType::kMsrs)) {
    if (std::find(std::begin(kSavedMsrs), std::end(kSavedMsrs), entry.index) ==
        std::end(kSavedMsrs)) {
      return absl::DataLossError(
          absl::StrFormat("the snapshot sets MSR %#x, which Mortise never saves", entry.index));
    }
  }

  absl::StatusOr<GuestMemory> memory = GuestMemory::create(parsed.memory_bytes);
  if (!memory.ok()) return memory.status();
  const std::span<const uint8_t> saved = parsed.section(snapshot::SectionType::kGuestMemory);
  std::memcpy(memory->host_base(), saved.data(), std::min<uint64_t>(saved.size(), memory->size()));
  absl::StatusOr<VirtualMachine> vm =
      VirtualMachine::create(kvm, memory->size(), memory->host_base());
  if (!vm.ok()) return vm.status();
  uint32_t disabled_exits = 0;
  if (exit_control == ExitControl::kLowLatency) {
    disabled_exits = kvm.capabilities().disable_exits &
                     (KVM_X86_DISABLE_EXITS_HLT | KVM_X86_DISABLE_EXITS_PAUSE);
    if (absl::Status status = vm->disable_exits(disabled_exits); !status.ok()) return status;
  }
  absl::StatusOr<Vcpu> vcpu = Vcpu::create(kvm, *vm, 0);
  if (!vcpu.ok()) return vcpu.status();
  std::unique_ptr<KvmInstance> instance(
      new KvmInstance(std::move(*memory), std::move(*vm), std::move(*vcpu), console));
  instance->disabled_exits_ = disabled_exits;
  if (absl::Status status = instance->restore_state(kvm, parsed); !status.ok()) return status;
  // Parked until resume(); see run().
  instance->pause_requested_.store(true);
  instance->paused_.store(true);
  instance->vcpu_.run_state()->immediate_exit = 1;
  return instance;
}

absl::Status KvmInstance::restore_state(const Kvm& kvm, const snapshot::Snapshot& parsed) {
  using snapshot::SectionType;
  const snapshot::Machine& machine = parsed.machine;
  layout_ = layout_of(machine);
  image_ = image_of(machine);
  vcpu_exits_.store(machine.vcpu_exits);

  const std::vector<kvm_cpuid_entry2> cpuid = list<kvm_cpuid_entry2>(parsed, SectionType::kCpuid);
  if (absl::Status status = vcpu_.set_cpuid(kvm.supported_cpuid()); !status.ok()) return status;
  absl::StatusOr<std::vector<kvm_cpuid_entry2>> offered = vcpu_.get_cpuid();
  if (!offered.ok()) return offered.status();
  if (absl::Status status = check_cpu_features(*offered, cpuid); !status.ok()) return status;
  // The guest keeps seeing the CPU it was snapshotted on.
  if (absl::Status status = vcpu_.set_cpuid_entries(cpuid); !status.ok()) return status;

  // The guest's clock: same frequency as before (scaled where this host's differs), and never
  // behind where it stood at the snapshot.
  absl::StatusOr<uint64_t> host_khz = vcpu_.tsc_khz();
  if (!host_khz.ok()) return host_khz.status();
  if (*host_khz != machine.tsc_khz) {
    if (absl::Status status = vcpu_.set_tsc_khz(machine.tsc_khz); !status.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the snapshot's guest TSC runs at ", machine.tsc_khz, " kHz, this host's at ", *host_khz,
          " kHz, and KVM cannot scale it: ", status.message()));
    }
  }
  tsc_khz_ = machine.tsc_khz;
  const uint64_t host_tsc = read_host_tsc();
  if (kvm.capabilities().tsc_control) {
    tsc_offset_ =
        host_tsc >= machine.guest_tsc ? 0 : static_cast<int64_t>(machine.guest_tsc - host_tsc);
    if (absl::Status status = vcpu_.set_tsc_offset(tsc_offset_); !status.ok()) return status;
    tsc_synchronized_ = tsc_offset_ == 0 && *host_khz == machine.tsc_khz;
  } else {
    // Without offset control the guest TSC continues from where it stood.
    if (absl::Status status = vcpu_.set_msr(kTscMsr, machine.guest_tsc); !status.ok()) {
      return status;
    }
    tsc_offset_ = static_cast<int64_t>(machine.guest_tsc - host_tsc);
    tsc_synchronized_ = false;
  }

  // Special registers first (paging, EFER, APIC base with the x2APIC mode the CPUID allows),
  // then the rest; the LAPIC before the MSRs, for the TSC deadline.
  const auto sregs = record<kvm_sregs>(parsed, SectionType::kSpecialRegisters);
  if (absl::Status status = vcpu_.set_sregs(sregs); !status.ok()) return status;
  const auto regs = record<kvm_regs>(parsed, SectionType::kRegisters);
  if (absl::Status status = vcpu_.set_regs(regs); !status.ok()) return status;
  std::array<uint8_t, snapshot::kXsaveBytes> xsave{};
  std::memcpy(xsave.data(), parsed.section(SectionType::kXsave).data(), xsave.size());
  if (absl::Status status = vcpu_.set_xsave(xsave); !status.ok()) return status;
  const auto xcrs = record<kvm_xcrs>(parsed, SectionType::kXcrs);
  if (xcrs.nr_xcrs > 0) {
    if (absl::Status status = vcpu_.set_xcrs(xcrs); !status.ok()) return status;
  }
  const auto lapic = record<kvm_lapic_state>(parsed, SectionType::kLapic);
  if (absl::Status status = vcpu_.set_lapic(lapic); !status.ok()) return status;
  std::vector<kvm_msr_entry> msrs = list<kvm_msr_entry>(parsed, SectionType::kMsrs);
  std::stable_partition(msrs.begin(), msrs.end(),
                        [](const kvm_msr_entry& entry) { return entry.index != kTscDeadlineMsr; });
  for (const kvm_msr_entry& entry : msrs) {
    if (absl::Status status = vcpu_.set_msr(entry.index, entry.data); !status.ok()) {
      return absl::Status(status.code(),
                          absl::StrFormat("MSR %#x: %s", entry.index, status.message()));
    }
  }
  auto events = record<kvm_vcpu_events>(parsed, SectionType::kVcpuEvents);
  events.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
  if (absl::Status status = vcpu_.set_vcpu_events(events); !status.ok()) return status;
  const auto mp_state = record<kvm_mp_state>(parsed, SectionType::kMpState);
  return vcpu_.set_mp_state(mp_state);
}

}  // namespace mortise
