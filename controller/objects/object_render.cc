// Rendering objects as documents, tables and describe text; see object_render.h.
#include "object_render.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "object_manifest.h"
#include "object_meta.h"
#include "render.h"  // json_to_yaml
#include "time/proto_time.h"

namespace tenon::controller {
namespace {

using Json = nlohmann::ordered_json;
using tenon::v1::Object;

constexpr const char* kNone = "<none>";

const google::protobuf::Message& kind_message(const Object& object) {
  const google::protobuf::FieldDescriptor* field =
      Object::descriptor()->FindFieldByNumber(static_cast<int>(object.kind_case()));
  return object.GetReflection()->GetMessage(object, field);
}

std::string age_since(const google::protobuf::Timestamp& timestamp, absl::Time now,
                      const char* unset = "<unknown>") {
  if (timestamp.seconds() == 0 && timestamp.nanos() == 0) return unset;
  absl::StatusOr<absl::Time> time = tenon::time::from_proto(timestamp, "time");
  if (!time.ok()) return "<invalid>";
  return format_age(now - *time);
}

std::string label_text(const google::protobuf::Map<std::string, std::string>& labels) {
  if (labels.empty()) return kNone;
  std::set<std::string> pairs;
  for (const auto& [key, value] : labels) pairs.insert(absl::StrCat(key, "=", value));
  return absl::StrJoin(pairs, ",");
}

std::string selector_text(const tenon::v1::LabelSelector& selector) {
  std::vector<std::string> terms;
  std::set<std::string> pairs;
  for (const auto& [key, value] : selector.match_labels())
    pairs.insert(absl::StrCat(key, "=", value));
  terms.assign(pairs.begin(), pairs.end());
  using Expression = tenon::v1::LabelExpression;
  for (const Expression& expression : selector.match_expressions()) {
    const std::string values = absl::StrJoin(expression.values(), ",");
    switch (expression.relation()) {
      case Expression::RELATION_IN:
        terms.push_back(absl::StrCat(expression.key(), " in (", values, ")"));
        break;
      case Expression::RELATION_NOT_IN:
        terms.push_back(absl::StrCat(expression.key(), " notin (", values, ")"));
        break;
      case Expression::RELATION_EXISTS:
        terms.push_back(expression.key());
        break;
      case Expression::RELATION_DOES_NOT_EXIST:
        terms.push_back(absl::StrCat("!", expression.key()));
        break;
      default:
        terms.push_back(absl::StrCat(expression.key(), " ?"));
        break;
    }
  }
  return terms.empty() ? std::string("<matches nothing>") : absl::StrJoin(terms, ",");
}

std::string byte_size(uint64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, "B");
  if (bytes < 1024 * 1024) return absl::StrFormat("%.1fKiB", bytes / 1024.0);
  if (bytes < uint64_t{1024} * 1024 * 1024) return absl::StrFormat("%.1fMiB", bytes / 1048576.0);
  return absl::StrFormat("%.1fGiB", bytes / 1073741824.0);
}

std::string placement_text(const tenon::v1::Placement& placement) {
  return absl::StrCat(
      placement.dedicated_core() ? "dedicated-core" : "shared-core",
      ",rt=", placement.rt_priority(), ",memory=",
      placement.memory_bytes() == 0 ? std::string("plan") : byte_size(placement.memory_bytes()));
}

// "sha256:" and the first 12 hex digits, as image references are usually shown.
std::string short_digest(const std::string& digest) {
  if (digest.empty()) return kNone;
  const size_t colon = digest.find(':');
  const size_t keep = colon == std::string::npos ? 12 : colon + 1 + 12;
  return digest.substr(0, std::min(keep, digest.size()));
}

// A latency for people: microseconds below a millisecond, milliseconds above.
std::string latency_text(double nanoseconds) {
  if (nanoseconds >= 1e6) return absl::StrFormat("%.2fms", nanoseconds / 1e6);
  return absl::StrFormat("%.1fµs", nanoseconds / 1000.0);
}

std::string exit_reason_text(const tenon::v1::ExitReason& reason) {
  if (reason.kind() == tenon::v1::EXIT_KIND_UNSPECIFIED) return kNone;
  std::string text = enum_display_name(tenon::v1::ExitKind_descriptor(), reason.kind());
  if (reason.kind() == tenon::v1::EXIT_KIND_GUEST_EXIT)
    absl::StrAppend(&text, "(", reason.status(), ")");
  return text;
}

// Cells are measured in characters, not bytes ("µs").
size_t display_width(const std::string& text) {
  size_t width = 0;
  for (unsigned char c : text) width += (c & 0xC0) != 0x80;
  return width;
}

std::string nonempty(const std::string& text) { return text.empty() ? kNone : text; }

void add_device_row(const tenon::v1::Device& device, TableStyle style, absl::Time now,
                    Table* table) {
  const tenon::v1::DeviceStatus& status = device.status();
  std::string state =
      enum_display_name(tenon::v1::ConnectionState_descriptor(), status.connection_state());
  if (device.spec().cordoned()) absl::StrAppend(&state, ",Cordoned");
  std::vector<std::string> row = {device.metadata().name(), state,
                                  absl::StrCat(status.instance_count()),
                                  age_since(device.metadata().create_time(), now)};
  if (style == TableStyle::kWide) {
    const tenon::v1::DeviceProfile& profile = status.profile();
    const bool reported = status.has_profile();
    row.push_back(reported ? enum_display_name(tenon::v1::Arch_descriptor(), profile.arch())
                           : std::string(kNone));
    row.push_back(reported ? absl::StrCat(profile.cores()) : std::string(kNone));
    row.push_back(reported ? absl::StrCat(profile.realtime_cores()) : std::string(kNone));
    // Agents that predate the QEMU engine report none: they run Mortise on KVM.
    row.push_back(reported ? (profile.engine().empty() ? "kvm" : profile.engine())
                           : std::string(kNone));
    row.push_back(age_since(status.last_seen(), now, "<never>"));
    row.push_back(absl::StrCat(status.desired_state_version(), "/",
                               status.acknowledged_desired_state_version()));
    row.push_back(label_text(device.metadata().labels()));
  }
  table->rows.push_back(std::move(row));
}

void add_app_row(const tenon::v1::App& app, absl::Time now, Table* table) {
  table->rows.push_back({app.metadata().name(), nonempty(app.spec().program()),
                         absl::StrCat(app.spec().tasks_size()),
                         age_since(app.metadata().create_time(), now)});
}

void add_deployment_row(const tenon::v1::Deployment& deployment, TableStyle style, absl::Time now,
                        Table* table) {
  const tenon::v1::DeploymentStatus& status = deployment.status();
  std::vector<std::string> row = {
      deployment.metadata().name(),
      nonempty(deployment.spec().app()),
      absl::StrCat(status.matched_devices()),
      absl::StrCat(status.running_instances()),
      absl::StrCat(status.updated_instances()),
      status.phase() == tenon::v1::ROLLOUT_PHASE_UNSPECIFIED
          ? std::string(kNone)
          : enum_display_name(tenon::v1::RolloutPhase_descriptor(), status.phase()),
      age_since(deployment.metadata().create_time(), now)};
  if (style == TableStyle::kWide) {
    row.push_back(selector_text(deployment.spec().selector()));
    row.push_back(placement_text(deployment.spec().placement()));
  }
  table->rows.push_back(std::move(row));
}

void add_instance_row(const tenon::v1::Instance& instance, TableStyle style, absl::Time now,
                      Table* table) {
  const tenon::v1::InstanceStatus& status = instance.status();
  double worst_p99 = -1;
  uint64_t misses = 0;
  for (const tenon::v1::TaskLatency& task : status.latency().tasks()) {
    if (task.release_latency().count() > 0) {
      worst_p99 = std::max(worst_p99, task.release_latency().p99_ns());
    }
    misses += task.deadline_misses();
  }
  std::vector<std::string> row = {
      instance.metadata().name(),
      nonempty(instance.spec().device()),
      nonempty(instance.spec().deployment()),
      enum_display_name(tenon::v1::InstanceState_descriptor(), status.observed_state()),
      absl::StrCat(status.restart_count()),
      worst_p99 < 0 ? std::string(kNone) : latency_text(worst_p99),
      absl::StrCat(misses),
      age_since(instance.metadata().create_time(), now)};
  if (style == TableStyle::kWide) {
    row.push_back(short_digest(status.image_digest()));
    row.push_back(exit_reason_text(status.exit_reason()));
    row.push_back(nonempty(status.message()));
  }
  table->rows.push_back(std::move(row));
}

void add_composition_row(const tenon::v1::Composition& composition, absl::Time now, Table* table) {
  table->rows.push_back(
      {composition.metadata().name(), absl::StrCat(composition.libraries_size()),
       composition.image_digest().empty() ? std::string("<not built>")
                                          : short_digest(composition.image_digest()),
       composition.image_size_bytes() == 0 ? std::string(kNone)
                                           : byte_size(composition.image_size_bytes()),
       age_since(composition.metadata().create_time(), now)});
}

// ---- describe ----------------------------------------------------------------------------------

bool is_scalar(const Json& value) { return !value.is_object() && !value.is_array(); }

std::string scalar_text(const Json& value) {
  if (value.is_string()) return value.get<std::string>();
  return value.dump();
}

void describe_json(const Json& node, int indent, std::string* out);

// One "key: value" line, or "key:" and the value's fields indented below it.
void describe_field(const std::string& key, const Json& value, int indent, std::string* out) {
  const std::string pad(indent, ' ');
  if (is_scalar(value)) {
    absl::StrAppend(out, pad, key, ": ", scalar_text(value), "\n");
  } else if (value.empty()) {
    absl::StrAppend(out, pad, key, ": ", kNone, "\n");
  } else if (value.is_array() && std::all_of(value.begin(), value.end(), is_scalar)) {
    std::vector<std::string> items;
    for (const Json& item : value) items.push_back(scalar_text(item));
    absl::StrAppend(out, pad, key, ": ", absl::StrJoin(items, ", "), "\n");
  } else if (value.is_array()) {
    absl::StrAppend(out, pad, key, ":\n");
    for (const Json& item : value) {
      if (is_scalar(item)) {
        absl::StrAppend(out, pad, "  - ", scalar_text(item), "\n");
        continue;
      }
      // The first field of each item goes on the "- " line, the rest aligned under it.
      std::string item_text;
      describe_json(item, indent + 4, &item_text);
      if (item_text.size() >= static_cast<size_t>(indent + 4)) {
        item_text.replace(indent, 4, "  - ");
      }
      absl::StrAppend(out, item_text);
    }
  } else {
    absl::StrAppend(out, pad, key, ":\n");
    describe_json(value, indent + 2, out);
  }
}

void describe_json(const Json& node, int indent, std::string* out) {
  for (const auto& [key, value] : node.items()) describe_field(key, value, indent, out);
}

std::string latency_table(const tenon::v1::LatencyTelemetry& latency) {
  Table table;
  table.columns = {"TASK", "JOBS", "MISSES", "P50", "P99", "MAX"};
  for (const tenon::v1::TaskLatency& task : latency.tasks()) {
    const tenon::v1::LatencySummary& release = task.release_latency();
    const bool measured = release.count() > 0;
    table.rows.push_back({task.task_name(), absl::StrCat(task.jobs()),
                          absl::StrCat(task.deadline_misses()),
                          measured ? latency_text(release.p50_ns()) : std::string(kNone),
                          measured ? latency_text(release.p99_ns()) : std::string(kNone),
                          measured ? latency_text(release.max_ns()) : std::string(kNone)});
  }
  return format_table(table);
}

}  // namespace

