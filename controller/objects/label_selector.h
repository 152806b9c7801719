// Label selectors as text, the way kubectl writes them: equality (key=value, key==value,
// key!=value), sets (key in (a,b), key notin (a,b)) and existence (key, !key), joined by commas.
// One parser for tenonctl's -l and the REST API's ?selector=.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "tenon/v1/fleet.pb.h"

namespace tenon::controller {

// InvalidArgument naming the term and what is wrong with it.
absl::StatusOr<tenon::v1::LabelSelector> parse_label_selector(const std::string& text);

}  // namespace tenon::controller
