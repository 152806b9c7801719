// See session_hub.h.
#include "session_hub.h"

#include <functional>

#include "absl/strings/str_cat.h"
#include "time/proto_time.h"

namespace tenon::controller {

namespace v1 = tenon::v1;

SessionHub::Shard& SessionHub::shard_of(const std::string& device) {
  return shards_[std::hash<std::string>{}(device) % kShards];
}

const SessionHub::Shard& SessionHub::shard_of(const std::string& device) const {
  return shards_[std::hash<std::string>{}(device) % kShards];
}

DeviceConnection SessionHub::connection_of(const Entry& entry) {
  DeviceConnection connection;
  connection.connected = entry.session != nullptr;
  connection.last_seen = entry.last_seen;
  connection.acknowledged_version = entry.acknowledged_version;
  connection.rejection = entry.rejection;
  return connection;
}

void SessionHub::attach(const std::string& device, std::shared_ptr<AgentSession> session,
                        uint64_t acknowledged_version, std::set<std::string> images) {
  ++version_;
  std::shared_ptr<AgentSession> superseded;
  {
    Shard& shard = shard_of(device);
    absl::MutexLock lock(&shard.mutex);
    Entry& entry = shard.entries[device];
    if (entry.session != session) superseded = std::move(entry.session);
    entry.session = std::move(session);
    entry.last_seen = absl::Now();
    entry.acknowledged_version = acknowledged_version;
    entry.images = std::move(images);
    entry.changed = true;
  }
  if (superseded) {
    superseded->close(absl::AbortedError(
        absl::StrCat("another agent connected as device ", device, "; this stream is superseded")));
  }
}

bool SessionHub::touch(const std::string& device, const AgentSession* session) {
  Shard& shard = shard_of(device);
  absl::MutexLock lock(&shard.mutex);
  auto found = shard.entries.find(device);
  if (found == shard.entries.end() || found->second.session.get() != session) return false;
  found->second.last_seen = absl::Now();  // written with the device's next change
  return true;
}

bool SessionHub::detach(const std::string& device, const AgentSession* session) {
  ++version_;
  Shard& shard = shard_of(device);
  absl::MutexLock lock(&shard.mutex);
  auto found = shard.entries.find(device);
  if (found == shard.entries.end() || found->second.session.get() != session) return false;
  found->second.session.reset();
  found->second.changed = true;
  return true;
}

void SessionHub::close(const std::string& device, const absl::Status& status, Ending ending) {
  ++version_;
  std::shared_ptr<AgentSession> session;
  {
    Shard& shard = shard_of(device);
    absl::MutexLock lock(&shard.mutex);
    auto found = shard.entries.find(device);
    if (found == shard.entries.end()) return;
    session = std::move(found->second.session);
    found->second.changed = true;
    if (ending == Ending::kForget) shard.entries.erase(found);
  }
  if (session) session->close(status);
}

bool SessionHub::send(const std::string& device, v1::ControllerMessage message) {
  std::shared_ptr<AgentSession> session;
  {
    const Shard& shard = shard_of(device);
    absl::MutexLock lock(&shard.mutex);
    auto found = shard.entries.find(device);
    if (found == shard.entries.end() || !found->second.session) return false;
    session = found->second.session;
  }
  session->send(std::move(message));
  return true;
}

bool SessionHub::send_desired_state(const std::string& device,
                                    std::shared_ptr<const v1::DesiredState> state) {
  std::shared_ptr<AgentSession> session;
  {
    Shard& shard = shard_of(device);
    absl::MutexLock lock(&shard.mutex);
    Entry& entry = shard.entries[device];
    if (entry.desired != nullptr && entry.desired->version() > state->version()) return false;
    entry.desired = state;
    session = entry.session;
  }
  if (!session) return false;
  v1::ControllerMessage message;
  *message.mutable_desired_state() = *state;
  session->send(std::move(message));
  return true;
}

std::shared_ptr<const v1::DesiredState> SessionHub::desired_state(const std::string& device) const {
  const Shard& shard = shard_of(device);
  absl::MutexLock lock(&shard.mutex);
  auto found = shard.entries.find(device);
  return found == shard.entries.end() ? nullptr : found->second.desired;
}

bool SessionHub::connected(const std::string& device) const {
  const Shard& shard = shard_of(device);
  absl::MutexLock lock(&shard.mutex);
  auto found = shard.entries.find(device);
  return found != shard.entries.end() && found->second.session != nullptr;
}

std::vector<bool> SessionHub::connected(const std::vector<std::string>& devices) const {
  std::vector<bool> connected(devices.size(), false);
  std::array<std::vector<size_t>, kShards> by_shard;
  for (size_t i = 0; i < devices.size(); ++i) {
    by_shard[std::hash<std::string>{}(devices[i]) % kShards].push_back(i);
  }
  for (size_t shard_index = 0; shard_index < kShards; ++shard_index) {
    if (by_shard[shard_index].empty()) continue;
    const Shard& shard = shards_[shard_index];
    absl::MutexLock lock(&shard.mutex);
    for (size_t i : by_shard[shard_index]) {
      auto found = shard.entries.find(devices[i]);
      connected[i] = found != shard.entries.end() && found->second.session != nullptr;
    }
  }
  return connected;
}

std::optional<DeviceConnection> SessionHub::connection(const std::string& device) const {
  const Shard& shard = shard_of(device);
  absl::MutexLock lock(&shard.mutex);
  auto found = shard.entries.find(device);
  if (found == shard.entries.end()) return std::nullopt;
  return connection_of(found->second);
}

void SessionHub::acknowledge(const std::string& device, uint64_t version) {
  Shard& shard = shard_of(device);
  absl::MutexLock lock(&shard.mutex);
  auto found = shard.entries.find(device);
  if (found == shard.entries.end()) return;
  found->second.acknowledged_version = std::max(found->second.acknowledged_version, version);
  found->second.rejection.clear();
  found->second.changed = true;
}

void SessionHub::reject(const std::string& device, std::string reason) {
  Shard& shard = shard_of(device);
  absl::MutexLock lock(&shard.mutex);
  auto found = shard.entries.find(device);
  if (found == shard.entries.end()) return;
  found->second.rejection = std::move(reason);
  found->second.changed = true;
}

void SessionHub::add_image(const std::string& device, const std::string& digest) {
  Shard& shard = shard_of(device);
  absl::MutexLock lock(&shard.mutex);
  auto found = shard.entries.find(device);
  if (found != shard.entries.end()) found->second.images.insert(digest);
}

std::vector<std::string> SessionHub::ping_all(absl::Time now, absl::Duration silence_limit) {
  std::vector<std::string> silent;
  for (Shard& shard : shards_) {
    std::vector<std::pair<std::string, std::shared_ptr<AgentSession>>> to_ping;
    std::vector<std::pair<std::string, std::shared_ptr<AgentSession>>> to_close;
    std::vector<absl::Duration> silences;
    {
      absl::MutexLock lock(&shard.mutex);
      for (auto& [name, entry] : shard.entries) {
        if (!entry.session) continue;
        // An agent acknowledges every ping at once: one that answered nothing for this long is
        // gone (stopped, or its link lost without a reset).
        if (entry.last_seen != absl::InfinitePast() && now - entry.last_seen > silence_limit) {
          silences.push_back(now - entry.last_seen);
          to_close.emplace_back(name, std::move(entry.session));
          entry.changed = true;
          continue;
        }
        to_ping.emplace_back(name, entry.session);
      }
    }
    for (size_t i = 0; i < to_close.size(); ++i) {
      const auto& [name, session] = to_close[i];
      session->close(absl::UnavailableError(absl::StrCat(
          "device ", name, " answered nothing for ",
          absl::FormatDuration(absl::Trunc(silences[i], absl::Milliseconds(1))), "; reconnect")));
      silent.push_back(name);
      ++version_;
    }
    for (const auto& [name, session] : to_ping) {
      v1::ControllerMessage message;
      *message.mutable_ping()->mutable_send_time() = time::to_proto(now);
      session->send(std::move(message));
    }
  }
  return silent;
}

std::vector<std::pair<std::string, DeviceConnection>> SessionHub::take_changed() {
  std::vector<std::pair<std::string, DeviceConnection>> changed;
  for (Shard& shard : shards_) {
    absl::MutexLock lock(&shard.mutex);
    for (auto& [name, entry] : shard.entries) {
      if (!entry.changed) continue;
      entry.changed = false;
      changed.emplace_back(name, connection_of(entry));
    }
  }
  return changed;
}

void SessionHub::mark_changed(
    const std::vector<std::pair<std::string, DeviceConnection>>& changed) {
  for (const auto& [name, connection] : changed) {
    Shard& shard = shard_of(name);
    absl::MutexLock lock(&shard.mutex);
    auto found = shard.entries.find(name);
    if (found != shard.entries.end()) found->second.changed = true;
  }
}

}  // namespace tenon::controller