std::string enum_display_name(const google::protobuf::EnumDescriptor* type, int value) {
  const google::protobuf::EnumValueDescriptor* descriptor = type->FindValueByNumber(value);
  if (descriptor == nullptr) return absl::StrCat("Unknown(", value, ")");
  // The prefix shared by every value name ("INSTANCE_STATE_"), then CamelCase of the rest.
  const std::string rest = descriptor->name().substr(enum_common_prefix(type).size());
  std::string out;
  bool start = true;
  for (char c : rest) {
    if (c == '_') {
      start = true;
      continue;
    }
    out.push_back(start ? c : absl::ascii_tolower(static_cast<unsigned char>(c)));
    start = false;
  }
  // Architecture names read better as people write them.
  if (type == tenon::v1::Arch_descriptor()) return absl::AsciiStrToLower(rest);
  return out;
}

Json object_to_json(const Object& object) {
  Json document;
  document["apiVersion"] = std::string(kApiVersion);
  document["kind"] = kind_name(object_kind(object));
  if (object.kind_case() == Object::KIND_NOT_SET) return document;
  const google::protobuf::Message& message = kind_message(object);
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string text;
  const auto status = google::protobuf::util::MessageToJsonString(message, &text, options);
  Json body = status.ok() ? Json::parse(text, nullptr, /*allow_exceptions=*/false) : Json();
  if (!status.ok() || body.is_discarded() || !body.is_object()) {
    document["error"] = absl::StrCat("cannot render as JSON: ", status.ToString());
    return document;
  }
  document["metadata"] = body.contains("metadata") ? body["metadata"] : Json::object();
  if (message.GetDescriptor()->FindFieldByName("spec") != nullptr) {
    document["spec"] = body.contains("spec") ? body["spec"] : Json::object();
  }
  for (const auto& [key, value] : body.items()) {
    if (key != "metadata" && key != "spec") document[key] = value;
  }
  return document;
}

