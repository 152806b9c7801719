// Guest-physical memory of one instance, and the single overflow-checked accessor through which
// every guest-supplied address and length is turned into host memory.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mortise {

// How the guest may access a range of its memory; combined as bits.
enum class GuestPermission : uint8_t { kRead = 1, kWrite = 2, kExecute = 4 };

class GuestMemory {
 public:
  // Maps `size` bytes of zeroed anonymous memory (a multiple of 4 KiB).
  static absl::StatusOr<GuestMemory> create(uint64_t size);
  // The same, backed by a memory file (memfd) that another process - the QEMU engine's QEMU -
  // maps as the guest's RAM, so that both see every write. shared_fd() is the file.
  static absl::StatusOr<GuestMemory> create_shared(uint64_t size);

  GuestMemory(GuestMemory&& other) noexcept;
  GuestMemory& operator=(GuestMemory&& other) noexcept;
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;
  ~GuestMemory();

  uint64_t size() const { return size_; }
  uint8_t* host_base() const { return base_; }
  int shared_fd() const { return shared_fd_; }  // -1 unless made by create_shared

  // The host view of guest-physical [address, address + length), or OUT_OF_RANGE when any byte
  // of it lies outside guest memory (including when address + length wraps).
  absl::StatusOr<std::span<uint8_t>> checked(uint64_t address, uint64_t length) const;

  // Copies a trivially copyable object out of / into guest memory through checked().
  template <typename T>
  absl::StatusOr<T> read(uint64_t address) const {
    static_assert(std::is_trivially_copyable_v<T>);
    absl::StatusOr<std::span<uint8_t>> bytes = checked(address, sizeof(T));
    if (!bytes.ok()) return bytes.status();
    T value;
    std::memcpy(&value, bytes->data(), sizeof(T));
    return value;
  }
  template <typename T>
  absl::Status write(uint64_t address, const T& value) const {
    static_assert(std::is_trivially_copyable_v<T>);
    absl::StatusOr<std::span<uint8_t>> bytes = checked(address, sizeof(T));
    if (!bytes.ok()) return bytes.status();
    std::memcpy(bytes->data(), &value, sizeof(T));
    return absl::OkStatus();
  }

 private:
  GuestMemory(uint8_t* base, uint64_t size, int shared_fd = -1)
      : base_(base), size_(size), shared_fd_(shared_fd) {}
  void release();
  uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  int shared_fd_ = -1;
};

}  // namespace mortise
