// The one thread of mortised that watches every mortise-vmm child: it reads their control
// channels (events) and their pidfds (the end of the process) with epoll, and hands both to the
// VM each child belongs to. API threads never read from a child.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "control_channel.h"
#include "kvm.h"
#include "tenon/v1/vmm.pb.h"
#include "vmm_child.h"

namespace mortise {

class ChildMonitor {
 public:
  // Receives what one child says and when it ends; called on the monitor thread only.
  class Listener {
   public:
    virtual ~Listener() = default;
    virtual void on_event(const tenon::v1::VmmEvent& event) = 0;
    // The child sent something that is not a valid frame: it is killed, and on_exit follows.
    virtual void on_protocol_error(const std::string& message) = 0;
    // The child has ended and was reaped; every event it sent was delivered before. The last
    // call for this child: the monitor does not touch the child or the listener afterwards.
    virtual void on_exit(int wait_status) = 0;
  };

  static absl::StatusOr<std::unique_ptr<ChildMonitor>> create();
  ~ChildMonitor();

  // Watches `child` until it has ended. The child must outlive the watch (until on_exit).
  absl::Status watch(VmmChild& child, std::shared_ptr<Listener> listener);

 private:
  struct Watch {
    VmmChild* child;
    std::shared_ptr<Listener> listener;
    FrameReader reader;
    bool channel_open = true;
  };

  ChildMonitor(FileDescriptor epoll, FileDescriptor wake)
      : epoll_(std::move(epoll)), wake_(std::move(wake)) {}
  void loop();
  // Reads what the child has sent and delivers it: everything up to end of file once it has
  // ended, else a bounded amount, so that one chatty child cannot starve the others (epoll is
  // level-triggered and brings us back for the rest).
  void drain(Watch& watch, bool until_end);
  void finish(uint64_t id, Watch& watch);

  FileDescriptor epoll_;
  FileDescriptor wake_;  // eventfd: tells the loop to end
  std::thread thread_;
  std::mutex mutex_;
  std::map<uint64_t, std::unique_ptr<Watch>> watches_;
  uint64_t next_id_ = 1;
};

}  // namespace mortise
