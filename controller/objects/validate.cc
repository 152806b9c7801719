// Object validation; see validate.h. Rules follow the comments of proto/tenon/v1/fleet.proto.
#include "validate.h"

#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "manifest.h"
#include "object_meta.h"
#include "yaml_fields.h"

namespace tenon::controller {
namespace {

using tenon::v1::Object;

// App and Deployment names leave room for the "-" and 12 hex digits of derived names.
constexpr size_t kMaxObjectName = 63;
constexpr size_t kMaxAppOrDeploymentName = 50;
constexpr size_t kMaxTaskName = 15;  // what survives the guest ABI
// Labels per object or selector: enough to describe a device, and every object stays far smaller
// than a message (64 x (63 + 63) bytes at most).
constexpr size_t kMaxLabels = 64;
constexpr uint32_t kMaxRealtimePriority = 99;

bool is_label_character(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

std::optional<ValidationError> error(std::string path, std::string message) {
  return ValidationError{std::move(path), std::move(message)};
}

std::optional<ValidationError> check_labels(
    const google::protobuf::Map<std::string, std::string>& labels, const std::string& path) {
  if (labels.size() > kMaxLabels) {
    return error(path, absl::StrCat("at most ", kMaxLabels, " labels, got ", labels.size()));
  }
  // Map iteration order is unspecified: report the smallest bad key so the answer is stable.
  std::set<std::string> keys;
  for (const auto& [key, value] : labels) keys.insert(key);
  for (const std::string& key : keys) {
    const std::string entry = absl::StrCat(path, "[", key, "]");
    if (std::string problem = label_key_problem(key); !problem.empty()) {
      return error(entry, absl::StrCat("label key ", problem));
    }
    if (std::string problem = label_value_problem(labels.at(key)); !problem.empty()) {
      return error(entry, absl::StrCat("label value ", problem));
    }
  }
  return std::nullopt;
}

std::optional<ValidationError> check_duration(const google::protobuf::Duration& duration,
                                              const std::string& path) {
  if (duration.seconds() < 0 || duration.nanos() < 0 || duration.nanos() > 999999999) {
    return error(path, "must not be negative");
  }
  return std::nullopt;
}

std::optional<ValidationError> check_task(const tenon::v1::TaskSpec& task,
                                          const std::string& path) {
  if (task.name().empty()) return error(path + ".name", "a task needs a name");
  if (task.name().size() > kMaxTaskName || !yaml_fields::is_valid_name(task.name())) {
    return error(path + ".name", absl::StrCat("'", task.name(), "' is not a valid task name (1-",
                                              kMaxTaskName, " characters of a-z, 0-9, '-', '_')"));
  }
  if (task.period_ns() == 0 || task.period_ns() > kMaxTaskTimeNs) {
    return error(path + ".period_ns",
                 absl::StrCat("must be between 1 ns and one hour (", kMaxTaskTimeNs, " ns)"));
  }
  if (task.wcet_ns() == 0 || task.wcet_ns() > kMaxTaskTimeNs) {
    return error(path + ".wcet_ns",
                 absl::StrCat("must be between 1 ns and one hour (", kMaxTaskTimeNs, " ns)"));
  }
  if (task.relative_deadline_ns() > task.period_ns()) {
    return error(path + ".relative_deadline_ns",
                 absl::StrCat("deadline ", task.relative_deadline_ns(),
                              " ns exceeds the period of ", task.period_ns(), " ns"));
  }
  const uint64_t deadline =
      task.relative_deadline_ns() == 0 ? task.period_ns() : task.relative_deadline_ns();
  if (task.wcet_ns() > deadline) {
    return error(path + ".wcet_ns", absl::StrCat("worst-case execution time ", task.wcet_ns(),
                                                 " ns exceeds the deadline of ", deadline, " ns"));
  }
  if (!tenon::v1::Criticality_IsValid(task.criticality())) {
    return error(path + ".criticality", "unknown criticality");
  }
  return std::nullopt;
}

std::optional<ValidationError> check_app(const tenon::v1::App& app) {
  const tenon::v1::AppSpec& spec = app.spec();
  if (spec.program().empty()) return error("spec.program", "an app needs a program");
  if (!yaml_fields::is_valid_name(spec.program())) {
    return error(
        "spec.program",
        absl::StrCat("'", spec.program(), "' is not a valid program name (a-z, 0-9, '-', '_')"));
  }
  std::set<std::string> task_names;
  for (int i = 0; i < spec.tasks_size(); ++i) {
    const std::string path = absl::StrCat("spec.tasks[", i, "]");
    if (auto problem = check_task(spec.tasks(i), path)) return problem;
    if (!task_names.insert(spec.tasks(i).name()).second) {
      return error(path + ".name",
                   absl::StrCat("task '", spec.tasks(i).name(), "' is declared twice"));
    }
  }
  std::set<std::string> needs;
  for (int i = 0; i < spec.needs_size(); ++i) {
    const std::string path = absl::StrCat("spec.needs[", i, "]");
    if (!yaml_fields::is_valid_name(spec.needs(i))) {
      return error(path, absl::StrCat("'", spec.needs(i),
                                      "' is not a valid capability name (a-z, 0-9, '-', '_')"));
    }
    if (!needs.insert(spec.needs(i)).second) {
      return error(path, absl::StrCat("'", spec.needs(i), "' is listed twice"));
    }
  }
  if (!tenon::v1::SchedulerKind_IsValid(spec.scheduler())) {
    return error("spec.scheduler", "unknown scheduler");
  }
  return std::nullopt;
}

std::optional<ValidationError> check_selector(const tenon::v1::LabelSelector& selector,
                                              const std::string& path) {
  if (auto problem = check_labels(selector.match_labels(), path + ".match_labels")) return problem;
  using Expression = tenon::v1::LabelExpression;
  for (int i = 0; i < selector.match_expressions_size(); ++i) {
    const Expression& expression = selector.match_expressions(i);
    const std::string item = absl::StrCat(path, ".match_expressions[", i, "]");
    if (std::string problem = label_key_problem(expression.key()); !problem.empty()) {
      return error(item + ".key", absl::StrCat("label key ", problem));
    }
    switch (expression.relation()) {
      case Expression::RELATION_IN:
      case Expression::RELATION_NOT_IN:
        if (expression.values().empty()) {
          return error(item + ".values", "IN and NOT_IN need at least one value");
        }
        break;
      case Expression::RELATION_EXISTS:
      case Expression::RELATION_DOES_NOT_EXIST:
        if (!expression.values().empty()) {
          return error(item + ".values", "EXISTS and DOES_NOT_EXIST take no values");
        }
        break;
      default:
        return error(item + ".relation",
                     "a relation is required (IN, NOT_IN, EXISTS, DOES_NOT_EXIST)");
    }
    for (int j = 0; j < expression.values_size(); ++j) {
      if (std::string problem = label_value_problem(expression.values(j)); !problem.empty()) {
        return error(absl::StrCat(item, ".values[", j, "]"), absl::StrCat("label value ", problem));
      }
    }
  }
  return std::nullopt;
}

std::optional<ValidationError> check_deployment(const tenon::v1::Deployment& deployment) {
  const tenon::v1::DeploymentSpec& spec = deployment.spec();
  if (spec.app().empty()) return error("spec.app", "a deployment needs an app");
  if (std::string problem = object_name_problem(spec.app(), kMaxAppOrDeploymentName);
      !problem.empty()) {
    return error("spec.app", absl::StrCat("app name ", problem));
  }
  // An empty selector is allowed: it matches no device (fleet.proto), never all of them.
  if (auto problem = check_selector(spec.selector(), "spec.selector")) return problem;
  if (spec.placement().rt_priority() > kMaxRealtimePriority) {
    return error("spec.placement.rt_priority",
                 absl::StrCat("must be 0 (an ordinary thread) or a SCHED_FIFO priority 1-99, got ",
                              spec.placement().rt_priority()));
  }
  if (!tenon::v1::RestartPolicy_IsValid(spec.restart_policy())) {
    return error("spec.restart_policy", "unknown restart policy");
  }
  if (!tenon::v1::CompositionPolicy_IsValid(spec.composition_policy())) {
    return error("spec.composition_policy", "unknown composition policy");
  }
  const tenon::v1::RolloutPolicy& rollout = spec.rollout();
  if (auto problem = check_duration(rollout.bake_time(), "spec.rollout.bake_time")) return problem;
  if (!(rollout.max_deadline_miss_ratio() >= 0 && rollout.max_deadline_miss_ratio() <= 1)) {
    return error(
        "spec.rollout.max_deadline_miss_ratio",
        absl::StrCat("must be a ratio from 0 to 1, got ", rollout.max_deadline_miss_ratio()));
  }
  if (auto problem = check_duration(spec.runtime().app_run_time(), "spec.runtime.app_run_time")) {
    return problem;
  }
  std::set<std::string> channels;
  for (int i = 0; i < spec.channels_size(); ++i) {
    const tenon::v1::ChannelEndpoint& channel = spec.channels(i);
    const std::string item = absl::StrCat("spec.channels[", i, "]");
    // The guest's name field holds 15 characters (tenon/include/tenon/ivc.h).
    if (std::string problem = object_name_problem(channel.name(), 15); !problem.empty()) {
      return error(item + ".name", absl::StrCat("channel name ", problem));
    }
    if (!channels.insert(channel.name()).second) {
      return error(item + ".name",
                   absl::StrCat("channel '", channel.name(), "' is declared twice"));
    }
    if (channel.side() != tenon::v1::CHANNEL_SIDE_A &&
        channel.side() != tenon::v1::CHANNEL_SIDE_B) {
      return error(item + ".side", "must be A or B");
    }
  }
  return std::nullopt;
}

}  // namespace

std::string object_name_problem(const std::string& name, size_t max_length) {
  const std::string rule = absl::StrCat("(1-", max_length,
                                        " characters of a-z, 0-9 and '-', starting with a letter, "
                                        "not ending in '-')");
  if (name.empty()) return absl::StrCat("must not be empty ", rule);
  if (name.size() > max_length) {
    return absl::StrCat("'", name, "' is ", name.size(), " characters long ", rule);
  }
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
      return absl::StrCat("'", name, "' is not a valid name ", rule);
    }
  }
  if (!(name.front() >= 'a' && name.front() <= 'z') || name.back() == '-') {
    return absl::StrCat("'", name, "' is not a valid name ", rule);
  }
  return "";
}

