// Per-VM console buffer; see console_ring.h.
#include "console_ring.h"

#include <algorithm>
#include <cstdint>

namespace mortise {

void ConsoleRing::append(uint64_t offset, std::string_view data, absl::Time received) {
  // Offsets come from mortise-vmm, which a guest may have taken over: no wrap-around.
  if (offset > UINT64_MAX - data.size()) return;
  if (offset + data.size() <= end_offset_) return;  // all of it is held already
  if (offset < end_offset_) {
    data.remove_prefix(end_offset_ - offset);
    offset = end_offset_;
  } else if (offset > end_offset_) {
    buffer_.clear();
    arrivals_.clear();
    end_offset_ = offset;
  }
  arrivals_.push_back({offset, received});
  buffer_.append(data);
  end_offset_ += data.size();
  // Amortized: cut back to capacity only once the buffer has grown to twice that.
  if (buffer_.size() >= 2 * capacity_) {
    buffer_.erase(0, buffer_.size() - capacity_);
    const uint64_t begin = begin_offset();
    while (arrivals_.size() > 1 && arrivals_[1].offset <= begin) arrivals_.pop_front();
  }
}

ConsoleRing::Chunk ConsoleRing::read(uint64_t offset, size_t max_bytes) const {
  Chunk chunk;
  const uint64_t start = std::max(offset, begin_offset());
  if (start >= end_offset_) return chunk;
  const uint64_t end = std::min<uint64_t>(end_offset_, start + max_bytes);
  chunk.offset = start;
  chunk.data = buffer_.substr(start - begin_offset(), end - start);
  chunk.received = arrivals_.front().time;
  for (const Arrival& arrival : arrivals_) {
    if (arrival.offset > start) break;
    chunk.received = arrival.time;
  }
  return chunk;
}

}  // namespace mortise
