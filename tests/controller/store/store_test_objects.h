// Objects and transaction shorthands shared by the store tests.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "object_meta.h"
#include "store.h"

namespace tenon::controller::store_test {

inline constexpr tenon::v1::ObjectKind kAllKinds[] = {
    tenon::v1::OBJECT_KIND_DEVICE, tenon::v1::OBJECT_KIND_APP, tenon::v1::OBJECT_KIND_DEPLOYMENT,
    tenon::v1::OBJECT_KIND_INSTANCE, tenon::v1::OBJECT_KIND_COMPOSITION};

inline tenon::v1::Object make_object(tenon::v1::ObjectKind kind, const std::string& name,
                                     const std::string& tier = "edge") {
  tenon::v1::Object object;
  switch (kind) {
    case tenon::v1::OBJECT_KIND_DEVICE:
      object.mutable_device();
      break;
    case tenon::v1::OBJECT_KIND_APP:
      object.mutable_app();
      break;
    case tenon::v1::OBJECT_KIND_DEPLOYMENT:
      object.mutable_deployment();
      break;
    case tenon::v1::OBJECT_KIND_INSTANCE:
      object.mutable_instance();
      break;
    case tenon::v1::OBJECT_KIND_COMPOSITION:
      object.mutable_composition()->set_image_digest("sha256:00");
      break;
    default:
      break;
  }
  tenon::v1::ObjectMeta* meta = mutable_object_meta(&object);
  meta->set_name(name);
  meta->set_uid("uid-" + name);
  meta->set_generation(3);
  (*meta->mutable_labels())["tier"] = tier;
  (*meta->mutable_labels())["site"] = "lab";
  return object;
}

// `object` as the store gives it back after a transaction that took `resource_version`.
inline tenon::v1::Object stamped(tenon::v1::Object object, uint64_t resource_version) {
  mutable_object_meta(&object)->set_resource_version(resource_version);
  return object;
}

inline std::vector<std::string> names(const std::vector<tenon::v1::Object>& objects) {
  std::vector<std::string> result;
  result.reserve(objects.size());
  for (const tenon::v1::Object& object : objects) result.push_back(object_meta(object).name());
  return result;
}

// Runs `body` in a transaction that must commit.
inline void commit(Store& store, const std::function<absl::Status(StoreTransaction&)>& body) {
  absl::Status status = store.transact(body);
  ASSERT_TRUE(status.ok()) << status;
}

inline std::optional<tenon::v1::Object> get(Store& store, tenon::v1::ObjectKind kind,
                                            const std::string& name) {
  std::optional<tenon::v1::Object> result;
  commit(store, [&](StoreTransaction& transaction) {
    absl::StatusOr<std::optional<tenon::v1::Object>> object = transaction.get_object(kind, name);
    if (!object.ok()) return object.status();
    result = *object;
    return absl::OkStatus();
  });
  return result;
}

inline std::vector<tenon::v1::Object> list(Store& store, tenon::v1::ObjectKind kind) {
  std::vector<tenon::v1::Object> result;
  commit(store, [&](StoreTransaction& transaction) {
    absl::StatusOr<std::vector<tenon::v1::Object>> objects = transaction.list_objects(kind);
    if (!objects.ok()) return objects.status();
    result = *objects;
    return absl::OkStatus();
  });
  return result;
}

inline uint64_t read_counter(Store& store, const std::string& counter) {
  uint64_t value = 0;
  commit(store, [&](StoreTransaction& transaction) {
    absl::StatusOr<uint64_t> read = transaction.read_counter(counter);
    if (!read.ok()) return read.status();
    value = *read;
    return absl::OkStatus();
  });
  return value;
}

}  // namespace tenon::controller::store_test
