// The shared command runner; see shell_command.h.
#include "shell_command.h"

#include <sys/wait.h>

#include <array>
#include <cstdio>

namespace tenon::test_support {

ShellResult run_shell(const std::string& command_line) {
  ShellResult result;
  FILE* pipe = popen(command_line.c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buffer;
  size_t count;
  while ((count = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) {
    result.output.append(buffer.data(), count);
  }
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::optional<nlohmann::json> last_json_line(const std::string& output) {
  std::string text = output;
  while (!text.empty() && text.back() == '\n') text.pop_back();
  const size_t newline = text.rfind('\n');
  nlohmann::json record = nlohmann::json::parse(
      newline == std::string::npos ? text : text.substr(newline + 1), nullptr, false);
  if (record.is_discarded()) return std::nullopt;
  return record;
}

}  // namespace tenon::test_support
