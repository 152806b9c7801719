// Duration flags of every TenonOS program, written one way: absl::ParseDuration's syntax ("500ms",
// "5s", "1m30s", "24h"), checked in one place so that each program refuses the same text alike.
#pragma once

#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace tenon::flags {

// The longest duration a flag takes.
inline constexpr absl::Duration kMaxDurationFlag = absl::Hours(24 * 366);

// The positive, finite duration, at most kMaxDurationFlag, that `text` gives `flag` (the name is
// only for the message).
// A bare number such as "5" is refused even though it once meant seconds to some programs:
// it meant something else to others, so the unit is always written.
absl::StatusOr<absl::Duration> parse_duration_flag(absl::string_view flag, absl::string_view text);

// A CLI11 option `name` that stores parse_duration_flag's result in *duration; text it refuses
// is a CLI::ValidationError carrying that message. --help shows the value *duration holds now
// as the default.
CLI::Option* add_duration_option(CLI::App& app, const std::string& name, absl::Duration* duration,
                                 const std::string& description);
// The same for a duration with no default (left empty unless the flag is given).
CLI::Option* add_duration_option(CLI::App& app, const std::string& name,
                                 std::optional<absl::Duration>* duration,
                                 const std::string& description);

}  // namespace tenon::flags
