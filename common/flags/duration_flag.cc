// See duration_flag.h.
#include "flags/duration_flag.h"

#include <functional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace tenon::flags {
namespace {

constexpr char kExamples[] = "500ms, 5s, 1m30s or 24h";

// Digits with at most a sign and a decimal point: what a duration without its unit looks like.
bool is_bare_number(absl::string_view text) {
  if (!text.empty() && (text.front() == '+' || text.front() == '-')) text.remove_prefix(1);
  bool digit_seen = false;
  for (char c : text) {
    if (absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      digit_seen = true;
    } else if (c != '.') {
      return false;
    }
  }
  return digit_seen;
}

CLI::Option* add_parsed_option(CLI::App& app, const std::string& name,
                               std::function<void(absl::Duration)> store,
                               const std::string& description) {
  CLI::Option* option = app.add_option_function<std::string>(
      name,
      [name, store = std::move(store)](const std::string& text) {
        absl::StatusOr<absl::Duration> duration = parse_duration_flag(name, text);
        if (!duration.ok()) throw CLI::ValidationError(std::string(duration.status().message()));
        store(*duration);
      },
      description);
  option->type_name("DURATION");
  return option;
}

}  // namespace

absl::StatusOr<absl::Duration> parse_duration_flag(absl::string_view flag, absl::string_view text) {
  if (is_bare_number(text)) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, ": '", text, "' has no unit; write a duration with one, such as ", kExamples));
  }
  absl::Duration duration;
  if (!absl::ParseDuration(text, &duration)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": '", text, "' is not a duration; write one such as ", kExamples));
  }
  if (duration <= absl::ZeroDuration() || duration == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, ": '", text, "' is not a positive, finite duration such as ", kExamples));
  }
  // Programs add these to clocks and hand them to waits in nanoseconds: a year is far above what
  // any flag means, and far below where that arithmetic overflows.
  if (duration > kMaxDurationFlag) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": '", text, "' is longer than ",
                                                   absl::ToInt64Hours(kMaxDurationFlag) / 24,
                                                   " days, the longest a flag takes"));
  }
  return duration;
}

CLI::Option* add_duration_option(CLI::App& app, const std::string& name, absl::Duration* duration,
                                 const std::string& description) {
  return add_parsed_option(
             app, name, [duration](absl::Duration parsed) { *duration = parsed; }, description)
      ->default_str(absl::FormatDuration(*duration));
}

CLI::Option* add_duration_option(CLI::App& app, const std::string& name,
                                 std::optional<absl::Duration>* duration,
                                 const std::string& description) {
  return add_parsed_option(
      app, name, [duration](absl::Duration parsed) { *duration = parsed; }, description);
}

}  // namespace tenon::flags
