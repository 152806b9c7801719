// See request_limits.h.
#include "request_limits.h"

#include <vector>

#include "absl/strings/str_cat.h"

namespace tenon::controller {

http::ServerLimits rest_server_limits() {
  http::ServerLimits limits;
  limits.workers = 16;
  limits.max_connections = 1024;
  limits.max_connections_per_client = 64;
  limits.max_streams = 64;
  limits.max_streams_per_client = 16;
  limits.max_busy_per_client = 4;
  limits.max_buffered_body_bytes = 256 << 20;
  limits.max_head_bytes = 16 << 10;
  limits.max_headers = 100;
  limits.max_body_bytes = kMaxRequestBytes;
  limits.head_timeout = absl::Seconds(10);
  limits.idle_timeout = absl::Seconds(5);
  limits.min_body_bytes_per_second = 64 << 10;
  return limits;
}

absl::Status check_json_shape(std::string_view body) {
  std::vector<char> open;  // '[' or '{' of each enclosing container
  // The quote that opened the string we are in, or 0. The protobuf JSON parser also reads
  // single-quoted strings, so brackets inside them are text, and a '"' inside one (or a '\''
  // inside a double-quoted one) neither opens nor closes a string: seen otherwise, a body could
  // hide nested arrays from this check.
  char quote = 0;
  bool escaped = false;
  for (size_t at = 0; at < body.size(); ++at) {
    const char c = body[at];
    if (quote != 0) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == quote) {
        quote = 0;
      }
      continue;
    }
    switch (c) {
      case '"':
      case '\'':
        quote = c;
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
