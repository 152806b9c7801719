// The messages waiting to be written on one agent stream, bounded in bytes: an agent that stops
// reading (or reads slower than it is sent images) must not make the controller hold an
// unbounded backlog. The stream's owner ends the stream when a push overflows; the agent
// reconnects and resyncs by version.
#pragma once

#include <cstddef>
#include <deque>
#include <utility>

#include "tenon/v1/agent.pb.h"

namespace tenon::controller {

// 64 MiB: many image transfers' worth of chunks, far below what a thousand streams may hold.
inline constexpr size_t kMaxQueuedBytesPerStream = 64u << 20;

class OutboundQueue {
 public:
  explicit OutboundQueue(size_t max_bytes = kMaxQueuedBytesPerStream) : max_bytes_(max_bytes) {}

  // False (and nothing queued) when the message would take the queue past its bound.
  bool push(tenon::v1::ControllerMessage message) {
    const size_t size = message.ByteSizeLong();
    if (bytes_ + size > max_bytes_ && !messages_.empty()) return false;
    bytes_ += size;
    messages_.push_back(std::move(message));
    return true;
  }
  bool empty() const { return messages_.empty(); }
  size_t bytes() const { return bytes_; }
  tenon::v1::ControllerMessage& front() { return messages_.front(); }
  void pop() {
    bytes_ -= messages_.front().ByteSizeLong();
    messages_.pop_front();
  }
  // Drops everything but the front, which may be in the middle of being written.
  void drop_waiting() {
    while (messages_.size() > 1) {
      bytes_ -= messages_.back().ByteSizeLong();
      messages_.pop_back();
    }
  }
  void clear() {
    messages_.clear();
    bytes_ = 0;
  }

 private:
  size_t max_bytes_;
  size_t bytes_ = 0;
  std::deque<tenon::v1::ControllerMessage> messages_;
};

}  // namespace tenon::controller
