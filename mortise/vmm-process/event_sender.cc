// The control channel writer of mortise-vmm; see event_sender.h.
#include "event_sender.h"

#include <algorithm>
#include <vector>

#include "control_channel.h"

namespace mortise {
namespace {

// Console chunks stay well under the frame limit and small enough to interleave with replies.
constexpr size_t kMaxConsoleChunkBytes = 16 << 10;

}  // namespace

EventSender::EventSender(int fd, size_t console_buffer_bytes)
    : fd_(fd), console_capacity_(console_buffer_bytes) {}

EventSender::~EventSender() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_available_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void EventSender::start() {
  thread_ = std::thread([this] { loop(); });
}

void EventSender::send(tenon::v1::VmmEvent event) {
  {
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(event));
  }
  work_available_.notify_one();
}

void EventSender::set_console_offset(uint64_t offset) {
  std::lock_guard lock(mutex_);
  console_total_ = offset;
  console_pending_offset_ = offset;
}

void EventSender::write(std::span<const uint8_t> bytes) {
  {
    std::lock_guard lock(mutex_);
    const uint64_t offset = console_total_;
    console_total_ += bytes.size();
    if (console_pending_.empty()) {
      console_overrun_ = false;
      console_pending_offset_ = offset;
    }
    if (console_overrun_ || console_pending_.size() + bytes.size() > console_capacity_) {
      // Dropped. The pending bytes must stay one contiguous run from their offset, so nothing
      // joins them until they are sent; the next run starts after the gap.
      console_overrun_ = true;
    } else {
      console_pending_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }
  }
  work_available_.notify_one();
}

uint64_t EventSender::console_bytes() const {
  std::lock_guard lock(mutex_);
  return console_total_;
}

bool EventSender::flush(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  const bool drained = drained_.wait_for(lock, timeout, [&] {
    return broken_ || (!writing_ && events_.empty() && console_pending_.empty());
  });
  return drained && !broken_;
}

void EventSender::loop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    work_available_.wait(
        lock, [&] { return stopping_ || !events_.empty() || !console_pending_.empty(); });
    if (events_.empty() && console_pending_.empty()) return;  // stopping, nothing left
    // Console bytes first: anything the guest wrote before an event was queued goes out before
    // that event (the exit above all).
    std::vector<tenon::v1::VmmEvent> batch;
    for (size_t done = 0; done < console_pending_.size(); done += kMaxConsoleChunkBytes) {
      tenon::v1::VmmEvent event;
      auto* chunk = event.mutable_console();
      chunk->set_offset(console_pending_offset_ + done);
      chunk->set_data(console_pending_.substr(done, kMaxConsoleChunkBytes));
      batch.push_back(std::move(event));
    }
    console_pending_.clear();
    while (!events_.empty()) {
      batch.push_back(std::move(events_.front()));
      events_.pop_front();
    }
    writing_ = true;
    lock.unlock();
    bool failed = false;
    for (const tenon::v1::VmmEvent& event : batch) {
      if (failed) break;
      if (absl::Status status = send_message(fd_, event); !status.ok()) {
        // mortised has gone; the control thread sees end of file and stops the guest.
        failed = true;
      }
    }
    lock.lock();
    writing_ = false;
    if (failed) broken_ = true;
    if (broken_) {
      events_.clear();
      console_pending_.clear();
    }
    if (events_.empty() && console_pending_.empty()) drained_.notify_all();
  }
}

}  // namespace mortise
