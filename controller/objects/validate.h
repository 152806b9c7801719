// The one place that decides whether an object is well-formed for Apply (names, labels, task
// timing, placement, selectors, rollout policy), as the comments of fleet.proto state the rules.
// tenonctl runs it before sending anything; the controller's Apply runs it again.
#pragma once

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "tenon/v1/fleet.pb.h"

namespace tenon::controller {

struct ValidationError {
  std::string path;  // proto field path, as in manifests: "spec.tasks[1].period_ns"
  std::string message;
};

// The first rule the object breaks, or nothing. Instance and Composition objects (and an empty
// Object) break the first rule: only Device, App and Deployment can be applied.
std::optional<ValidationError> validate_object(const tenon::v1::Object& object);

// The rules of an App's spec, for a spec that comes without its App (ComposeRequest.app_spec).
std::optional<ValidationError> validate_app_spec(const tenon::v1::AppSpec& spec);

// InvalidArgument "<Kind> <name>: <path>: <message>", or OK.
absl::Status check_object(const tenon::v1::Object& object);

// The naming rules, for callers that check names outside an object (e.g. a device name in a
// bootstrap token request). Each returns an empty string when valid, else why not.
std::string object_name_problem(const std::string& name, size_t max_length = 63);
std::string label_key_problem(const std::string& key);
std::string label_value_problem(const std::string& value);

}  // namespace tenon::controller
