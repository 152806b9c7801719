// Kind-independent access to a tenon.v1.Object: which kind it holds, its metadata, and the names
// operators type for kinds (kubectl style: "deployment", "deployments", "deploy").
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "tenon/v1/fleet.pb.h"

namespace tenon::controller {

// OBJECT_KIND_UNSPECIFIED for an empty Object.
tenon::v1::ObjectKind object_kind(const tenon::v1::Object& object);
// The metadata of whichever kind is set; a default instance for an empty Object.
const tenon::v1::ObjectMeta& object_meta(const tenon::v1::Object& object);
// Null for an empty Object.
tenon::v1::ObjectMeta* mutable_object_meta(tenon::v1::Object* object);

// "Device", "App", "Deployment", "Instance", "Composition"; "Unspecified" otherwise.
const char* kind_name(tenon::v1::ObjectKind kind);
// Accepts the kind name in any case, its plural and the short names (dev, deploy, inst, comp).
absl::StatusOr<tenon::v1::ObjectKind> parse_kind(std::string_view text);

}  // namespace tenon::controller
