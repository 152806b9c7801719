// Guest memory backed by an anonymous private mapping or a shared memory file; see
// guest_memory.h.
#include "guest_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace mortise {

absl::StatusOr<GuestMemory> GuestMemory::create(uint64_t size) {
  if (size == 0 || size % 4096 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("guest memory size must be a non-zero multiple of 4096, got ", size));
  }
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot map ", size, " bytes of guest memory: ", std::strerror(errno)));
  }
  return GuestMemory(static_cast<uint8_t*>(base), size);
}

absl::StatusOr<GuestMemory> GuestMemory::create_shared(uint64_t size) {
  if (size == 0 || size % 4096 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("guest memory size must be a non-zero multiple of 4096, got ", size));
  }
  const int fd = memfd_create("mortise-guest-memory", MFD_CLOEXEC);
  if (fd < 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot create a guest memory file: ", std::strerror(errno)));
  }
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    const int error = errno;
    close(fd);
    return absl::ResourceExhaustedError(absl::StrCat("cannot size the guest memory file to ", size,
                                                     " bytes: ", std::strerror(error)));
  }
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    const int error = errno;
    close(fd);
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot map ", size, " bytes of guest memory: ", std::strerror(error)));
  }
  return GuestMemory(static_cast<uint8_t*>(base), size, fd);
}

void GuestMemory::release() {
  if (base_ != nullptr) munmap(base_, size_);
  if (shared_fd_ >= 0) close(shared_fd_);
}

GuestMemory::GuestMemory(GuestMemory&& other) noexcept
    : base_(std::exchange(other.base_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      shared_fd_(std::exchange(other.shared_fd_, -1)) {}

GuestMemory& GuestMemory::operator=(GuestMemory&& other) noexcept {
  if (this != &other) {
    release();
    base_ = std::exchange(other.base_, nullptr);
    size_ = std::exchange(other.size_, 0);
    shared_fd_ = std::exchange(other.shared_fd_, -1);
  }
  return *this;
}

GuestMemory::~GuestMemory() { release(); }

absl::StatusOr<std::span<uint8_t>> GuestMemory::checked(uint64_t address, uint64_t length) const {
  if (address > size_ || length > size_ - address) {
    return absl::OutOfRangeError(absl::StrFormat(
        "guest range [%#x, +%#x) lies outside guest memory of %#x bytes", address, length, size_));
  }
  return std::span<uint8_t>(base_ + address, length);
}

}  // namespace mortise
