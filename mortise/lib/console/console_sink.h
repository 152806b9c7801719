// Where an instance's console bytes go: a file descriptor (the `mortise run` terminal) or a
// bounded in-memory buffer (tests, the daemon's console stream).
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>

namespace mortise {

class ConsoleSink {
 public:
  virtual ~ConsoleSink() = default;
  virtual void write(std::span<const uint8_t> bytes) = 0;
};

// Writes to a file descriptor it does not own; short writes and EINTR are retried, a broken
// descriptor drops output rather than stopping the guest.
class FileConsole final : public ConsoleSink {
 public:
  explicit FileConsole(int fd) : fd_(fd) {}
  void write(std::span<const uint8_t> bytes) override;

 private:
  int fd_;
};

// Keeps the last `capacity` bytes written.
class BufferConsole final : public ConsoleSink {
 public:
  explicit BufferConsole(size_t capacity = 1 << 20) : capacity_(capacity) {}
  void write(std::span<const uint8_t> bytes) override;
  std::string contents() const;

 private:
  size_t capacity_;
  mutable std::mutex mutex_;
  std::string buffer_;
};

}  // namespace mortise
