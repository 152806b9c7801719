// tenon::flags (common/flags): the one duration syntax of every program's flags, what it accepts,
// what it refuses and with which message, alone and as a CLI11 option.
#include "flags/duration_flag.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tenon::flags {
namespace {

using ::testing::HasSubstr;

TEST(DurationFlagTest, AcceptsAbslDurationsWithAUnit) {
  const std::vector<std::pair<std::string, absl::Duration>> accepted = {
      {"500ms", absl::Milliseconds(500)}, {"5s", absl::Seconds(5)},
      {"1m30s", absl::Seconds(90)},       {"24h", absl::Hours(24)},
      {"1.5h", absl::Minutes(90)},        {"250us", absl::Microseconds(250)},
      {"10ns", absl::Nanoseconds(10)},    {"+2s", absl::Seconds(2)}};
  for (const auto& [text, expected] : accepted) {
    absl::StatusOr<absl::Duration> parsed = parse_duration_flag("--ping-interval", text);
    ASSERT_TRUE(parsed.ok()) << text << ": " << parsed.status();
    EXPECT_EQ(*parsed, expected) << text;
  }
}

TEST(DurationFlagTest, RefusesABareNumberNamingTheFlagWithAnExample) {
  for (const char* text : {"5", "0", "0.5", "-1", "60"}) {
    absl::StatusOr<absl::Duration> parsed = parse_duration_flag("--ping-interval", text);
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(parsed.status().message(),
              absl::StrCat("--ping-interval: '", text,
                           "' has no unit; write a duration with one, such as 500ms, 5s, 1m30s "
                           "or 24h"));
  }
}

TEST(DurationFlagTest, RefusesTextThatIsNoDurationAndDurationsThatAreNotPositive) {
  for (const char* text : {"", "soon", "5 s", "5sec", "s", "1d"}) {
    absl::StatusOr<absl::Duration> parsed = parse_duration_flag("--ttl", text);
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_EQ(parsed.status().message(),
              absl::StrCat("--ttl: '", text,
                           "' is not a duration; write one such as 500ms, 5s, 1m30s or 24h"));
  }
  for (const char* text : {"0s", "-1s", "inf"}) {
    absl::StatusOr<absl::Duration> parsed = parse_duration_flag("--ttl", text);
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_THAT(parsed.status().message(),
                HasSubstr(absl::StrCat("--ttl: '", text, "' is not a positive, finite duration")));
  }
}

TEST(DurationFlagTest, RefusesDurationsLongerThanAYearThatWaitsWouldOverflow) {
  // 10,000,000 hours is finite for absl but past 2^63 ns: a wait on it overflowed the clock.
  for (const char* text : {"10000000h", "9000h"}) {
    absl::StatusOr<absl::Duration> parsed = parse_duration_flag("--ping-interval", text);
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_THAT(parsed.status().message(), HasSubstr("longer than 366 days"));
  }
  EXPECT_TRUE(parse_duration_flag("--ttl", "8784h").ok()) << "366 days exactly";
}

TEST(DurationFlagTest, AnOptionSetsItsDurationAndShowsItsDefault) {
  CLI::App app("test");
  absl::Duration interval = absl::Seconds(5);
  std::optional<absl::Duration> unset_interval;
  std::optional<absl::Duration> set_interval;
  add_duration_option(app, "--ping-interval", &interval, "pings");
  add_duration_option(app, "--unset", &unset_interval, "never given");
  add_duration_option(app, "--set", &set_interval, "given");
  EXPECT_THAT(app.help(), HasSubstr("DURATION"));
  EXPECT_THAT(app.help(), HasSubstr("=5s"));
  std::vector<std::string> arguments = {"--set", "1m30s", "--ping-interval", "250ms"};
  std::reverse(arguments.begin(), arguments.end());  // CLI11 takes them last first
  app.parse(arguments);
  EXPECT_EQ(interval, absl::Milliseconds(250));
  EXPECT_EQ(set_interval, absl::Seconds(90));
  EXPECT_FALSE(unset_interval.has_value());
}

TEST(DurationFlagTest, AnOptionRefusesABareNumberWithTheSameMessage) {
  CLI::App app("test");
  absl::Duration interval = absl::Seconds(5);
  add_duration_option(app, "--ping-interval", &interval, "pings");
  std::vector<std::string> arguments = {"5", "--ping-interval"};
  try {
    app.parse(arguments);
    ADD_FAILURE() << "a bare number was taken";
  } catch (const CLI::ValidationError& error) {
    EXPECT_THAT(error.what(), HasSubstr("--ping-interval: '5' has no unit; write a duration with "
                                        "one, such as 500ms, 5s, 1m30s or 24h"));
  }
  EXPECT_EQ(interval, absl::Seconds(5));
}

}  // namespace
}  // namespace tenon::flags
