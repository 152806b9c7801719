// The agent's durable state in one SQLite file (agent.db): its identity and credential, the last
// desired state it accepted, what it recorded about each instance, and the images it holds. What
// is written here survives a killed agent and a lost controller; the file is mode 0600 because it
// holds the credential.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "plan.h"
#include "sqlite/database.h"
#include "tenon/v1/agent.pb.h"

namespace tenon::agent {

struct Identity {
  std::string device_name;
  std::string device_uid;
  std::string credential;
};

// Thread-safe: every method takes the object's lock for its transaction.
class LocalState {
 public:
  static absl::StatusOr<std::unique_ptr<LocalState>> open(const std::string& path);

  absl::StatusOr<std::optional<Identity>> identity();
  absl::Status store_identity(const Identity& identity);
  // After the controller rejected the credential: the next start enrols again.
  absl::Status forget_identity();

  // The last stored desired state; nullopt after a fresh install.
  absl::StatusOr<std::optional<tenon::v1::DesiredState>> desired_state();
  // Stores `desired` in one transaction. Versions only increase: a version not above the stored
  // one is refused with FailedPrecondition and nothing changes.
  absl::Status store_desired_state(const tenon::v1::DesiredState& desired);

  absl::StatusOr<std::map<std::string, InstanceRecord>> instance_records();
  absl::Status put_instance_record(const InstanceRecord& record);
  absl::Status delete_instance_record(const std::string& name);

  // Digest -> size of every verified image in the image directory.
  absl::StatusOr<std::map<std::string, uint64_t>> images();
  absl::Status put_image(const std::string& digest, uint64_t size_bytes);
  absl::Status delete_image(const std::string& digest);

 private:
  explicit LocalState(std::unique_ptr<tenon::sqlite::Database> database)
      : database_(std::move(database)) {}

  std::mutex mutex_;
  std::unique_ptr<tenon::sqlite::Database> database_;
};

}  // namespace tenon::agent
