// Runs a shell command line the way a user types it and reads what our commands print: the
// tests and benchmarks that drive `mortise`, `tenonctl` or binutils share this one runner.
#pragma once

#include <optional>
#include <string>

#include "nlohmann/json.hpp"

namespace tenon::test_support {

struct ShellResult {
  int exit_code = -1;  // -1 when it could not run or did not exit normally
  std::string output;  // stdout only; add 2>&1 to the command line to merge stderr
};

ShellResult run_shell(const std::string& command_line);

// The last line of `output` parsed as JSON (the `-o json` record of our commands).
std::optional<nlohmann::json> last_json_line(const std::string& output);

}  // namespace tenon::test_support
