// What the controller accepts from an operator or an agent before reading it further: the same
// limits over gRPC and REST (the API reference lists them in controller/server/README.md).
#pragma once

#include <cstddef>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "http/http_server.h"

namespace tenon::controller {

// The largest request body or message: an Apply of a few thousand objects fits.
inline constexpr size_t kMaxRequestBytes = 16 << 20;
// How deeply a REST body's JSON may nest objects and arrays. The API's messages need fewer than
// ten levels; JSON parsers recurse per level.
inline constexpr int kMaxJsonDepth = 32;

// REST connections (common/http/http_server.h): at most 1,024 open, 64 from one address; a
// request's head arrives within 10 s of its first byte, a body and an answer move at 64 KiB/s
// or more after that grace, an idle keep-alive connection closes after 5 s; 16 workers run
// handlers (a slow client never holds one while it sends; one address's requests hold at most
// 4), at most 64 watches stream at once (16 per address), and declared bodies in flight share
// 256 MiB. The API reference lists them in README.md.
http::ServerLimits rest_server_limits();

// The longest a bootstrap token may live: a year. (It enrols a device; longer-lived secrets
// belong to the devices' own credentials.)
inline constexpr absl::Duration kMaxBootstrapTokenTtl = absl::Hours(24 * 365);

// Checks a JSON body's shape before it is parsed: nesting at most kMaxJsonDepth, and no array
// directly inside an array (no API message has a list of lists, and the protobuf JSON parser
// would flatten one). INVALID_ARGUMENT naming the byte offset otherwise.
absl::Status check_json_shape(std::string_view body);

}  // namespace tenon::controller