std::string object_to_yaml(const Object& object) { return json_to_yaml(object_to_json(object)); }

std::string format_age(absl::Duration age) {
  if (age < absl::ZeroDuration()) age = absl::ZeroDuration();
  const int64_t seconds = absl::ToInt64Seconds(age);
  const int64_t minutes = seconds / 60;
  const int64_t hours = minutes / 60;
  const int64_t days = hours / 24;
  if (seconds < 120) return absl::StrCat(seconds, "s");
  if (minutes < 10) return absl::StrCat(minutes, "m", seconds % 60, "s");
  if (hours < 3) return absl::StrCat(minutes, "m");
  if (hours < 8) return absl::StrCat(hours, "h", minutes % 60, "m");
  if (hours < 48) return absl::StrCat(hours, "h");
  if (days < 8) return absl::StrCat(days, "d", hours % 24, "h");
  if (days < 365 * 2) return absl::StrCat(days, "d");
  return absl::StrCat(days / 365, "y");
}

Table object_table(tenon::v1::ObjectKind kind, const std::vector<Object>& objects, TableStyle style,
                   absl::Time now) {
  Table table;
  const bool wide = style == TableStyle::kWide;
  switch (kind) {
    case tenon::v1::OBJECT_KIND_DEVICE:
      table.columns = {"NAME", "STATUS", "INSTANCES", "AGE"};
      if (wide) {
        table.columns.insert(table.columns.end(), {"ARCH", "CORES", "RT-CORES", "ENGINE",
                                                   "LAST-SEEN", "VERSION", "LABELS"});
      }
      break;
    case tenon::v1::OBJECT_KIND_APP:
      table.columns = {"NAME", "PROGRAM", "TASKS", "AGE"};
      break;
    case tenon::v1::OBJECT_KIND_DEPLOYMENT:
      table.columns = {"NAME", "APP", "MATCHED", "RUNNING", "UPDATED", "PHASE", "AGE"};
      if (wide) table.columns.insert(table.columns.end(), {"SELECTOR", "PLACEMENT"});
      break;
    case tenon::v1::OBJECT_KIND_INSTANCE:
      table.columns = {"NAME",     "DEVICE",      "DEPLOYMENT", "STATE",
                       "RESTARTS", "P99-LATENCY", "MISSES",     "AGE"};
      if (wide) table.columns.insert(table.columns.end(), {"IMAGE", "EXIT-REASON", "MESSAGE"});
      break;
    case tenon::v1::OBJECT_KIND_COMPOSITION:
      table.columns = {"NAME", "LIBRARIES", "IMAGE", "SIZE", "AGE"};
      break;
    default:
      return table;
  }
  for (const Object& object : objects) {
    if (object_kind(object) != kind) continue;
    switch (kind) {
      case tenon::v1::OBJECT_KIND_DEVICE:
        add_device_row(object.device(), style, now, &table);
        break;
      case tenon::v1::OBJECT_KIND_APP:
        add_app_row(object.app(), now, &table);
        break;
      case tenon::v1::OBJECT_KIND_DEPLOYMENT:
        add_deployment_row(object.deployment(), style, now, &table);
        break;
      case tenon::v1::OBJECT_KIND_INSTANCE:
        add_instance_row(object.instance(), style, now, &table);
        break;
      case tenon::v1::OBJECT_KIND_COMPOSITION:
        add_composition_row(object.composition(), now, &table);
        break;
      default:
        break;
    }
  }
  return table;
}

