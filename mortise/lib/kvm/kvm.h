// Thin RAII layer over the Linux KVM API: the system handle, one VM and its vCPUs. Everything
// returns absl::Status; no other Mortise code issues KVM ioctls.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <memory>
#include <string>

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

class VirtualMachine {
 public:
  // Creates a VM whose guest-physical [0, memory_size) is backed by host memory at
  // `host_address`, with the in-kernel irqchip where available.
  static absl::StatusOr<VirtualMachine> create(const Kvm& kvm, uint64_t memory_size,
                                               void* host_address);
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
  // Enters the guest until the next exit to user space. EINTR (a kick) is reported as CANCELLED.
  absl::Status run();

 private:
  Vcpu(FileDescriptor fd, kvm_run* run, size_t run_size)
      : fd_(std::move(fd)), run_(run), run_size_(run_size) {}
  FileDescriptor fd_;
  kvm_run* run_ = nullptr;
  size_t run_size_ = 0;
};

}  // namespace mortise
