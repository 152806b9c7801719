// Thin RAII layer over the Linux KVM API: the system handle, one VM and its vCPUs. Everything
// returns absl::Status; no other Mortise code issues KVM ioctls.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace mortise {

// An owned file descriptor.
class FileDescriptor {
 public:
  FileDescriptor() = default;
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(FileDescriptor&& other) noexcept;
  FileDescriptor& operator=(FileDescriptor&& other) noexcept;
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor();
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

class Vcpu;

// What this host's KVM offers that Mortise uses.
struct KvmCapabilities {
  bool irqchip = false;
  bool tsc_deadline_timer = false;
  bool x2apic = false;         // supported CPUID offers x2APIC mode to guests
  bool tsc_control = false;    // guest TSC offset can be set (KVM_VCPU_TSC_OFFSET)
  uint32_t disable_exits = 0;  // KVM_X86_DISABLE_EXITS_* mask
};

class Kvm {
 public:
  // Opens /dev/kvm (or `device`); UNAVAILABLE with a clear message when absent or unusable.
  static absl::StatusOr<Kvm> open(const std::string& device = "/dev/kvm");

  int fd() const { return fd_.get(); }
  const KvmCapabilities& capabilities() const { return capabilities_; }
  int check_extension(long extension) const;
  int vcpu_mmap_size() const { return vcpu_mmap_size_; }
  // CPUID entries KVM supports, handed to each vCPU.
  const kvm_cpuid2& supported_cpuid() const { return *supported_cpuid_; }

 private:
  Kvm() = default;
  FileDescriptor fd_;
  KvmCapabilities capabilities_;
  int vcpu_mmap_size_ = 0;
  std::shared_ptr<kvm_cpuid2> supported_cpuid_;
};

// A further guest-physical range backed by host memory (memory slot 1 and up).
struct MemorySlot {
  uint32_t slot = 0;
  uint64_t guest_address = 0;
  uint64_t size = 0;
  void* host_address = nullptr;
};

// A message-signalled interrupt route: raising `gsi` delivers `vector` to the local APIC whose
// ID is `apic_id` (fixed delivery, edge triggered).
struct MsiRoute {
  uint32_t gsi = 0;
  uint32_t apic_id = 0;
  uint32_t vector = 0;
};

class VirtualMachine {
 public:
  // Creates a VM whose guest-physical [0, memory_size) is backed by host memory at
  // `host_address`, with the in-kernel irqchip where available. `extra_slots` are registered
  // before the irqchip too (see kvm.cc for why the order matters).
  static absl::StatusOr<VirtualMachine> create(const Kvm& kvm, uint64_t memory_size,
                                               void* host_address,
                                               std::span<const MemorySlot> extra_slots = {});
  // A one-byte write to I/O `port` signals `eventfd` inside KVM, without an exit to user space.
  absl::Status add_port_eventfd(uint16_t port, int eventfd);
  // Replaces the VM's interrupt routing table with `routes` (the guest uses its local APIC
  // only, so the default PIC/IOAPIC routes are not kept). Needs the in-kernel irqchip.
  absl::Status set_msi_routes(std::span<const MsiRoute> routes);
  // A signal on `eventfd` raises `gsi` (KVM irqfd).
  absl::Status add_irqfd(uint32_t gsi, int eventfd);
  // Lets the guest run the given instructions (KVM_X86_DISABLE_EXITS_* bits) without exiting.
  // Must come before the first vCPU is created.
  absl::Status disable_exits(uint32_t exits);
  int fd() const { return fd_.get(); }

 private:
  explicit VirtualMachine(FileDescriptor fd) : fd_(std::move(fd)) {}
  FileDescriptor fd_;
};

class Vcpu {
 public:
  static absl::StatusOr<Vcpu> create(const Kvm& kvm, const VirtualMachine& vm, int index);
  Vcpu(Vcpu&& other) noexcept;
  Vcpu& operator=(Vcpu&&) = delete;
  Vcpu(const Vcpu&) = delete;
  ~Vcpu();

  int fd() const { return fd_.get(); }
  kvm_run* run_state() const { return run_; }

  absl::Status set_cpuid(const kvm_cpuid2& cpuid);
  absl::Status get_regs(kvm_regs& regs) const;
  absl::Status set_regs(const kvm_regs& regs);
  absl::Status get_sregs(kvm_sregs& sregs) const;
  absl::Status set_sregs(const kvm_sregs& sregs);
  absl::Status set_msr(uint32_t index, uint64_t value);
  // Sets the guest TSC offset so the guest reads the host's TSC (where supported).
  absl::Status set_tsc_offset(int64_t offset);
  absl::StatusOr<uint64_t> tsc_khz() const;
  // The vCPU's complete state, for snapshots (implemented in vcpu_state.cc). Call them only
  // while the vCPU is out of the guest, after a KVM_RUN that returned (so that an I/O exit has
  // been completed).
  absl::StatusOr<std::vector<kvm_cpuid_entry2>> get_cpuid() const;
  absl::Status set_cpuid_entries(std::span<const kvm_cpuid_entry2> entries);
  // The 4 KiB legacy KVM_GET_XSAVE region.
  absl::Status get_xsave(std::span<uint8_t, 4096> region) const;
  absl::Status set_xsave(std::span<const uint8_t, 4096> region);
  absl::Status get_xcrs(kvm_xcrs& xcrs) const;
  absl::Status set_xcrs(const kvm_xcrs& xcrs);
  absl::Status get_lapic(kvm_lapic_state& lapic) const;
  absl::Status set_lapic(const kvm_lapic_state& lapic);
  absl::Status get_vcpu_events(kvm_vcpu_events& events) const;
  absl::Status set_vcpu_events(const kvm_vcpu_events& events);
  absl::Status get_mp_state(kvm_mp_state& state) const;
  absl::Status set_mp_state(const kvm_mp_state& state);
  // One MSR; NOT_FOUND when KVM does not let this vCPU read it.
  absl::StatusOr<uint64_t> get_msr(uint32_t index) const;
  // Sets the guest TSC frequency (TSC scaling); fails where the host cannot scale.
  absl::Status set_tsc_khz(uint64_t khz);
  // Enters the guest until the next exit to user space. EINTR (a kick) is reported as CANCELLED.
  absl::Status run();
  // KVM's own cumulative counters of this vCPU (KVM_GET_STATS_FD, Linux 5.14+): "exits" counts
  // every exit from the guest into the host kernel, including the many KVM handles without
  // returning to Mortise (timer re-arm, EOI, halt); others break them down ("halt_exits",
  // "io_exits", "irq_exits", ...). UNIMPLEMENTED where the kernel has no stats interface.
  absl::StatusOr<std::map<std::string, uint64_t>> kernel_counters() const;

 private:
  Vcpu(FileDescriptor fd, kvm_run* run, size_t run_size)
      : fd_(std::move(fd)), run_(run), run_size_(run_size) {}
  FileDescriptor fd_;
  kvm_run* run_ = nullptr;
  size_t run_size_ = 0;
};

}  // namespace mortise
