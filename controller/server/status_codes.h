// One mapping from absl::Status to the gRPC and HTTP worlds, shared by both API adapters.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace tenon::controller {

grpc::Status to_grpc_status(const absl::Status& status);
// The HTTP status REST answers with for a status code (Google's API mapping: 400, 401, 403, 404,
// 409, 429, 499, 500, 501, 503, 504).
int http_status(absl::StatusCode code);
// "INVALID_ARGUMENT", "NOT_FOUND", ...: the gRPC code name.
const char* code_name(absl::StatusCode code);

}  // namespace tenon::controller