std::string label_key_problem(const std::string& key) {
  if (key.empty() || key.size() > 63) {
    return absl::StrCat("'", key, "' must be 1-63 characters of A-Z, a-z, 0-9, '.', '_', '-'");
  }
  for (char c : key) {
    if (!is_label_character(c)) {
      return absl::StrCat("'", key, "' must be 1-63 characters of A-Z, a-z, 0-9, '.', '_', '-'");
    }
  }
  return "";
}

std::string label_value_problem(const std::string& value) {
  bool valid = value.size() <= 63;
  for (char c : value) valid = valid && is_label_character(c);
  if (!valid) {
    return absl::StrCat("'", value, "' must be 0-63 characters of A-Z, a-z, 0-9, '.', '_', '-'");
  }
  return "";
}

std::optional<ValidationError> validate_object(const Object& object) {
  const tenon::v1::ObjectKind kind = object_kind(object);
  switch (kind) {
    case tenon::v1::OBJECT_KIND_DEVICE:
    case tenon::v1::OBJECT_KIND_APP:
    case tenon::v1::OBJECT_KIND_DEPLOYMENT:
      break;
    case tenon::v1::OBJECT_KIND_INSTANCE:
    case tenon::v1::OBJECT_KIND_COMPOSITION:
      return error("kind", absl::StrCat(kind_name(kind),
                                        " objects are derived by the controller and cannot be "
                                        "applied (only Device, App and Deployment)"));
    default:
      return error("kind", "the object holds no kind (Device, App or Deployment)");
  }
  const tenon::v1::ObjectMeta& meta = object_meta(object);
  const size_t max_name =
      kind == tenon::v1::OBJECT_KIND_DEVICE ? kMaxObjectName : kMaxAppOrDeploymentName;
  if (std::string problem = object_name_problem(meta.name(), max_name); !problem.empty()) {
    return error("metadata.name", problem);
  }
  if (auto problem = check_labels(meta.labels(), "metadata.labels")) return problem;
  if (kind == tenon::v1::OBJECT_KIND_APP) return check_app(object.app());
  if (kind == tenon::v1::OBJECT_KIND_DEPLOYMENT) return check_deployment(object.deployment());
  return std::nullopt;
}

absl::Status check_object(const Object& object) {
  std::optional<ValidationError> problem = validate_object(object);
  if (!problem) return absl::OkStatus();
  const std::string& name = object_meta(object).name();
  return absl::InvalidArgumentError(absl::StrCat(kind_name(object_kind(object)), " ",
                                                 name.empty() ? "(unnamed)" : name, ": ",
                                                 problem->path, ": ", problem->message));
}

std::optional<ValidationError> validate_app_spec(const tenon::v1::AppSpec& spec) {
  tenon::v1::App app;
  *app.mutable_spec() = spec;
  return check_app(app);
}

}  // namespace tenon::controller
