// How every Store backend turns messages into stored bytes and back, so that SQLite and
// PostgreSQL store the same bytes and report a damaged record in the same words.
#pragma once

#include <cstdint>
#include <string>

#include <google/protobuf/message_lite.h>
#include "absl/status/statusor.h"
#include "tenon/v1/agent.pb.h"
#include "tenon/v1/fleet.pb.h"

namespace tenon::controller {

// Deterministic, so that equal messages are stored as equal bytes (maps in a stable order).
// InvalidArgument naming `what` when the message cannot be serialized.
absl::StatusOr<std::string> serialize_record(const google::protobuf::MessageLite& message,
                                             const std::string& what);

// An object as a row: its key and its serialized body. InvalidArgument (naming `store`) for an
// object without a kind or a name.
struct ObjectRow {
  tenon::v1::ObjectKind kind = tenon::v1::OBJECT_KIND_UNSPECIFIED;
  std::string name;
  std::string body;
};
absl::StatusOr<ObjectRow> object_row(const std::string& store, const tenon::v1::Object& object);

// The object stored under (kind, name) in the store described by `store`. DataLoss naming
// "Kind/name" when `body` does not parse or holds another object than its key says.
absl::StatusOr<tenon::v1::Object> parse_stored_object(const std::string& store,
                                                      tenon::v1::ObjectKind kind,
                                                      const std::string& name,
                                                      const std::string& body);

// The desired state stored for `device` beside its copied-out `version`. DataLoss naming the
// device when `body` does not parse or disagrees with `version`.
absl::StatusOr<tenon::v1::DesiredState> parse_stored_desired_state(const std::string& store,
                                                                   const std::string& device,
                                                                   int64_t version,
                                                                   const std::string& body);

}  // namespace tenon::controller
