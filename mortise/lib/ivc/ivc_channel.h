// Inter-VM channels on the host: the resources of one channel (a shared region in a memfd and
// two doorbell eventfds), and their attachment to one endpoint VM (a memory slot in the IVC
// window, an ioeventfd on the doorbell port, an MSI route and an irqfd). The two endpoints of a
// channel usually live in two mortise-vmm processes: whoever pairs them (mortised, or a test)
// creates the IvcChannel and hands each process the descriptors of its side. Only those two
// processes ever map the region. The guest-visible layout is in tenon/abi.h.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kvm.h"
#include "tenon/abi.h"

namespace mortise {

// 1-15 characters of [a-z0-9-] (they must fit the guest's 16-byte name field).
absl::Status check_channel_name(const std::string& name);

// What one endpoint needs, as borrowed descriptors (the owner keeps them open until the
// endpoint's VM exists; KVM and the mapping hold their own references afterwards).
struct IvcEndpointConfig {
  std::string name;
  uint32_t side = 0;     // 0 or 1: the ring this endpoint writes
  int region_fd = -1;    // memfd of kIvcRegionBytes
  int ring_fd = -1;      // eventfd this side signals to ring the peer (its ioeventfd)
  int doorbell_fd = -1;  // eventfd the peer signals to ring this side (its irqfd)
};

class IvcChannel {
 public:
  // A zeroed region and two doorbells.
  static absl::StatusOr<IvcChannel> create(const std::string& name);
  const std::string& name() const { return name_; }
  // Side 0 or 1; the descriptors stay owned by the channel.
  IvcEndpointConfig endpoint(uint32_t side) const;

 private:
  IvcChannel(std::string name, FileDescriptor region, FileDescriptor ring0, FileDescriptor ring1)
      : name_(std::move(name)),
        region_(std::move(region)),
        rings_{std::move(ring0), std::move(ring1)} {}
  std::string name_;
  FileDescriptor region_;
  FileDescriptor rings_[2];  // rings_[s]: signalled by side s, raises the interrupt in side 1-s
};

// One endpoint mapped into this process for one VM, at channel position `index`.
class IvcAttachment {
 public:
  // Maps the region (checking it is a memfd of exactly kIvcRegionBytes) and keeps duplicates
  // of the doorbell descriptors until wire_doorbells.
  static absl::StatusOr<IvcAttachment> map(const IvcEndpointConfig& config, uint32_t index);
  IvcAttachment(IvcAttachment&& other) noexcept;
  IvcAttachment& operator=(IvcAttachment&&) = delete;
  IvcAttachment(const IvcAttachment&) = delete;
  ~IvcAttachment();

  // Memory slot 1 + index at kIvcWindowBase + index * kIvcChannelStride.
  MemorySlot memory_slot() const;
  // The boot info entry the guest sees.
  tenon::abi::IvcChannelInfo info() const;
  // The host view of the shared region (tests and diagnostics read it; Mortise never trusts it).
  tenon::abi::IvcRegion* region() const { return region_; }
  uint32_t index() const { return index_; }

 private:
  friend absl::Status wire_doorbells(const Kvm& kvm, VirtualMachine& vm,
                                     std::span<const IvcAttachment> attachments);
  IvcAttachment() = default;
  std::string name_;
  uint32_t side_ = 0;
  uint32_t index_ = 0;
  tenon::abi::IvcRegion* region_ = nullptr;
  FileDescriptor ring_;
  FileDescriptor doorbell_;
};

// Wires every attachment's doorbells into `vm` (created with their memory slots): the doorbell
// port becomes an ioeventfd, the doorbell eventfd an irqfd raising the channel's vector in the
// guest's local APIC. FAILED_PRECONDITION without the in-kernel irqchip.
absl::Status wire_doorbells(const Kvm& kvm, VirtualMachine& vm,
                            std::span<const IvcAttachment> attachments);

}  // namespace mortise
