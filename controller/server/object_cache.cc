// See object_cache.h.
#include "object_cache.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "object_meta.h"

namespace tenon::controller {

namespace v1 = tenon::v1;

namespace {
constexpr v1::ObjectKind kCachedKinds[] = {v1::OBJECT_KIND_DEVICE, v1::OBJECT_KIND_APP,
                                           v1::OBJECT_KIND_DEPLOYMENT, v1::OBJECT_KIND_INSTANCE,
                                           v1::OBJECT_KIND_COMPOSITION};

std::string deployment_of(const v1::Object& object) {
  return object.has_instance() ? object.instance().spec().deployment() : std::string();
}
}  // namespace

absl::Status ObjectCache::prime(Store& store) {
  std::map<v1::ObjectKind, Objects> loaded;
  uint64_t version = 0;
  absl::Status read = store.transact([&](StoreTransaction& tx) -> absl::Status {
    for (v1::ObjectKind kind : kCachedKinds) {
      absl::StatusOr<std::vector<v1::Object>> objects = tx.list_objects(kind);
      if (!objects.ok()) return objects.status();
      Objects& into = loaded[kind];
      for (v1::Object& object : *objects) {
        const std::string name = object_meta(object).name();
        into.emplace(name, std::make_shared<const v1::Object>(std::move(object)));
      }
    }
    absl::StatusOr<uint64_t> current = tx.read_counter(kResourceVersionCounter);
    if (!current.ok()) return current.status();
    version = *current;
    return absl::OkStatus();
  });
  if (!read.ok()) return read;
  {
    absl::MutexLock lock(&mutex_);
    objects_ = std::move(loaded);
    instances_by_deployment_.clear();
    for (const auto& [name, object] : objects_[v1::OBJECT_KIND_INSTANCE]) {
      instances_by_deployment_[deployment_of(*object)].insert(name);
    }
    resource_version_ = version;
    history_start_ = version;
    history_.clear();
  }
  store.set_change_listener([this](CommittedChanges changes) { apply(std::move(changes)); });
  return absl::OkStatus();
}

void ObjectCache::apply(CommittedChanges changes) {
  // The objects are made shareable before the lock is taken: readers wait for map work only.
  std::vector<CachedObject> objects(changes.changes.size());
  for (size_t i = 0; i < changes.changes.size(); ++i) {
    if (changes.changes[i].object.has_value()) {
      objects[i] = std::make_shared<const v1::Object>(std::move(*changes.changes[i].object));
    }
  }
  absl::MutexLock lock(&mutex_);
  for (size_t i = 0; i < changes.changes.size(); ++i) {
    const ObjectChange& change = changes.changes[i];
    Objects& stored = objects_[change.kind];
    auto found = stored.find(change.name);
    CacheEvent event;
    event.resource_version = changes.resource_version;
    const bool instance = change.kind == v1::OBJECT_KIND_INSTANCE;
    if (objects[i] != nullptr) {
      event.type = found == stored.end() ? CacheEvent::Type::kAdded : CacheEvent::Type::kModified;
      event.object = objects[i];
      if (instance &&
          (found == stored.end() || deployment_of(*found->second) != deployment_of(*objects[i]))) {
        if (found != stored.end()) {
          instances_by_deployment_[deployment_of(*found->second)].erase(change.name);
        }
        instances_by_deployment_[deployment_of(*objects[i])].insert(change.name);
      }
      if (found == stored.end()) {
        stored.emplace(change.name, std::move(objects[i]));
      } else {
        found->second = std::move(objects[i]);
      }
    } else {
      if (found == stored.end()) continue;
      event.type = CacheEvent::Type::kDeleted;
      event.object = found->second;
      if (instance) instances_by_deployment_[deployment_of(*found->second)].erase(change.name);
      stored.erase(found);
    }
    history_.emplace_back(change.kind, std::move(event));
  }
  resource_version_ = std::max(resource_version_, changes.resource_version);
  while (history_.size() > kHistoryEvents) {
    history_start_ = history_.front().second.resource_version;
    history_.pop_front();
  }
}

const ObjectCache::Objects& ObjectCache::objects_of(v1::ObjectKind kind) const {
  static const Objects kNone;
  auto found = objects_.find(kind);
  return found == objects_.end() ? kNone : found->second;
}

uint64_t ObjectCache::resource_version() const {
  absl::ReaderMutexLock lock(&mutex_);
  return resource_version_;
}

CachedObject ObjectCache::get(v1::ObjectKind kind, const std::string& name) const {
  absl::ReaderMutexLock lock(&mutex_);
  const Objects& objects = objects_of(kind);
  auto found = objects.find(name);
  return found == objects.end() ? nullptr : found->second;
}

std::vector<CachedObject> ObjectCache::list(v1::ObjectKind kind, const std::string& after,
                                            size_t limit,
                                            const std::function<bool(const v1::Object&)>& keep,
                                            bool* more, uint64_t* resource_version) const {
  std::vector<CachedObject> page;
  *more = false;
  absl::ReaderMutexLock lock(&mutex_);
  *resource_version = resource_version_;
  const Objects& objects = objects_of(kind);
  for (auto it = after.empty() ? objects.begin() : objects.upper_bound(after); it != objects.end();
       ++it) {
    if (keep && !keep(*it->second)) continue;
    if (page.size() == limit) {
      *more = true;
      break;
    }
    page.push_back(it->second);
  }
  return page;
}

std::vector<CachedObject> ObjectCache::all(v1::ObjectKind kind) const {
  std::vector<CachedObject> objects;
  absl::ReaderMutexLock lock(&mutex_);
  for (const auto& [name, object] : objects_of(kind)) objects.push_back(object);
  return objects;
}

size_t ObjectCache::count(v1::ObjectKind kind) const {
  absl::ReaderMutexLock lock(&mutex_);
  return objects_of(kind).size();
}

std::vector<CachedObject> ObjectCache::instances_of(const std::string& deployment) const {
  std::vector<CachedObject> instances;
  absl::ReaderMutexLock lock(&mutex_);
  auto names = instances_by_deployment_.find(deployment);
  if (names == instances_by_deployment_.end()) return instances;
  const Objects& objects = objects_of(v1::OBJECT_KIND_INSTANCE);
  for (const std::string& name : names->second) {
    if (auto found = objects.find(name); found != objects.end()) instances.push_back(found->second);
  }
  return instances;
}

uint32_t ObjectCache::count_devices(const std::function<bool(const v1::Device&)>& match) const {
  uint32_t count = 0;
  absl::ReaderMutexLock lock(&mutex_);
  for (const auto& [name, object] : objects_of(v1::OBJECT_KIND_DEVICE)) {
    if (match(object->device())) ++count;
  }
  return count;
}

absl::StatusOr<std::vector<CacheEvent>> ObjectCache::events_after(v1::ObjectKind kind,
                                                                  uint64_t after_version,
                                                                  absl::Time deadline,
                                                                  uint64_t* reached) const {
  absl::ReaderMutexLock lock(&mutex_);
  auto newer = [&] { return resource_version_ > after_version; };
  mutex_.AwaitWithDeadline(absl::Condition(&newer), deadline);
  *reached = std::max(after_version, resource_version_);
  if (after_version < history_start_) {
    return absl::OutOfRangeError(absl::StrCat(
        "resource version ", after_version, " is older than the ", kHistoryEvents,
        " changes kept (oldest ", history_start_, "); list again and watch from its version"));
  }
  // The history is in version order: start at the first event after `after_version`.
  auto first = std::partition_point(history_.begin(), history_.end(), [&](const auto& entry) {
    return entry.second.resource_version <= after_version;
  });
  std::vector<CacheEvent> events;
  for (auto it = first; it != history_.end(); ++it) {
    if (it->first == kind) events.push_back(it->second);
  }
  return events;
}

}  // namespace tenon::controller