std::string format_table(const Table& table) {
  std::vector<size_t> widths(table.columns.size(), 0);
  for (size_t i = 0; i < table.columns.size(); ++i) widths[i] = display_width(table.columns[i]);
  for (const auto& row : table.rows) {
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], display_width(row[i]));
    }
  }
  std::string out;
  auto append_row = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t i = 0; i < cells.size() && i < widths.size(); ++i) {
      absl::StrAppend(&line, cells[i]);
      if (i + 1 < cells.size()) line.append(widths[i] - display_width(cells[i]) + 3, ' ');
    }
    absl::StrAppend(&out, line, "\n");
  };
  append_row(table.columns);
  for (const auto& row : table.rows) append_row(row);
  return out;
}

std::string describe_object(const Object& object) {
  const tenon::v1::ObjectKind kind = object_kind(object);
  const tenon::v1::ObjectMeta& meta = object_meta(object);
  std::string out;
  absl::StrAppend(&out, "Name:         ", meta.name(), "\n");
  absl::StrAppend(&out, "Kind:         ", kind_name(kind), "\n");
  absl::StrAppend(&out, "Labels:       ", label_text(meta.labels()), "\n");
  absl::StrAppend(&out, "UID:          ", nonempty(meta.uid()), "\n");
  absl::StrAppend(&out, "Generation:   ", meta.generation(), "\n");
  auto time_text = [](const google::protobuf::Timestamp& timestamp) {
    if (timestamp.seconds() == 0 && timestamp.nanos() == 0) return std::string(kNone);
    absl::StatusOr<absl::Time> time = tenon::time::from_proto(timestamp, "time");
    if (!time.ok()) return std::string("<invalid>");
    return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", *time, absl::UTCTimeZone());
  };
  absl::StrAppend(&out, "Created:      ", time_text(meta.create_time()), "\n");
  absl::StrAppend(&out, "Updated:      ", time_text(meta.update_time()), "\n");
  Json document = object_to_json(object);
  // The per-task latency reads better as a table than as nested fields.
  const bool latency_table_wanted =
      kind == tenon::v1::OBJECT_KIND_INSTANCE && object.instance().status().has_latency();
  if (latency_table_wanted) document["status"].erase("latency");
  for (const auto& [key, value] : document.items()) {
    if (key == "apiVersion" || key == "kind" || key == "metadata") continue;
    const std::string title = absl::StrCat(
        std::string(1, absl::ascii_toupper(static_cast<unsigned char>(key[0]))), key.substr(1));
    describe_field(title, value, 0, &out);
  }
  if (latency_table_wanted) {
    const tenon::v1::LatencyTelemetry& latency = object.instance().status().latency();
    const absl::StatusOr<absl::Duration> window =
        tenon::time::from_proto(latency.window(), "window");
    absl::StrAppend(&out, "Latency (release latency, window ",
                    window.ok() ? absl::FormatDuration(*window) : std::string("<invalid>"),
                    ", updated ", time_text(latency.update_time()), "):\n");
    for (absl::string_view line : absl::StrSplit(latency_table(latency), '\n', absl::SkipEmpty())) {
      absl::StrAppend(&out, "  ", line, "\n");
    }
  }
  return out;
}

}  // namespace tenon::controller
