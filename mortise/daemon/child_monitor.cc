// The event loop over all mortise-vmm children; see child_monitor.h.
#include "child_monitor.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <vector>

#include "absl/strings/str_cat.h"

namespace mortise {
namespace {

// The epoll tag of an entry: the watch id, and whether it is the channel or the pidfd.
constexpr uint64_t kPidfdBit = 1;
constexpr uint64_t kWakeTag = ~0ull;

}  // namespace

absl::StatusOr<std::unique_ptr<ChildMonitor>> ChildMonitor::create() {
  FileDescriptor epoll(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll.valid()) {
    return absl::ResourceExhaustedError(absl::StrCat("epoll_create1: ", std::strerror(errno)));
  }
  FileDescriptor wake(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake.valid()) {
    return absl::ResourceExhaustedError(absl::StrCat("eventfd: ", std::strerror(errno)));
  }
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = kWakeTag;
  if (epoll_ctl(epoll.get(), EPOLL_CTL_ADD, wake.get(), &event) != 0) {
    return absl::InternalError(absl::StrCat("epoll_ctl: ", std::strerror(errno)));
  }
  std::unique_ptr<ChildMonitor> monitor(new ChildMonitor(std::move(epoll), std::move(wake)));
  monitor->thread_ = std::thread([raw = monitor.get()] { raw->loop(); });
  return monitor;
}

ChildMonitor::~ChildMonitor() {
  const uint64_t one = 1;
  (void)::write(wake_.get(), &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
}

absl::Status ChildMonitor::watch(VmmChild& child, std::shared_ptr<Listener> listener) {
  std::lock_guard lock(mutex_);
  const uint64_t id = next_id_++;
  auto entry = std::make_unique<Watch>();
  entry->child = &child;
  entry->listener = std::move(listener);
  watches_[id] = std::move(entry);
  epoll_event channel{};
  channel.events = EPOLLIN | EPOLLRDHUP;
  channel.data.u64 = id << 1;
  epoll_event pidfd{};
  pidfd.events = EPOLLIN;
  pidfd.data.u64 = (id << 1) | kPidfdBit;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, child.control_fd(), &channel) != 0 ||
      epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, child.pidfd(), &pidfd) != 0) {
    const int error = errno;
    epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, child.control_fd(), nullptr);
    epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, child.pidfd(), nullptr);
    watches_.erase(id);
    return absl::ResourceExhaustedError(absl::StrCat("epoll_ctl: ", std::strerror(error)));
  }
  return absl::OkStatus();
}

void ChildMonitor::drain(Watch& watch, bool until_end) {
  constexpr int kReadsPerWakeup = 64;
  for (int reads = 0; watch.channel_open && (until_end || reads < kReadsPerWakeup); ++reads) {
    absl::StatusOr<ReadOutcome> outcome =
        read_into(watch.child->control_fd(), watch.reader, /*nonblocking=*/true);
    if (outcome.ok() && *outcome == ReadOutcome::kWouldBlock) break;
    if (!outcome.ok() || *outcome == ReadOutcome::kEndOfFile) {
      // The child closed its end (it is exiting); its pidfd reports the end.
      watch.channel_open = false;
      epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, watch.child->control_fd(), nullptr);
    }
    for (;;) {
      tenon::v1::VmmEvent event;
      absl::StatusOr<bool> parsed = watch.reader.next_message(event);
      if (!parsed.ok()) {
        // A child that breaks the framing may have been taken over by its guest: stop
        // listening to it and end it.
        watch.listener->on_protocol_error(std::string(parsed.status().message()));
        watch.child->kill();
        watch.channel_open = false;
        epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, watch.child->control_fd(), nullptr);
        break;
      }
      if (!*parsed) break;
      watch.listener->on_event(event);
    }
  }
}

void ChildMonitor::finish(uint64_t id, Watch& watch) {
  // Everything the child wrote before it died is in the socket by now: deliver it first, so an
  // exit report is never mistaken for a crash.
  drain(watch, /*until_end=*/true);
  const std::optional<int> status = watch.child->try_reap();
  if (!status) return;  // not reapable yet; the pidfd stays readable and brings us back
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, watch.child->control_fd(), nullptr);
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, watch.child->pidfd(), nullptr);
  std::shared_ptr<Listener> listener = watch.listener;
  {
    std::lock_guard lock(mutex_);
    watches_.erase(id);
  }
  listener->on_exit(*status);
}

void ChildMonitor::loop() {
  std::vector<epoll_event> events(64);
  for (;;) {
    const int count = epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), -1);
    if (count < 0) {
      if (errno == EINTR) continue;
      std::cerr << "mortised: epoll_wait: " << std::strerror(errno) << std::endl;
      return;
    }
    for (int i = 0; i < count; ++i) {
      const uint64_t tag = events[i].data.u64;
      if (tag == kWakeTag) return;
      const uint64_t id = tag >> 1;
      Watch* watch = nullptr;
      {
        std::lock_guard lock(mutex_);
        auto found = watches_.find(id);
        if (found != watches_.end()) watch = found->second.get();
      }
      // Only this thread erases watches, so the pointer stays valid below.
      if (watch == nullptr) continue;
      if (tag & kPidfdBit) {
        finish(id, *watch);
      } else {
        drain(*watch, /*until_end=*/false);
      }
    }
  }
}

}  // namespace mortise
