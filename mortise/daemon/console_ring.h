// The console output mortised keeps per VM: the newest `capacity` bytes, addressed by their
// offset in everything the guest has written since it was created (ConsoleChunk.offset).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>

#include "absl/time/time.h"

namespace mortise {

class ConsoleRing {
 public:
  explicit ConsoleRing(size_t capacity) : capacity_(capacity) {}

  // Adds bytes that start at `offset`. Bytes the ring already has are skipped. A jump past
  // end_offset() means bytes were dropped upstream (mortise-vmm's buffer overran): the ring
  // then starts afresh at `offset`, so it always holds one contiguous run and a reader sees the
  // gap as a jump in offsets.
  void append(uint64_t offset, std::string_view data, absl::Time received);

  uint64_t begin_offset() const { return end_offset_ - buffer_.size(); }  // oldest byte held
  uint64_t end_offset() const { return end_offset_; }  // one past the newest byte written

  struct Chunk {
    uint64_t offset = 0;
    std::string data;
    absl::Time received;  // when its first byte arrived
  };
  // Up to `max_bytes` from `offset` on, or from the oldest byte held when `offset` is older.
  // Empty when nothing is held from `offset` on.
  Chunk read(uint64_t offset, size_t max_bytes) const;

 private:
  size_t capacity_;
  std::string buffer_;  // holds [end_offset_ - size, end_offset_)
  uint64_t end_offset_ = 0;
  struct Arrival {
    uint64_t offset;
    absl::Time time;
  };
  std::deque<Arrival> arrivals_;  // where each received run begins; trimmed with the buffer
};

}  // namespace mortise
