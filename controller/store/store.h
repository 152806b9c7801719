// The controller's durable state behind one interface, so that the embedded SQLite store
// (sqlite_store.h) and the PostgreSQL one (postgres_store.h) serve the same services.
//
// Everything that changes state happens inside Store::transact: the function runs in one
// transaction that commits when it returns OK and rolls back otherwise, so a request is applied
// wholly or not at all, and a killed controller loses nothing it acknowledged.
//
// What is stored:
//   - objects: every tenon.v1.Object (Device, App, Deployment, Instance, Composition) by kind and
//     name, with its metadata (uid, generation, times) inside the message;
//   - bootstrap tokens and device credentials, as sha256 hashes only;
//   - the desired state last computed for each device (DesiredState.version only increases);
//   - named counters (e.g. the next desired-state version).
// Images are content-addressed files beside the database (blob_store.h), not rows.
//
// The change feed: every transaction that writes objects takes the next value of the counter
// kResourceVersionCounter once, stamps it into metadata.resource_version of every object it puts,
// and, once committed, hands the listener (set_change_listener) its changes in commit order.
// That is what the controller's object cache is fed from; a rolled-back transaction reports
// nothing, so memory never holds what the store does not.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tenon/v1/agent.pb.h"
#include "tenon/v1/fleet.pb.h"

namespace tenon::controller {

struct BootstrapTokenRecord {
  std::string token_hash;   // lowercase hex sha256 of the secret
  std::string device_name;  // empty: any device name
  uint32_t uses_left = 1;
  int64_t expire_unix_seconds = 0;
  std::map<std::string, std::string> labels;  // given to devices enrolled with it
};

// The counter behind ObjectMeta.resource_version: one step per committed object-writing
// transaction, stored with the objects, so it never goes back across restarts.
inline constexpr char kResourceVersionCounter[] = "resource-version";

// One object written or deleted by a committed transaction.
struct ObjectChange {
  tenon::v1::ObjectKind kind = tenon::v1::OBJECT_KIND_UNSPECIFIED;
  std::string name;
  std::optional<tenon::v1::Object> object;  // as stored; empty when deleted
};

// What one committed transaction did to objects, in the order it did it.
struct CommittedChanges {
  uint64_t resource_version = 0;
  std::vector<ObjectChange> changes;
};

// Takes the changes by value: the listener may keep the objects without copying them.
using ChangeListener = std::function<void(CommittedChanges)>;

struct DeviceCredentialRecord {
  std::string device_name;
  std::string credential_hash;  // lowercase hex sha256 of the secret
  int64_t issue_unix_seconds = 0;
};

// The operations available inside one transaction. Reads see the transaction's own writes.
// Every delete_* of an absent record is NotFoundError. A stored record that cannot be decoded is
// DataLossError naming it (kind/name, token or device).
class StoreTransaction {
 public:
  virtual ~StoreTransaction() = default;

  // Objects, keyed by (kind, metadata.name). Instance and Composition are stored like the rest.
  virtual absl::StatusOr<std::optional<tenon::v1::Object>> get_object(tenon::v1::ObjectKind kind,
                                                                      const std::string& name) = 0;
  // Ordered by name.
  virtual absl::StatusOr<std::vector<tenon::v1::Object>> list_objects(
      tenon::v1::ObjectKind kind) = 0;
  // Inserts or replaces; the kind and name come from the object itself.
  virtual absl::Status put_object(const tenon::v1::Object& object) = 0;
  // NotFoundError when absent.
  virtual absl::Status delete_object(tenon::v1::ObjectKind kind, const std::string& name) = 0;

  virtual absl::Status put_bootstrap_token(const BootstrapTokenRecord& token) = 0;
  virtual absl::StatusOr<std::optional<BootstrapTokenRecord>> get_bootstrap_token(
      const std::string& token_hash) = 0;
  virtual absl::Status delete_bootstrap_token(const std::string& token_hash) = 0;

  virtual absl::Status put_device_credential(const DeviceCredentialRecord& credential) = 0;
  virtual absl::StatusOr<std::optional<DeviceCredentialRecord>> get_device_credential(
      const std::string& device_name) = 0;
  virtual absl::Status delete_device_credential(const std::string& device_name) = 0;

  // FailedPreconditionError unless state.version is above the version stored for the device.
  virtual absl::Status put_desired_state(const std::string& device_name,
                                         const tenon::v1::DesiredState& state) = 0;
  virtual absl::StatusOr<std::optional<tenon::v1::DesiredState>> get_desired_state(
      const std::string& device_name) = 0;
  virtual absl::Status delete_desired_state(const std::string& device_name) = 0;

  // Returns the counter's next value (1 for a new counter) and stores it.
  virtual absl::StatusOr<uint64_t> next_counter(const std::string& counter) = 0;
  // The counter's current value without changing it (0 for a counter never taken).
  virtual absl::StatusOr<uint64_t> read_counter(const std::string& counter) = 0;
};

class Store {
 public:
  virtual ~Store() = default;
  // Runs `body` in one transaction: commit when it returns OK, roll back otherwise (the body's
  // status is returned). Transactions are serialised; a body must not call transact itself.
  // Object writes are stamped and reported to the change listener after the commit. A backend
  // may run `body` again when the transaction conflicted with another process's (PostgresStore):
  // a body must have no effect outside the transaction but what it assigns.
  absl::Status transact(const std::function<absl::Status(StoreTransaction&)>& body);
  // Called after every committed transaction that wrote objects, in commit order, before
  // transact returns (so a caller reads its own writes from whatever the listener feeds). Set
  // it once, before the store is shared between threads; the listener must not call transact.
  void set_change_listener(ChangeListener listener) { listener_ = std::move(listener); }
  // A short description for logs and /metrics, e.g. "sqlite:/var/lib/tenon/controller.db".
  virtual std::string describe() const = 0;

 protected:
  // The backend's transaction: run `body`, commit when it returns OK, then call `committed`.
  // Store::transact serialises the calls.
  virtual absl::Status run_transaction(const std::function<absl::Status(StoreTransaction&)>& body,
                                       const std::function<void()>& committed) = 0;

 private:
  ChangeListener listener_;
  // Transactions run one at a time (a SQLite handle or a libpq connection runs one), and the
  // listener hears commits in order.
  std::mutex transaction_mutex_;
  std::atomic<std::thread::id> transacting_thread_{};  // to refuse reentrant transact calls
};

}  // namespace tenon::controller
