// Objects for people and scripts: the kubectl-shaped JSON/YAML document of an object (the proto
// JSON mapping, so it is what REST serves and what `tenonctl apply -f` reads back), `get` tables
// per kind and `describe` text.
#pragma once

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "tenon/v1/fleet.pb.h"

namespace tenon::controller {

// {apiVersion, kind, metadata, spec, status} for Device, App, Deployment and Instance; a
// Composition's own fields follow its metadata. Values as the proto JSON mapping with the proto
// field names (uint64 as strings, enums by full name, durations as "1.500s", times RFC 3339).
nlohmann::ordered_json object_to_json(const tenon::v1::Object& object);
// The same document as block YAML (compose's json_to_yaml); a valid manifest for the kinds
// that can be applied.
std::string object_to_yaml(const tenon::v1::Object& object);

enum class TableStyle { kNormal, kWide };

struct Table {
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> rows;  // one per object, cells in column order
};

// The `tenonctl get` table of objects of one kind: NAME first, AGE (relative to now) last of
// the normal columns, then the wide ones. Objects of another kind are skipped.
Table object_table(tenon::v1::ObjectKind kind, const std::vector<tenon::v1::Object>& objects,
                   TableStyle style, absl::Time now);
// Columns left-aligned, three spaces apart, as kubectl prints them; no trailing blanks.
std::string format_table(const Table& table);

// kubectl-style ages: "45s", "3m12s", "5h", "3d4h", "2y".
std::string format_age(absl::Duration age);

// Multi-line, kubectl-describe-like text showing every field that is set; an Instance also gets
// a per-task table of jobs, misses and p50/p99/max release latency in microseconds.
std::string describe_object(const tenon::v1::Object& object);

// "Running" for INSTANCE_STATE_RUNNING: the part after the enum's common prefix, CamelCased.
std::string enum_display_name(const google::protobuf::EnumDescriptor* type, int value);

}  // namespace tenon::controller
