// A composition as a document: JSON (field names as in tenon.v1.Composition, snake_case) and the
// same tree as YAML, for `tenonctl compose -o json|yaml` and the golden tests.
#pragma once

#include <string>

#include "composition.h"
#include "nlohmann/json.hpp"

namespace tenon::controller {

nlohmann::ordered_json composition_to_json(const Composition& composition);
// Block-style YAML of a JSON tree; strings are always quoted so they never change type.
std::string json_to_yaml(const nlohmann::ordered_json& document);

}  // namespace tenon::controller
