// The manifests of the catalog, parsed and checked one file at a time: a micro-library's
// library.yaml and an example application's app.yaml. Cross-file checks live in catalog.h.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tenon::controller {

enum class LibraryLayer { kTenon, kMortise };
enum class OptionType { kInteger, kBoolean, kString };
enum class SchedulerKind { kNone, kFixedPriority, kEarliestDeadlineFirst };

const char* layer_name(LibraryLayer layer);
const char* option_type_name(OptionType type);
// "fixed-priority", "edf" or "none": the spelling manifests, specs and output use.
const char* scheduler_name(SchedulerKind kind);

// A typed option value; exactly one member is meaningful, chosen by the option's type.
struct OptionValue {
  OptionType type = OptionType::kInteger;
  int64_t integer = 0;
  bool boolean = false;
  std::string text;
  bool operator==(const OptionValue&) const = default;
  std::string to_string() const;
};

struct OptionSpec {
  std::string name;
  OptionType type = OptionType::kInteger;
  OptionValue default_value;
  std::optional<int64_t> minimum;  // integers only
  std::optional<int64_t> maximum;
  int line = 0;  // 1-based, where the option starts in its manifest
};

// Where something was declared, for error messages that name file, line and field.
struct SourceLocation {
  std::string file;
  int line = 0;  // 1-based
};

struct LibraryManifest {
  std::string name;
  LibraryLayer layer = LibraryLayer::kTenon;
  std::string summary;
  std::vector<std::string> archs;
  std::vector<std::string> provides;
  // Capabilities that must be initialised before this library: an acyclic relation.
  std::vector<std::string> requires_capabilities;
  // Capabilities this library links against but that may in turn use it (arch <-> platform):
  // resolved like `requires`, linked as one group, exempt from the cycle check.
  std::vector<std::string> uses;
  std::vector<std::string> conflicts;  // library names of the same layer
  std::vector<OptionSpec> options;
  // Hypervisor features the device must report (e.g. tsc-deadline-timer) for this library to run.
  std::vector<std::string> host_features;
  // Capabilities of the Mortise layer that must be present on the device's hypervisor.
  std::vector<std::string> host_requires;
  // For sched-policy providers: which analysis applies to it.
  SchedulerKind scheduling = SchedulerKind::kNone;
  SourceLocation location;
  std::map<std::string, int> field_lines;  // top-level key -> 1-based line
  int line_of(const std::string& field) const;
};

// The longest period, deadline or WCET a task may declare, wherever it comes from (a manifest,
// Apply, Compose): one hour. Below 2^42 ns, so that every sum and product of the schedulability
// analysis stays far inside 64 bits (schedulability.h).
inline constexpr uint64_t kMaxTaskTimeNs = 3'600'000'000'000ull;

struct TaskSpec {
  std::string name;
  uint64_t period_ns = 0;
  uint64_t relative_deadline_ns = 0;  // 0 in the input means "the period"; normalised on parse
  uint64_t wcet_ns = 0;
  uint32_t priority = 0;  // larger runs first under fixed priority
  int line = 0;
};

// An example application's app.yaml (catalog entry) or an operator's app spec (tenonctl -f); the
// same schema, where `program` names the catalog app and defaults to `name`.
struct AppSpec {
  std::string name;
  std::string program;
  std::string summary;
  std::vector<std::string> needs;
  std::vector<TaskSpec> tasks;
  SchedulerKind scheduler = SchedulerKind::kNone;  // kNone: the engine chooses
  uint64_t heap_bytes = 0;
  std::vector<std::string> libraries;  // libraries the operator asks for by name
  // library -> option -> value, overriding manifest defaults.
  std::map<std::string, std::map<std::string, OptionValue>> options;
  bool tasks_given = false;  // the spec listed `tasks` (possibly empty)
  SourceLocation location;
  std::map<std::string, int> field_lines;
  int line_of(const std::string& field) const;
};

// Parse one manifest from its text; `file` only names it in errors. Never throws.
absl::StatusOr<LibraryManifest> parse_library_manifest(std::string_view text,
                                                       const std::string& file);
absl::StatusOr<AppSpec> parse_app_spec(std::string_view text, const std::string& file);

// Reads the file and parses it.
absl::StatusOr<std::string> read_text_file(const std::string& path);

}  // namespace tenon::controller
