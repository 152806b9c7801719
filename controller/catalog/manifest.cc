// Parsing and per-file validation of library.yaml and app.yaml; see manifest.h.
#include "manifest.h"

#include <fstream>
#include <set>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "yaml_fields.h"

namespace tenon::controller {

using yaml_fields::error_at;
using yaml_fields::MappingReader;

const char* layer_name(LibraryLayer layer) {
  return layer == LibraryLayer::kTenon ? "tenon" : "mortise";
}

const char* option_type_name(OptionType type) {
  switch (type) {
    case OptionType::kInteger:
      return "integer";
    case OptionType::kBoolean:
      return "boolean";
    case OptionType::kString:
      return "string";
  }
  return "?";
}

const char* scheduler_name(SchedulerKind kind) {
  switch (kind) {
    case SchedulerKind::kFixedPriority:
      return "fixed-priority";
    case SchedulerKind::kEarliestDeadlineFirst:
      return "edf";
    case SchedulerKind::kNone:
      return "none";
  }
  return "none";
}

std::string OptionValue::to_string() const {
  switch (type) {
    case OptionType::kInteger:
      return absl::StrCat(integer);
    case OptionType::kBoolean:
      return boolean ? "true" : "false";
    case OptionType::kString:
      return text;
  }
  return "";
}

int LibraryManifest::line_of(const std::string& field) const {
  auto it = field_lines.find(field);
  return it == field_lines.end() ? 1 : it->second;
}

int AppSpec::line_of(const std::string& field) const {
  auto it = field_lines.find(field);
  return it == field_lines.end() ? 1 : it->second;
}

absl::StatusOr<std::string> read_text_file(const std::string& path) {
  std::ifstream stream(path, std::ios::binary);
  if (!stream) return absl::NotFoundError(absl::StrCat(path, ": cannot open file"));
  std::ostringstream contents;
  contents << stream.rdbuf();
  if (stream.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return contents.str();
}

namespace {

// Reads a value of `type` from `node` for option field `field`.
absl::StatusOr<OptionValue> parse_option_value(const std::string& file, const YAML::Node& node,
                                               OptionType type, const std::string& field) {
  OptionValue value;
  value.type = type;
  switch (type) {
    case OptionType::kInteger: {
      absl::StatusOr<int64_t> integer = yaml_fields::parse_signed(file, node, field);
      if (!integer.ok()) return integer.status();
      value.integer = *integer;
      break;
    }
    case OptionType::kBoolean: {
      absl::StatusOr<bool> boolean = yaml_fields::parse_boolean(file, node, field);
      if (!boolean.ok()) return boolean.status();
      value.boolean = *boolean;
      break;
    }
    case OptionType::kString: {
      absl::StatusOr<std::string> text = yaml_fields::parse_string(file, node, field);
      if (!text.ok()) return text.status();
      value.text = *text;
      break;
    }
  }
  return value;
}

absl::StatusOr<OptionSpec> parse_option(const std::string& file, const YAML::Node& node,
                                        const std::string& prefix) {
  MappingReader reader(file, node, prefix);
  if (absl::Status status = reader.check_shape(); !status.ok()) return status;
  if (absl::Status status = reader.no_unknown_keys({"name", "type", "default", "min", "max"});
      !status.ok()) {
    return status;
  }
  OptionSpec option;
  option.line = node.Mark().line + 1;
  absl::StatusOr<std::string> name = reader.string("name", true);
  if (!name.ok()) return name.status();
  if (!yaml_fields::is_valid_name(*name)) {
    return error_at(file, reader.get("name"), reader.field("name"), "not a valid option name");
  }
  option.name = *name;
  absl::StatusOr<std::string> type = reader.string("type", true);
  if (!type.ok()) return type.status();
  if (*type == "integer") {
    option.type = OptionType::kInteger;
  } else if (*type == "boolean") {
    option.type = OptionType::kBoolean;
  } else if (*type == "string") {
    option.type = OptionType::kString;
  } else {
    return error_at(file, reader.get("type"), reader.field("type"),
                    absl::StrCat("unknown type '", *type, "' (integer, boolean or string)"));
  }
  if (!reader.has("default")) {
    return error_at(file, node, reader.field("default"), "missing required field");
  }
  absl::StatusOr<OptionValue> default_value =
      parse_option_value(file, reader.get("default"), option.type, reader.field("default"));
  if (!default_value.ok()) return default_value.status();
  option.default_value = *default_value;
  for (const char* bound : {"min", "max"}) {
    if (!reader.has(bound)) continue;
    if (option.type != OptionType::kInteger) {
      return error_at(file, reader.get(bound), reader.field(bound),
                      "only integer options have a range");
    }
    absl::StatusOr<int64_t> value =
        yaml_fields::parse_signed(file, reader.get(bound), reader.field(bound));
    if (!value.ok()) return value.status();
    (std::string_view(bound) == "min" ? option.minimum : option.maximum) = *value;
  }
  if (option.minimum && option.maximum && *option.minimum > *option.maximum) {
    return error_at(file, reader.get("min"), reader.field("min"),
                    absl::StrCat("min ", *option.minimum, " is above max ", *option.maximum));
  }
  if (option.type == OptionType::kInteger) {
    const int64_t value = option.default_value.integer;
    if ((option.minimum && value < *option.minimum) ||
        (option.maximum && value > *option.maximum)) {
      return error_at(file, reader.get("default"), reader.field("default"),
                      absl::StrCat("default ", value, " is outside [",
                                   option.minimum ? absl::StrCat(*option.minimum) : "-inf", ", ",
                                   option.maximum ? absl::StrCat(*option.maximum) : "inf", "]"));
    }
  }
  return option;
}

absl::StatusOr<SchedulerKind> parse_scheduler(const std::string& file, const YAML::Node& node,
                                              const std::string& field) {
  absl::StatusOr<std::string> text = yaml_fields::parse_string(file, node, field);
  if (!text.ok()) return text.status();
  if (*text == "fixed-priority") return SchedulerKind::kFixedPriority;
  if (*text == "edf") return SchedulerKind::kEarliestDeadlineFirst;
  return error_at(file, node, field,
                  absl::StrCat("unknown scheduler '", *text, "' (fixed-priority or edf)"));
}

}  // namespace

absl::StatusOr<LibraryManifest> parse_library_manifest(std::string_view text,
                                                       const std::string& file) {
  absl::StatusOr<YAML::Node> root = yaml_fields::load_mapping(text, file);
  if (!root.ok()) return root.status();
  MappingReader reader(file, *root, "");
  if (absl::Status status = reader.check_shape(); !status.ok()) return status;
  if (absl::Status status = reader.no_unknown_keys(
          {"name", "layer", "summary", "archs", "provides", "requires", "uses", "conflicts",
           "options", "host_features", "host_requires", "scheduling"});
      !status.ok()) {
    return status;
  }
  LibraryManifest manifest;
  manifest.location = {file, 1};
  for (const auto& entry : *root)
    manifest.field_lines[entry.first.Scalar()] = entry.first.Mark().line + 1;

  absl::StatusOr<std::string> name = reader.string("name", true);
  if (!name.ok()) return name.status();
  if (!yaml_fields::is_valid_name(*name)) {
    return error_at(file, reader.get("name"), "name",
                    absl::StrCat("'", *name, "' is not a valid library name (a-z, 0-9, '-', '_')"));
  }
  manifest.name = *name;
  absl::StatusOr<std::string> layer = reader.string("layer", true);
  if (!layer.ok()) return layer.status();
  if (*layer == "tenon") {
    manifest.layer = LibraryLayer::kTenon;
  } else if (*layer == "mortise") {
    manifest.layer = LibraryLayer::kMortise;
  } else {
    return error_at(file, reader.get("layer"), "layer",
                    absl::StrCat("unknown layer '", *layer, "' (tenon or mortise)"));
  }
  absl::StatusOr<std::string> summary = reader.string("summary", true);
  if (!summary.ok()) return summary.status();
  if (summary->empty())
    return error_at(file, reader.get("summary"), "summary", "must not be empty");
  manifest.summary = *summary;

  struct ListField {
    const char* key;
    bool required;
    std::vector<std::string>* target;
  };
  for (const ListField& list :
       std::initializer_list<ListField>{{"archs", true, &manifest.archs},
                                        {"provides", true, &manifest.provides},
                                        {"requires", true, &manifest.requires_capabilities},
                                        {"uses", false, &manifest.uses},
                                        {"conflicts", true, &manifest.conflicts},
                                        {"host_features", false, &manifest.host_features},
                                        {"host_requires", false, &manifest.host_requires}}) {
    absl::StatusOr<std::vector<std::string>> values = reader.string_list(list.key, list.required);
    if (!values.ok()) return values.status();
    *list.target = std::move(*values);
  }
  if (manifest.archs.empty()) {
    return error_at(file, reader.get("archs"), "archs", "a library supports at least one arch");
  }
  for (size_t i = 0; i < manifest.archs.size(); ++i) {
    if (manifest.archs[i] != "x86_64" && manifest.archs[i] != "arm64") {
      return error_at(file, reader.get("archs")[i], absl::StrCat("archs[", i, "]"),
                      absl::StrCat("unknown arch '", manifest.archs[i], "' (x86_64 or arm64)"));
    }
  }
  for (size_t i = 0; i < manifest.conflicts.size(); ++i) {
    if (manifest.conflicts[i] == manifest.name) {
      return error_at(file, reader.get("conflicts")[i], absl::StrCat("conflicts[", i, "]"),
                      "a library cannot conflict with itself");
    }
  }
  for (const std::vector<std::string>* key : {&manifest.requires_capabilities, &manifest.uses}) {
    const char* field = key == &manifest.uses ? "uses" : "requires";
    for (size_t i = 0; i < key->size(); ++i) {
      for (const std::string& provided : manifest.provides) {
        if ((*key)[i] == provided) {
          return error_at(file, reader.get(field)[i], absl::StrCat(field, "[", i, "]"),
                          absl::StrCat("the library requires '", provided,
                                       "', which it provides itself (a dependency cycle)"));
        }
      }
    }
  }

  if (reader.has("options")) {
    const YAML::Node options = reader.get("options");
    if (!options.IsNull() && !options.IsSequence()) {
      return error_at(file, options, "options", "expected a list of options");
    }
    std::set<std::string> names;
    for (size_t i = 0; options.IsSequence() && i < options.size(); ++i) {
      absl::StatusOr<OptionSpec> option =
          parse_option(file, options[i], absl::StrCat("options[", i, "]."));
      if (!option.ok()) return option.status();
      if (!names.insert(option->name).second) {
        return error_at(file, options[i], absl::StrCat("options[", i, "].name"),
                        absl::StrCat("option '", option->name, "' declared twice"));
      }
      manifest.options.push_back(std::move(*option));
    }
  } else {
    return error_at(file, *root, "options", "missing required field");
  }
  if (reader.has("scheduling")) {
    absl::StatusOr<SchedulerKind> kind =
        parse_scheduler(file, reader.get("scheduling"), "scheduling");
    if (!kind.ok()) return kind.status();
    manifest.scheduling = *kind;
  }
  return manifest;
}

absl::StatusOr<AppSpec> parse_app_spec(std::string_view text, const std::string& file) {
  absl::StatusOr<YAML::Node> root = yaml_fields::load_mapping(text, file);
  if (!root.ok()) return root.status();
  MappingReader reader(file, *root, "");
  if (absl::Status status = reader.check_shape(); !status.ok()) return status;
  if (absl::Status status =
          reader.no_unknown_keys({"name", "program", "summary", "needs", "tasks", "scheduler",
                                  "heap_bytes", "libraries", "options"});
      !status.ok()) {
    return status;
  }
  AppSpec spec;
  spec.location = {file, 1};
  for (const auto& entry : *root)
    spec.field_lines[entry.first.Scalar()] = entry.first.Mark().line + 1;
  absl::StatusOr<std::string> name = reader.string("name", !reader.has("program"));
  if (!name.ok()) return name.status();
  absl::StatusOr<std::string> program = reader.string("program", false);
  if (!program.ok()) return program.status();
  spec.name = name->empty() ? *program : *name;
  spec.program = program->empty() ? *name : *program;
  if (!yaml_fields::is_valid_name(spec.name) || !yaml_fields::is_valid_name(spec.program)) {
    const char* field = reader.has("program") ? "program" : "name";
    return error_at(file, reader.get(field), field, "not a valid name (a-z, 0-9, '-', '_')");
  }
  absl::StatusOr<std::string> summary = reader.string("summary", false);
  if (!summary.ok()) return summary.status();
  spec.summary = *summary;
  absl::StatusOr<std::vector<std::string>> needs = reader.string_list("needs", false);
  if (!needs.ok()) return needs.status();
  spec.needs = std::move(*needs);
  absl::StatusOr<std::vector<std::string>> libraries = reader.string_list("libraries", false);
  if (!libraries.ok()) return libraries.status();
  spec.libraries = std::move(*libraries);
  absl::StatusOr<uint64_t> heap = reader.unsigned_integer("heap_bytes", false);
  if (!heap.ok()) return heap.status();
  if (*heap > (1ull << 30)) {
    return error_at(file, reader.get("heap_bytes"), "heap_bytes", "more than 1 GiB of heap");
  }
  spec.heap_bytes = *heap;
  if (reader.has("scheduler")) {
    absl::StatusOr<SchedulerKind> kind =
        parse_scheduler(file, reader.get("scheduler"), "scheduler");
    if (!kind.ok()) return kind.status();
    spec.scheduler = *kind;
  }

  if (reader.has("tasks")) {
    spec.tasks_given = true;
    const YAML::Node tasks = reader.get("tasks");
    if (!tasks.IsNull() && !tasks.IsSequence()) {
      return error_at(file, tasks, "tasks", "expected a list of tasks");
    }
    std::set<std::string> names;
    for (size_t i = 0; tasks.IsSequence() && i < tasks.size(); ++i) {
      const std::string prefix = absl::StrCat("tasks[", i, "].");
      MappingReader task_reader(file, tasks[i], prefix);
      if (absl::Status status = task_reader.check_shape(); !status.ok()) return status;
      if (absl::Status status = task_reader.no_unknown_keys(
              {"name", "period_ns", "relative_deadline_ns", "wcet_ns", "priority"});
          !status.ok()) {
        return status;
      }
      TaskSpec task;
      task.line = tasks[i].Mark().line + 1;
      absl::StatusOr<std::string> task_name = task_reader.string("name", true);
      if (!task_name.ok()) return task_name.status();
      // The telemetry page keeps 15 characters and a NUL (tenon::abi::kTaskNameMax).
      if (!yaml_fields::is_valid_name(*task_name) || task_name->size() > 15) {
        return error_at(file, task_reader.get("name"), prefix + "name",
                        "task names are 1..15 characters of a-z, 0-9, '-', '_'");
      }
      if (!names.insert(*task_name).second) {
        return error_at(file, task_reader.get("name"), prefix + "name",
                        absl::StrCat("task '", *task_name, "' declared twice"));
      }
      task.name = *task_name;
      absl::StatusOr<uint64_t> period = task_reader.unsigned_integer("period_ns", true);
      if (!period.ok()) return period.status();
      absl::StatusOr<uint64_t> deadline =
          task_reader.unsigned_integer("relative_deadline_ns", false, 0);
      if (!deadline.ok()) return deadline.status();
      absl::StatusOr<uint64_t> wcet = task_reader.unsigned_integer("wcet_ns", true);
      if (!wcet.ok()) return wcet.status();
      absl::StatusOr<uint64_t> priority = task_reader.unsigned_integer("priority", false, 0);
      if (!priority.ok()) return priority.status();
      if (*period == 0 || *period > kMaxTaskTimeNs) {
        return error_at(file, task_reader.get("period_ns"), prefix + "period_ns",
                        "the period must be between 1 ns and one hour");
      }
      if (*deadline > *period) {
        return error_at(file, task_reader.get("relative_deadline_ns"),
                        prefix + "relative_deadline_ns",
                        absl::StrCat("the deadline ", *deadline, " ns is beyond the period ",
                                     *period, " ns (Tenon runs one job of a task at a time)"));
      }
      if (*wcet == 0 || *wcet > kMaxTaskTimeNs) {
        return error_at(file, task_reader.get("wcet_ns"), prefix + "wcet_ns",
                        "the worst-case execution time must be between 1 ns and one hour");
      }
      if (*priority > 0xffffffffull) {
        return error_at(file, task_reader.get("priority"), prefix + "priority",
                        "the priority must fit 32 bits");
      }
      task.period_ns = *period;
      task.relative_deadline_ns = *deadline == 0 ? *period : *deadline;
      task.wcet_ns = *wcet;
      task.priority = static_cast<uint32_t>(*priority);
      spec.tasks.push_back(std::move(task));
    }
  }

  if (reader.has("options")) {
    const YAML::Node options = reader.get("options");
    MappingReader libraries_reader(file, options, "options.");
    if (absl::Status status = libraries_reader.check_shape(); !status.ok()) return status;
    for (const auto& library : options) {
      const std::string library_name = library.first.Scalar();
      MappingReader option_reader(file, library.second,
                                  absl::StrCat("options.", library_name, "."));
      if (absl::Status status = option_reader.check_shape(); !status.ok()) return status;
      for (const auto& option : library.second) {
        // Types are checked against the manifest at composition; kept as text until then.
        absl::StatusOr<std::string> value = yaml_fields::parse_string(
            file, option.second,
            absl::StrCat("options.", library_name, ".", option.first.Scalar()));
        if (!value.ok()) return value.status();
        OptionValue raw;
        raw.type = OptionType::kString;
        raw.text = *value;
        spec.options[library_name][option.first.Scalar()] = raw;
        spec.field_lines[absl::StrCat("options.", library_name, ".", option.first.Scalar())] =
            option.first.Mark().line + 1;
      }
    }
  }
  return spec;
}

}  // namespace tenon::controller
