// Rendering compositions; see render.h.
#include "render.h"

#include "absl/strings/str_cat.h"

namespace tenon::controller {
namespace {

using Json = nlohmann::ordered_json;

Json option_value(const OptionValue& value) {
  switch (value.type) {
    case OptionType::kInteger:
      return value.integer;
    case OptionType::kBoolean:
      return value.boolean;
    case OptionType::kString:
      return value.text;
  }
  return nullptr;
}

Json footprint_json(const Footprint& footprint) {
  return Json{{"text_bytes", footprint.text_bytes},
              {"rodata_bytes", footprint.rodata_bytes},
              {"data_bytes", footprint.data_bytes},
              {"bss_bytes", footprint.bss_bytes}};
}

void emit(const Json& node, int indent, std::string* out);

void emit_scalar(const Json& node, std::string* out) {
  if (node.is_string()) {
    absl::StrAppend(out, node.dump());  // a JSON string is a valid double-quoted YAML scalar
  } else {
    absl::StrAppend(out, node.dump());
  }
}

bool is_empty_container(const Json& node) {
  return (node.is_object() || node.is_array()) && node.empty();
}

void emit(const Json& node, int indent, std::string* out) {
  const std::string pad(indent, ' ');
  if (node.is_object()) {
    for (const auto& [key, value] : node.items()) {
      absl::StrAppend(out, pad, key, ":");
      if (is_empty_container(value)) {
        absl::StrAppend(out, value.is_object() ? " {}\n" : " []\n");
      } else if (value.is_object() || value.is_array()) {
        absl::StrAppend(out, "\n");
        emit(value, indent + 2, out);
      } else {
        absl::StrAppend(out, " ");
        emit_scalar(value, out);
        absl::StrAppend(out, "\n");
      }
    }
  } else if (node.is_array()) {
    for (const Json& value : node) {
      if (is_empty_container(value)) {
        absl::StrAppend(out, pad, "- ", value.is_object() ? "{}\n" : "[]\n");
      } else if (value.is_object()) {
        // The first key goes on the dash's line.
        std::string inner;
        emit(value, indent + 2, &inner);
        absl::StrAppend(out, pad, "- ", inner.substr(indent + 2));
      } else if (value.is_array()) {
        absl::StrAppend(out, pad, "-\n");
        emit(value, indent + 2, out);
      } else {
        absl::StrAppend(out, pad, "- ");
        emit_scalar(value, out);
        absl::StrAppend(out, "\n");
      }
    }
  } else {
    absl::StrAppend(out, pad);
    emit_scalar(node, out);
    absl::StrAppend(out, "\n");
  }
}

}  // namespace

Json composition_to_json(const Composition& composition) {
  Json document;
  document["name"] = composition.name;
  Json inputs;
  inputs["app"] = composition.app.name;
  inputs["program"] = composition.app.program;
  inputs["device"] = composition.device_name;
  inputs["arch"] = composition.arch;
  inputs["policy"] = "minimise-footprint";
  inputs["needs"] = composition.app.needs;
  inputs["scheduler"] = std::string(scheduler_name(composition.app.scheduler));
  inputs["catalog_digest"] = "sha256:" + composition.catalog_digest;
  inputs["input_digest"] = "sha256:" + composition.input_digest;
  document["inputs"] = inputs;
  Json libraries = Json::array();
  for (const ChosenLibrary& library : composition.libraries) {
    Json entry;
    entry["name"] = library.name;
    entry["layer"] = std::string(layer_name(library.layer));
    Json config = Json::object();
    for (const auto& [name, value] : library.config) config[name] = option_value(value);
    entry["config"] = config;
    entry["provides"] = library.provides;
    entry["footprint_bytes"] = library.footprint.total_bytes();
    entry["footprint"] = footprint_json(library.footprint);
    entry["reason"] = library.reason;
    libraries.push_back(entry);
  }
  document["libraries"] = libraries;
  Json mortise = Json::array();
  for (const ChosenLibrary& library : composition.mortise_libraries) {
    mortise.push_back(Json{{"name", library.name},
                           {"layer", std::string(layer_name(library.layer))},
                           {"provides", library.provides},
                           {"reason", library.reason}});
  }
  document["mortise_libraries"] = mortise;
  document["program_footprint"] = footprint_json(composition.program->footprint);
  document["footprint_bytes"] = composition.footprint_bytes;
  const MemoryPlan& plan = composition.memory_plan;
  Json memory;
  memory["total_bytes"] = plan.total_bytes;
  memory["image_end_bound"] = plan.image_end_bound;
  memory["heap_bytes"] = plan.heap_bytes;
  memory["task_stack_bytes"] = plan.task_stack_bytes;
  memory["boot_stack_bytes"] = plan.boot_stack_bytes;
  memory["page_table_bytes"] = plan.page_table_bytes;
  Json regions = Json::array();
  for (const MemoryRegion& region : plan.regions) {
    regions.push_back(Json{{"name", region.name},
                           {"guest_address", region.guest_address},
                           {"size_bytes", region.size_bytes},
                           {"access", std::string(memory_access_name(region.access))}});
  }
  memory["regions"] = regions;
  document["memory_plan"] = memory;
  const SchedulabilityVerdict& verdict = composition.schedulability;
  Json schedulability;
  schedulability["result"] = !verdict.analysed     ? "not-analysed"
                             : verdict.schedulable ? "schedulable"
                                                   : "unschedulable";
  schedulability["scheduler"] = std::string(scheduler_name(verdict.scheduler));
  schedulability["analysis"] = verdict.analysis;
  schedulability["utilisation"] = verdict.utilisation;
  schedulability["per_job_overhead_ns"] = verdict.per_job_overhead_ns;
  if (verdict.scheduler == SchedulerKind::kEarliestDeadlineFirst && verdict.analysed) {
    schedulability["demand_points_checked"] = verdict.demand_points_checked;
    schedulability["demand_horizon_ns"] = verdict.demand_horizon_ns;
  }
  Json tasks = Json::array();
  for (const TaskVerdict& task : verdict.tasks) {
    tasks.push_back(Json{{"task_name", task.name},
                         {"period_ns", task.period_ns},
                         {"relative_deadline_ns", task.relative_deadline_ns},
                         {"wcet_ns", task.wcet_ns},
                         {"priority", task.priority},
                         {"worst_case_response_time_ns", task.worst_case_response_time_ns},
                         {"meets_deadline", task.meets_deadline}});
  }
  schedulability["tasks"] = tasks;
  document["schedulability"] = schedulability;
  document["explanation"] = composition.explanation;
  return document;
}

std::string json_to_yaml(const Json& document) {
  std::string out;
  emit(document, 0, &out);
  return out;
}

}  // namespace tenon::controller
