// See request_limits.h.
#include "request_limits.h"

#include <vector>

#include "absl/strings/str_cat.h"

namespace tenon::controller {

absl::Status check_json_shape(std::string_view body) {
  std::vector<char> open;  // '[' or '{' of each enclosing container
  bool in_string = false;
  bool escaped = false;
  for (size_t at = 0; at < body.size(); ++at) {
    const char c = body[at];
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (c == '[' && !open.empty() && open.back() == '[') {
          return absl::InvalidArgumentError(
              absl::StrCat("request body: an array inside an array at byte ", at,
                           "; no field of the API is a list of lists"));
        }
        if (open.size() >= static_cast<size_t>(kMaxJsonDepth)) {
          return absl::InvalidArgumentError(absl::StrCat("request body: nested deeper than ",
                                                         kMaxJsonDepth, " levels at byte ", at));
        }
        open.push_back(c);
        break;
      case ']':
      case '}':
        if (!open.empty()) open.pop_back();  // mismatches are the parser's to report
        break;
      default:
        break;
    }
  }
  return absl::OkStatus();
}

}  // namespace tenon::controller
