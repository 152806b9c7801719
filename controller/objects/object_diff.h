// What an operator owns of an object (labels and spec) and the field-by-field difference of
// two versions of it: Apply decides "unchanged" with it and Diff lists the changes.
#pragma once

#include "nlohmann/json.hpp"
#include "tenon/v1/fleet.pb.h"

namespace tenon::controller {

// Labels and spec as JSON (proto field names), without metadata's other fields or status.
nlohmann::json owned_json(const tenon::v1::Object& object);

// Appends to `diff` one FieldChange per leaf that differs between `before` and `after` (owned
// JSON), with paths such as "spec.placement.rt_priority" and "metadata.labels.site".
void append_changes(const nlohmann::json& before, const nlohmann::json& after,
                    tenon::v1::ObjectDiff* diff);

}  // namespace tenon::controller
