// Text as one bounded line, for error messages that quote SQL or a library's multi-line message.
#pragma once

#include <cctype>
#include <cstddef>
#include <string>
#include <string_view>

namespace tenon::text {

// Runs of whitespace become one space (none at the start or end); past `max_chars` the line is
// cut and ends in "...".
inline std::string one_line(std::string_view text, size_t max_chars = std::string::npos) {
  std::string line;
  bool pending_space = false;
  for (char c : text) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      pending_space = !line.empty();
      continue;
    }
    if (pending_space) line.push_back(' ');
    pending_space = false;
    line.push_back(c);
    if (line.size() >= max_chars) {
      line.append("...");
      break;
    }
  }
  return line;
}

// SQL as it is quoted in errors: one line of at most 160 characters.
inline std::string shorten_sql(std::string_view sql) { return one_line(sql, 160); }

}  // namespace tenon::text
