// The device session hub: one agent stream per device, and what the controller knows of each
// device's connection (last heard, acknowledged desired-state version, images held). Sharded by
// device name, each shard with its own lock held only for map work, never while a session sends
// or closes, so one device's traffic never waits on another's, on planning or on the store.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tenon/v1/agent.pb.h"

namespace tenon::controller {

// One agent's open stream, as the controller sees it. Implemented by the gRPC adapter.
class AgentSession {
 public:
  virtual ~AgentSession() = default;
  // Queues a message (the adapter numbers it); never blocks.
  virtual void send(tenon::v1::ControllerMessage message) = 0;
  // Ends the stream with this status once queued messages are written.
  virtual void close(const absl::Status& status) = 0;
};

// What the hub knows of one device's agent.
struct DeviceConnection {
  bool connected = false;
  absl::Time last_seen = absl::InfinitePast();
  uint64_t acknowledged_version = 0;
  std::string rejection;  // the agent's reason for rejecting the last desired state
};

class SessionHub {
 public:
  // Makes `session` the device's stream; a stream it supersedes is closed with ABORTED.
  void attach(const std::string& device, std::shared_ptr<AgentSession> session,
              uint64_t acknowledged_version, std::set<std::string> images);
  // Whether `session` is (still) the device's stream; if so the device was just heard from.
  bool touch(const std::string& device, const AgentSession* session);
  // The stream ended: true when it was the device's stream (the device is now disconnected).
  bool detach(const std::string& device, const AgentSession* session);
  // Ends the device's stream, if it has one, with `status`; with kForget also drops what the
  // hub knows of the device (it was deleted).
  enum class Ending { kKeepDevice, kForget };
  void close(const std::string& device, const absl::Status& status, Ending ending);

  // False when the device has no stream.
  bool send(const std::string& device, tenon::v1::ControllerMessage message);
  // Records the device's newest desired state (image requests are checked against it) and
  // sends it when the device is connected. A version older than one recorded is dropped: two
  // writers may finish out of order. Returns whether it was sent.
  bool send_desired_state(const std::string& device,
                          std::shared_ptr<const tenon::v1::DesiredState> state);
  // The newest desired state recorded since start (null: none yet; ask the store).
  std::shared_ptr<const tenon::v1::DesiredState> desired_state(const std::string& device) const;
  bool connected(const std::string& device) const;
  // For many devices at once: each shard's lock is taken once.
  std::vector<bool> connected(const std::vector<std::string>& devices) const;
  std::optional<DeviceConnection> connection(const std::string& device) const;

  void acknowledge(const std::string& device, uint64_t version);
  void reject(const std::string& device, std::string reason);
  void add_image(const std::string& device, const std::string& digest);

  // Pings every stream, and ends the streams silent for longer than `silence_limit`; returns
  // the devices it disconnected.
  std::vector<std::string> ping_all(absl::Time now, absl::Duration silence_limit);
  // Increases whenever a device connects or disconnects.
  uint64_t version() const { return version_.load(); }
  // Connections changed since the last call, to be written to the store.
  std::vector<std::pair<std::string, DeviceConnection>> take_changed();
  // Puts back what take_changed returned when writing it failed.
  void mark_changed(const std::vector<std::pair<std::string, DeviceConnection>>& changed);

 private:
  struct Entry {
    std::shared_ptr<AgentSession> session;
    absl::Time last_seen = absl::InfinitePast();
    uint64_t acknowledged_version = 0;
    std::set<std::string> images;  // digests the device holds
    std::string rejection;
    std::shared_ptr<const tenon::v1::DesiredState> desired;
    bool changed = false;
  };
  struct Shard {
    mutable absl::Mutex mutex;
    std::map<std::string, Entry> entries ABSL_GUARDED_BY(mutex);
  };
  static constexpr size_t kShards = 16;

  Shard& shard_of(const std::string& device);
  const Shard& shard_of(const std::string& device) const;
  static DeviceConnection connection_of(const Entry& entry);

  std::array<Shard, kShards> shards_;
  std::atomic<uint64_t> version_ = 0;
};

}  // namespace tenon::controller
