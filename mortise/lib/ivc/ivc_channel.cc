// Inter-VM channels on the host; see ivc_channel.h.
#include "ivc_channel.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace mortise {
namespace {

namespace abi = tenon::abi;

// Interrupt routes of the doorbells: above the 24 legacy GSIs, one per channel.
constexpr uint32_t kFirstDoorbellGsi = 32;

absl::Status errno_status(const std::string& what) {
  const int error = errno;
  return absl::ErrnoToStatus(error, absl::StrCat(what, ": ", std::strerror(error)));
}

absl::StatusOr<FileDescriptor> duplicate(int fd, const char* what) {
  FileDescriptor copy(fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!copy.valid())
    return errno_status(absl::StrCat("cannot duplicate the ", what, " descriptor"));
  return copy;
}

}  // namespace

absl::Status check_channel_name(const std::string& name) {
  if (name.empty() || name.size() >= abi::kIvcChannelNameMax) {
    return absl::InvalidArgumentError(absl::StrCat("channel name '", name, "' must have 1 to ",
                                                   abi::kIvcChannelNameMax - 1, " characters"));
  }
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
      return absl::InvalidArgumentError(
          absl::StrCat("channel name '", name, "' may only hold a-z, 0-9 and '-'"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<IvcChannel> IvcChannel::create(const std::string& name) {
  if (absl::Status status = check_channel_name(name); !status.ok()) return status;
  FileDescriptor region(
      memfd_create(absl::StrCat("ivc-", name).c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!region.valid()) return errno_status("memfd_create for a channel region");
  if (ftruncate(region.get(), static_cast<off_t>(abi::kIvcRegionBytes)) != 0) {
    return errno_status("sizing a channel region");
  }
  // The size is part of the contract with both endpoints: nobody may change it afterwards.
  if (fcntl(region.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return errno_status("sealing a channel region");
  }
  FileDescriptor ring0(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  FileDescriptor ring1(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!ring0.valid() || !ring1.valid()) return errno_status("eventfd for a channel doorbell");
  return IvcChannel(name, std::move(region), std::move(ring0), std::move(ring1));
}

IvcEndpointConfig IvcChannel::endpoint(uint32_t side) const {
  side &= 1;
  return {name_, side, region_.get(), rings_[side].get(), rings_[side ^ 1].get()};
}

absl::StatusOr<IvcAttachment> IvcAttachment::map(const IvcEndpointConfig& config, uint32_t index) {
  if (absl::Status status = check_channel_name(config.name); !status.ok()) return status;
  if (index >= abi::kIvcMaxChannels) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", abi::kIvcMaxChannels, " channels per instance"));
  }
  if (config.side > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("channel ", config.name, ": side must be 0 or 1, got ", config.side));
  }
  struct stat status {};
  if (fstat(config.region_fd, &status) != 0) {
    return errno_status(absl::StrCat("channel ", config.name, ": region descriptor"));
  }
  if (!S_ISREG(status.st_mode) || static_cast<uint64_t>(status.st_size) != abi::kIvcRegionBytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "channel %s: the region must be a memfd of %d bytes", config.name, abi::kIvcRegionBytes));
  }
  IvcAttachment attachment;
  attachment.name_ = config.name;
  attachment.side_ = config.side;
  attachment.index_ = index;
  absl::StatusOr<FileDescriptor> ring = duplicate(config.ring_fd, "doorbell");
  if (!ring.ok()) return ring.status();
  absl::StatusOr<FileDescriptor> doorbell = duplicate(config.doorbell_fd, "doorbell");
  if (!doorbell.ok()) return doorbell.status();
  attachment.ring_ = std::move(*ring);
  attachment.doorbell_ = std::move(*doorbell);
  void* mapped =
      mmap(nullptr, abi::kIvcRegionBytes, PROT_READ | PROT_WRITE, MAP_SHARED, config.region_fd, 0);
  if (mapped == MAP_FAILED) {
    return errno_status(absl::StrCat("channel ", config.name, ": mapping the region"));
  }
  attachment.region_ = static_cast<abi::IvcRegion*>(mapped);
  return attachment;
}

IvcAttachment::IvcAttachment(IvcAttachment&& other) noexcept
    : name_(std::move(other.name_)),
      side_(other.side_),
      index_(other.index_),
      region_(std::exchange(other.region_, nullptr)),
      ring_(std::move(other.ring_)),
      doorbell_(std::move(other.doorbell_)) {}

IvcAttachment::~IvcAttachment() {
  if (region_ != nullptr) munmap(region_, abi::kIvcRegionBytes);
}

MemorySlot IvcAttachment::memory_slot() const {
  return {1 + index_, abi::kIvcWindowBase + index_ * abi::kIvcChannelStride, abi::kIvcRegionBytes,
          region_};
}

abi::IvcChannelInfo IvcAttachment::info() const {
  abi::IvcChannelInfo info{};
  std::memcpy(info.name, name_.data(), std::min(name_.size(), sizeof(info.name)));
  info.region_address = abi::kIvcWindowBase + index_ * abi::kIvcChannelStride;
  info.region_size = abi::kIvcRegionBytes;
  info.side = side_;
  info.doorbell_port = static_cast<uint16_t>(abi::kIvcDoorbellPortBase + index_);
  info.doorbell_vector = static_cast<uint16_t>(abi::kIvcFirstDoorbellVector + index_);
  return info;
}

absl::Status wire_doorbells(const Kvm& kvm, VirtualMachine& vm,
                            std::span<const IvcAttachment> attachments) {
  if (attachments.empty()) return absl::OkStatus();
  if (!kvm.capabilities().irqchip) {
    return absl::FailedPreconditionError(
        "inter-VM channels need KVM's in-kernel irqchip, which this host lacks");
  }
  std::vector<MsiRoute> routes;
  for (const IvcAttachment& attachment : attachments) {
    routes.push_back({kFirstDoorbellGsi + attachment.index_, /*apic_id=*/0,
                      abi::kIvcFirstDoorbellVector + attachment.index_});
  }
  if (absl::Status status = vm.set_msi_routes(routes); !status.ok()) return status;
  for (const IvcAttachment& attachment : attachments) {
    const uint16_t port = static_cast<uint16_t>(abi::kIvcDoorbellPortBase + attachment.index_);
    if (absl::Status status = vm.add_port_eventfd(port, attachment.ring_.get()); !status.ok()) {
      return status;
    }
    if (absl::Status status =
            vm.add_irqfd(kFirstDoorbellGsi + attachment.index_, attachment.doorbell_.get());
        !status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

}  // namespace mortise
