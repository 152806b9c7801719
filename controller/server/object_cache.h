// The object cache: the controller's in-memory copy of every stored object, fed by the store's
// change feed (store.h) after each commit, with the store's resource version. Every operator
// read (Get, List, Watch, deployment status, /metrics) is served from here under a reader lock
// held only for map work, so reads never wait on planning, builds, the store or agent traffic.
// Objects are immutable once cached (shared, never copied under the lock).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "store.h"
#include "tenon/v1/fleet.pb.h"

namespace tenon::controller {

using CachedObject = std::shared_ptr<const tenon::v1::Object>;

// One change as Watch reports it.
struct CacheEvent {
  enum class Type { kAdded, kModified, kDeleted };
  Type type = Type::kAdded;
  uint64_t resource_version = 0;
  CachedObject object;  // for kDeleted: the object as it was last stored
};

class ObjectCache {
 public:
  // How many events Watch can resume from; an older resource version must list again.
  static constexpr size_t kHistoryEvents = 65536;

  // Fills the cache from the store and subscribes it to the store's change feed. Call once,
  // before the store is shared between threads.
  absl::Status prime(Store& store);
  // The change listener (public for tests that feed changes by hand).
  void apply(CommittedChanges changes);

  uint64_t resource_version() const;
  CachedObject get(tenon::v1::ObjectKind kind, const std::string& name) const;
  // Objects of `kind` in name order after `after` for which `keep` holds, at most `limit` of
  // them; *more tells whether others follow. `keep` runs under the reader lock: keep it cheap.
  std::vector<CachedObject> list(tenon::v1::ObjectKind kind, const std::string& after, size_t limit,
                                 const std::function<bool(const tenon::v1::Object&)>& keep,
                                 bool* more, uint64_t* resource_version) const;
  std::vector<CachedObject> all(tenon::v1::ObjectKind kind) const;
  size_t count(tenon::v1::ObjectKind kind) const;
  // Instances of one deployment (spec.deployment).
  std::vector<CachedObject> instances_of(const std::string& deployment) const;
  // How many Devices `match` accepts.
  uint32_t count_devices(const std::function<bool(const tenon::v1::Device&)>& match) const;

  // Events of `kind` after `after_version`, waiting until `deadline` for any change; sets
  // *reached to the version the events go up to (resume from there). OutOfRange when
  // `after_version` is older than the history kept (list again).
  absl::StatusOr<std::vector<CacheEvent>> events_after(tenon::v1::ObjectKind kind,
                                                       uint64_t after_version, absl::Time deadline,
                                                       uint64_t* reached) const;

 private:
  using Objects = std::map<std::string, CachedObject>;
  const Objects& objects_of(tenon::v1::ObjectKind kind) const ABSL_SHARED_LOCKS_REQUIRED(mutex_);

  mutable absl::Mutex mutex_;
  std::map<tenon::v1::ObjectKind, Objects> objects_ ABSL_GUARDED_BY(mutex_);
  std::map<std::string, std::set<std::string>> instances_by_deployment_ ABSL_GUARDED_BY(mutex_);
  uint64_t resource_version_ ABSL_GUARDED_BY(mutex_) = 0;
  // Versions up to this one are in the history (or were before the cache was primed).
  uint64_t history_start_ ABSL_GUARDED_BY(mutex_) = 0;
  std::deque<std::pair<tenon::v1::ObjectKind, CacheEvent>> history_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace tenon::controller
