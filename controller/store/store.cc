// Store::transact: every backend's transactions, with object writes stamped with a resource
// version and reported to the change listener once committed (see store.h).
#include "store.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "object_meta.h"

namespace tenon::controller {
namespace {

using tenon::v1::Object;
using tenon::v1::ObjectKind;

// Passes every call to the backend's transaction and records the object writes.
class RecordingTransaction : public StoreTransaction {
 public:
  explicit RecordingTransaction(StoreTransaction& backend) : backend_(backend) {}

  CommittedChanges& changes() { return changes_; }

  absl::StatusOr<std::optional<Object>> get_object(ObjectKind kind,
                                                   const std::string& name) override {
    return backend_.get_object(kind, name);
  }
  absl::StatusOr<std::vector<Object>> list_objects(ObjectKind kind) override {
    return backend_.list_objects(kind);
  }
  absl::Status put_object(const Object& object) override {
    Object stamped = object;
    tenon::v1::ObjectMeta* meta = mutable_object_meta(&stamped);
    // An object of no kind has no metadata to stamp; the backend refuses it (InvalidArgument).
    if (meta == nullptr) return backend_.put_object(object);
    absl::StatusOr<uint64_t> version = resource_version();
    if (!version.ok()) return version.status();
    meta->set_resource_version(*version);
    if (absl::Status put = backend_.put_object(stamped); !put.ok()) return put;
    changes_.changes.push_back(
        {object_kind(stamped), object_meta(stamped).name(), std::move(stamped)});
    return absl::OkStatus();
  }
  absl::Status delete_object(ObjectKind kind, const std::string& name) override {
    absl::StatusOr<uint64_t> version = resource_version();
    if (!version.ok()) return version.status();
    if (absl::Status removed = backend_.delete_object(kind, name); !removed.ok()) return removed;
    changes_.changes.push_back({kind, name, std::nullopt});
    return absl::OkStatus();
  }

  absl::Status put_bootstrap_token(const BootstrapTokenRecord& token) override {
    return backend_.put_bootstrap_token(token);
  }
  absl::StatusOr<std::optional<BootstrapTokenRecord>> get_bootstrap_token(
      const std::string& token_hash) override {
    return backend_.get_bootstrap_token(token_hash);
  }
  absl::Status delete_bootstrap_token(const std::string& token_hash) override {
    return backend_.delete_bootstrap_token(token_hash);
  }
  absl::Status put_device_credential(const DeviceCredentialRecord& credential) override {
    return backend_.put_device_credential(credential);
  }
  absl::StatusOr<std::optional<DeviceCredentialRecord>> get_device_credential(
      const std::string& device_name) override {
    return backend_.get_device_credential(device_name);
  }
  absl::Status delete_device_credential(const std::string& device_name) override {
    return backend_.delete_device_credential(device_name);
  }
  absl::Status put_desired_state(const std::string& device_name,
                                 const tenon::v1::DesiredState& state) override {
    return backend_.put_desired_state(device_name, state);
  }
  absl::StatusOr<std::optional<tenon::v1::DesiredState>> get_desired_state(
      const std::string& device_name) override {
    return backend_.get_desired_state(device_name);
  }
  absl::Status delete_desired_state(const std::string& device_name) override {
    return backend_.delete_desired_state(device_name);
  }
  absl::StatusOr<uint64_t> next_counter(const std::string& counter) override {
    return backend_.next_counter(counter);
  }
  absl::StatusOr<uint64_t> read_counter(const std::string& counter) override {
    return backend_.read_counter(counter);
  }

 private:
  // Taken once, at the first object write.
  absl::StatusOr<uint64_t> resource_version() {
    if (changes_.resource_version == 0) {
      absl::StatusOr<uint64_t> next = backend_.next_counter(kResourceVersionCounter);
      if (!next.ok()) return next.status();
      changes_.resource_version = *next;
    }
    return changes_.resource_version;
  }

  StoreTransaction& backend_;
  CommittedChanges changes_;
};

}  // namespace

absl::Status Store::transact(const std::function<absl::Status(StoreTransaction&)>& body) {
  if (transacting_thread_.load() == std::this_thread::get_id()) {
    return absl::FailedPreconditionError(
        absl::StrCat(describe(), ": transact called from inside a transaction body"));
  }
  std::lock_guard<std::mutex> lock(transaction_mutex_);
  transacting_thread_.store(std::this_thread::get_id());
  struct ClearOwner {
    std::atomic<std::thread::id>& owner;
    ~ClearOwner() { owner.store(std::thread::id()); }
  } clear_owner{transacting_thread_};
  CommittedChanges committed;
  return run_transaction(
      [&](StoreTransaction& backend) -> absl::Status {
        RecordingTransaction recording(backend);
        absl::Status status = body(recording);
        committed = std::move(recording.changes());
        return status;
      },
      [&] {
        if (listener_ && !committed.changes.empty()) listener_(std::move(committed));
      });
}

}  // namespace tenon::controller
