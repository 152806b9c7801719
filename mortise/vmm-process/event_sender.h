// The one writer of mortise-vmm's control channel: events from every thread are queued and sent
// by a thread of its own, so that the vCPU thread (console output) and the control thread never
// wait for the socket.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <string>
#include <thread>

#include "console_sink.h"
#include "tenon/v1/vmm.pb.h"

namespace mortise {

class EventSender final : public ConsoleSink {
 public:
  // `fd` is the control socket, not owned. Console bytes are buffered up to
  // `console_buffer_bytes` while the socket is busy; beyond that they are dropped.
  EventSender(int fd, size_t console_buffer_bytes);
  ~EventSender() override;
  EventSender(const EventSender&) = delete;
  EventSender& operator=(const EventSender&) = delete;

  void start();
  void send(tenon::v1::VmmEvent event);
  // ConsoleSink, called on the vCPU thread: copies the bytes and returns without touching the
  // socket. Dropped bytes still count toward the offset, so mortised sees the gap.
  void write(std::span<const uint8_t> bytes) override;
  uint64_t console_bytes() const;
  // Makes the guest's console output continue at `offset` (a restored instance); call before the
  // guest runs.
  void set_console_offset(uint64_t offset);
  // Waits until everything queued so far is written; false when `timeout` passed first or the
  // channel broke.
  bool flush(std::chrono::milliseconds timeout);

 private:
  void loop();

  const int fd_;
  const size_t console_capacity_;
  mutable std::mutex mutex_;
  std::condition_variable work_available_;
  std::condition_variable drained_;
  std::deque<tenon::v1::VmmEvent> events_;
  std::string console_pending_;
  uint64_t console_pending_offset_ = 0;  // offset of console_pending_[0] in the guest's output
  uint64_t console_total_ = 0;           // bytes the guest wrote, dropped ones included
  bool console_overrun_ = false;         // bytes were dropped since console_pending_ started
  bool writing_ = false;                 // a batch is being written
  bool stopping_ = false;
  bool broken_ = false;
  std::thread thread_;
};

}  // namespace mortise
