#include "object_meta.h"

#include <array>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace tenon::controller {

using tenon::v1::Object;
using tenon::v1::ObjectKind;
using tenon::v1::ObjectMeta;

ObjectKind object_kind(const Object& object) {
  switch (object.kind_case()) {
    case Object::kDevice:
      return tenon::v1::OBJECT_KIND_DEVICE;
    case Object::kApp:
      return tenon::v1::OBJECT_KIND_APP;
    case Object::kDeployment:
      return tenon::v1::OBJECT_KIND_DEPLOYMENT;
    case Object::kInstance:
      return tenon::v1::OBJECT_KIND_INSTANCE;
    case Object::kComposition:
      return tenon::v1::OBJECT_KIND_COMPOSITION;
    case Object::KIND_NOT_SET:
      break;
  }
  return tenon::v1::OBJECT_KIND_UNSPECIFIED;
}

const ObjectMeta& object_meta(const Object& object) {
  switch (object.kind_case()) {
    case Object::kDevice:
      return object.device().metadata();
    case Object::kApp:
      return object.app().metadata();
    case Object::kDeployment:
      return object.deployment().metadata();
    case Object::kInstance:
      return object.instance().metadata();
    case Object::kComposition:
      return object.composition().metadata();
    case Object::KIND_NOT_SET:
      break;
  }
  return ObjectMeta::default_instance();
}

ObjectMeta* mutable_object_meta(Object* object) {
  switch (object->kind_case()) {
    case Object::kDevice:
      return object->mutable_device()->mutable_metadata();
    case Object::kApp:
      return object->mutable_app()->mutable_metadata();
    case Object::kDeployment:
      return object->mutable_deployment()->mutable_metadata();
    case Object::kInstance:
      return object->mutable_instance()->mutable_metadata();
    case Object::kComposition:
      return object->mutable_composition()->mutable_metadata();
    case Object::KIND_NOT_SET:
      break;
  }
  return nullptr;
}

const char* kind_name(ObjectKind kind) {
  switch (kind) {
    case tenon::v1::OBJECT_KIND_DEVICE:
      return "Device";
    case tenon::v1::OBJECT_KIND_APP:
      return "App";
    case tenon::v1::OBJECT_KIND_DEPLOYMENT:
      return "Deployment";
    case tenon::v1::OBJECT_KIND_INSTANCE:
      return "Instance";
    case tenon::v1::OBJECT_KIND_COMPOSITION:
      return "Composition";
    default:
      break;
  }
  return "Unspecified";
}

absl::StatusOr<ObjectKind> parse_kind(std::string_view text) {
  struct Names {
    ObjectKind kind;
    std::array<std::string_view, 3> names;  // singular, plural, short
  };
  static constexpr std::array<Names, 5> kNames = {{
      {tenon::v1::OBJECT_KIND_DEVICE, {"device", "devices", "dev"}},
      {tenon::v1::OBJECT_KIND_APP, {"app", "apps", "app"}},
      {tenon::v1::OBJECT_KIND_DEPLOYMENT, {"deployment", "deployments", "deploy"}},
      {tenon::v1::OBJECT_KIND_INSTANCE, {"instance", "instances", "inst"}},
      {tenon::v1::OBJECT_KIND_COMPOSITION, {"composition", "compositions", "comp"}},
  }};
  const std::string lower = absl::AsciiStrToLower(std::string(text));
  for (const Names& entry : kNames) {
    for (std::string_view name : entry.names) {
      if (lower == name) return entry.kind;
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown kind '", std::string(text),
                   "'; expected one of device, app, deployment, instance, composition"));
}

}  // namespace tenon::controller
