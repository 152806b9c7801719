// See object_diff.h.
#include "object_diff.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/util/json_util.h"
#include "object_meta.h"

namespace tenon::controller {

namespace v1 = tenon::v1;

namespace {

std::string pointer_to_path(const std::string& pointer) {
  std::string path;
  for (const absl::string_view part : absl::StrSplit(pointer.substr(1), '/')) {
    const bool index = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
    if (index) {
      absl::StrAppend(&path, "[", part, "]");
    } else {
      absl::StrAppend(&path, path.empty() ? "" : ".", part);
    }
  }
  return path;
}

}  // namespace

// The operator-owned part of an object: labels and spec, as JSON for comparison and diffs.
nlohmann::json owned_json(const v1::Object& object) {
  v1::Object copy = object;
  v1::ObjectMeta* meta = mutable_object_meta(&copy);
  const auto labels = meta->labels();
  switch (copy.kind_case()) {
    case v1::Object::kDevice:
      copy.mutable_device()->clear_status();
      break;
    case v1::Object::kDeployment:
      copy.mutable_deployment()->clear_status();
      break;
    default:
      break;
  }
  meta->Clear();
  *meta->mutable_labels() = labels;
  std::string text;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(copy, &text, options);
  nlohmann::json document = nlohmann::json::parse(text, nullptr, false);
  if (document.is_object() && !document.empty()) return document.begin().value();
  return nlohmann::json::object();
}

void append_changes(const nlohmann::json& before, const nlohmann::json& after,
                    v1::ObjectDiff* diff) {
  const nlohmann::json old_flat = before.flatten();
  const nlohmann::json new_flat = after.flatten();
  for (const auto& [pointer, value] : old_flat.items()) {
    auto found = new_flat.find(pointer);
    if (found == new_flat.end() || *found != value) {
      v1::FieldChange* change = diff->add_changes();
      change->set_path(pointer_to_path(pointer));
      change->set_old_value(value.dump());
      if (found != new_flat.end()) change->set_new_value(found->dump());
    }
  }
  for (const auto& [pointer, value] : new_flat.items()) {
    if (!old_flat.contains(pointer)) {
      v1::FieldChange* change = diff->add_changes();
      change->set_path(pointer_to_path(pointer));
      change->set_new_value(value.dump());
    }
  }
}

}  // namespace tenon::controller
