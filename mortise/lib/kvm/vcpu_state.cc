// vCPU state for snapshots: the get/set pairs of kvm.h's Vcpu beyond what booting needs.
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kvm.h"

namespace mortise {
namespace {

absl::Status errno_status(const char* what) {
  const int error = errno;
  return absl::ErrnoToStatus(error, absl::StrCat(what, ": ", std::strerror(error)));
}

// Debian 12's linux/kvm.h gives C++ a different size than C for structs that end in a flexible
// array (kvm_cpuid2, kvm_msrs, kvm_xsave), so the header's ioctl numbers encode the wrong size;
// these encode the kernel's.
constexpr size_t kListHeaderSize = 2 * sizeof(uint32_t);
constexpr unsigned long kGetCpuid2 = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x91, kListHeaderSize);
constexpr unsigned long kSetCpuid2 = _IOC(_IOC_WRITE, KVMIO, 0x90, kListHeaderSize);
constexpr unsigned long kGetMsrs = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x88, kListHeaderSize);
constexpr size_t kXsaveRegionSize = 4096;
constexpr unsigned long kGetXsave = _IOC(_IOC_READ, KVMIO, 0xa4, kXsaveRegionSize);
constexpr unsigned long kSetXsave = _IOC(_IOC_WRITE, KVMIO, 0xa5, kXsaveRegionSize);
constexpr uint32_t kMaxCpuidEntries = 256;

// The structs whose C++ size matches the kernel's, so the header's numbers are right.
static_assert(sizeof(kvm_xcrs) == 392 && sizeof(kvm_lapic_state) == 1024 &&
              sizeof(kvm_vcpu_events) == 64 && sizeof(kvm_mp_state) == 4 &&
              sizeof(kvm_cpuid_entry2) == 40 && sizeof(kvm_msr_entry) == 16);

}  // namespace

absl::StatusOr<std::vector<kvm_cpuid_entry2>> Vcpu::get_cpuid() const {
  std::vector<uint8_t> buffer(kListHeaderSize + kMaxCpuidEntries * sizeof(kvm_cpuid_entry2));
  const uint32_t capacity = kMaxCpuidEntries;
  std::memcpy(buffer.data(), &capacity, sizeof(capacity));
  if (ioctl(fd(), kGetCpuid2, buffer.data()) < 0) return errno_status("KVM_GET_CPUID2");
  uint32_t count = 0;
  std::memcpy(&count, buffer.data(), sizeof(count));
  if (count > kMaxCpuidEntries) return absl::InternalError("KVM_GET_CPUID2 returned too many");
  std::vector<kvm_cpuid_entry2> entries(count);
  std::memcpy(entries.data(), buffer.data() + kListHeaderSize, count * sizeof(kvm_cpuid_entry2));
  return entries;
}

absl::Status Vcpu::set_cpuid_entries(std::span<const kvm_cpuid_entry2> entries) {
  if (entries.size() > kMaxCpuidEntries) {
    return absl::InvalidArgumentError(absl::StrCat(entries.size(), " CPUID entries are too many"));
  }
  std::vector<uint8_t> buffer(kListHeaderSize + entries.size() * sizeof(kvm_cpuid_entry2));
  const auto count = static_cast<uint32_t>(entries.size());
  std::memcpy(buffer.data(), &count, sizeof(count));
  std::memcpy(buffer.data() + kListHeaderSize, entries.data(),
              entries.size() * sizeof(kvm_cpuid_entry2));
  if (ioctl(fd(), kSetCpuid2, buffer.data()) < 0) return errno_status("KVM_SET_CPUID2");
  return absl::OkStatus();
}

absl::Status Vcpu::get_xsave(std::span<uint8_t, 4096> region) const {
  if (ioctl(fd(), kGetXsave, region.data()) < 0) return errno_status("KVM_GET_XSAVE");
  return absl::OkStatus();
}

absl::Status Vcpu::set_xsave(std::span<const uint8_t, 4096> region) {
  if (ioctl(fd(), kSetXsave, region.data()) < 0) return errno_status("KVM_SET_XSAVE");
  return absl::OkStatus();
}

absl::Status Vcpu::get_xcrs(kvm_xcrs& xcrs) const {
  if (ioctl(fd(), KVM_GET_XCRS, &xcrs) < 0) return errno_status("KVM_GET_XCRS");
  return absl::OkStatus();
}

absl::Status Vcpu::set_xcrs(const kvm_xcrs& xcrs) {
  if (ioctl(fd(), KVM_SET_XCRS, &xcrs) < 0) return errno_status("KVM_SET_XCRS");
  return absl::OkStatus();
}

absl::Status Vcpu::get_lapic(kvm_lapic_state& lapic) const {
  if (ioctl(fd(), KVM_GET_LAPIC, &lapic) < 0) return errno_status("KVM_GET_LAPIC");
  return absl::OkStatus();
}

absl::Status Vcpu::set_lapic(const kvm_lapic_state& lapic) {
  if (ioctl(fd(), KVM_SET_LAPIC, &lapic) < 0) return errno_status("KVM_SET_LAPIC");
  return absl::OkStatus();
}

absl::Status Vcpu::get_vcpu_events(kvm_vcpu_events& events) const {
  if (ioctl(fd(), KVM_GET_VCPU_EVENTS, &events) < 0) return errno_status("KVM_GET_VCPU_EVENTS");
  return absl::OkStatus();
}

absl::Status Vcpu::set_vcpu_events(const kvm_vcpu_events& events) {
  if (ioctl(fd(), KVM_SET_VCPU_EVENTS, &events) < 0) return errno_status("KVM_SET_VCPU_EVENTS");
  return absl::OkStatus();
}

absl::Status Vcpu::get_mp_state(kvm_mp_state& state) const {
  if (ioctl(fd(), KVM_GET_MP_STATE, &state) < 0) return errno_status("KVM_GET_MP_STATE");
  return absl::OkStatus();
}

absl::Status Vcpu::set_mp_state(const kvm_mp_state& state) {
  if (ioctl(fd(), KVM_SET_MP_STATE, &state) < 0) return errno_status("KVM_SET_MP_STATE");
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Vcpu::get_msr(uint32_t index) const {
  struct {
    uint32_t count;
    uint32_t padding;
    kvm_msr_entry entry;
  } request{1, 0, {}};
  request.entry.index = index;
  const int read = ioctl(fd(), kGetMsrs, &request);
  if (read < 0) return errno_status("KVM_GET_MSRS");
  if (read != 1) return absl::NotFoundError(absl::StrCat("KVM cannot read MSR ", index));
  return request.entry.data;
}

absl::Status Vcpu::set_tsc_khz(uint64_t khz) {
  if (ioctl(fd(), KVM_SET_TSC_KHZ, static_cast<unsigned long>(khz)) < 0) {
    return errno_status("KVM_SET_TSC_KHZ");
  }
  return absl::OkStatus();
}

}  // namespace mortise
