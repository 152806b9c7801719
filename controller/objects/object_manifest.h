// Manifests: kubectl-style multi-document YAML holding Device, App and Deployment objects, read
// into tenon.v1.Object by walking the proto descriptors, with file:line:column: field errors.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/duration.pb.h"
#include "tenon/v1/fleet.pb.h"

namespace tenon::controller {

// The apiVersion every manifest document carries.
inline constexpr std::string_view kApiVersion = "tenon/v1";

// One object read from a manifest, with where each of its fields was written.
struct ManifestObject {
  tenon::v1::Object object;
  std::string file;
  int line = 0;  // 1-based line of the document's first key
  // Field path ("spec.tasks[1].period_ns", "metadata.labels[site]") -> 1-based line of its key.
  std::map<std::string, int> field_lines;

  // The line of the longest known prefix of path (whole components: "spec.tasks[1]" is a prefix
  // of "spec.tasks[1].name", not of "spec.tasks[10]"), else the document's line.
  int line_of(const std::string& path) const;
};

// Every non-empty document of text, in order. Field names are the proto names of the kind's
// messages (snake_case) or their JSON names (lowerCamelCase). Scalars are strictly typed; enums
// by full name or by the part after the enum's common prefix, in any case ("ALWAYS", "always");
// google.protobuf.Duration as "250ms", "1.5s", "2m", "1h30m"; google.protobuf.Timestamp as
// RFC 3339. `status` is accepted and ignored (so `tenonctl get -o yaml` output can be applied
// again); Instance and Composition documents are refused: they are derived by the controller.
// Errors are InvalidArgument "file:line:column: field.path: message". A duplicate (kind, name)
// is an error naming both places.
absl::StatusOr<std::vector<ManifestObject>> parse_manifests(std::string_view text,
                                                            const std::string& file);

// A file, or a directory's *.yaml and *.yml files in name order (not recursive); "-" reads
// stdin. Duplicates are checked across all the files.
absl::StatusOr<std::vector<ManifestObject>> load_manifests(const std::string& path);

// Go-style durations, as manifests write them: one or more decimal numbers each with a unit
// (ns, us, µs, ms, s, m, h), e.g. "250ms", "1.5s", "1h30m", and the proto JSON form "1.500s";
// "0" alone is zero. Digits below a nanosecond are dropped. Nothing on malformed text or
// overflow.
std::optional<google::protobuf::Duration> parse_duration(std::string_view text);

// "RESTART_POLICY_" for RestartPolicy: the longest prefix, ending in '_', that every value name
// shares. Manifests accept enum values without it; tables show them without it.
std::string enum_common_prefix(const google::protobuf::EnumDescriptor* type);

}  // namespace tenon::controller
