// An agent stream as the controller sees it (AgentSession), keeping what it was sent and how it
// was closed: for tests and fuzzers that drive the Controller without gRPC.
#pragma once

#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "session_hub.h"
#include "tenon/v1/agent.pb.h"

namespace tenon::controller {

class RecordingSession : public AgentSession {
 public:
  void send(tenon::v1::ControllerMessage message) override {
    std::lock_guard lock(mutex_);
    messages_.push_back(std::move(message));
  }
  void close(const absl::Status& status) override {
    std::lock_guard lock(mutex_);
    closed_ = status;
  }
  // What was sent since the last take.
  std::vector<tenon::v1::ControllerMessage> take() {
    std::lock_guard lock(mutex_);
    return std::exchange(messages_, {});
  }
  size_t count() {
    std::lock_guard lock(mutex_);
    return messages_.size();
  }
  std::optional<absl::Status> closed() {
    std::lock_guard lock(mutex_);
    return closed_;
  }

 private:
  std::mutex mutex_;
  std::vector<tenon::v1::ControllerMessage> messages_;
  std::optional<absl::Status> closed_;
};

}  // namespace tenon::controller
