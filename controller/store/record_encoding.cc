// The stored form of objects and desired states, shared by the backends; see record_encoding.h.
#include "record_encoding.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include "absl/strings/str_cat.h"
#include "object_meta.h"

namespace tenon::controller {

absl::StatusOr<std::string> serialize_record(const google::protobuf::MessageLite& message,
                                             const std::string& what) {
  std::string bytes;
  bool serialized = false;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    serialized = message.SerializeToCodedStream(&coded);
  }
  if (!serialized) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": cannot serialize (larger than 2 GiB?)"));
  }
  return bytes;
}

absl::StatusOr<ObjectRow> object_row(const std::string& store, const tenon::v1::Object& object) {
  ObjectRow row;
  row.kind = object_kind(object);
  if (row.kind == tenon::v1::OBJECT_KIND_UNSPECIFIED) {
    return absl::InvalidArgumentError(absl::StrCat(store, ": put_object: the object has no kind"));
  }
  row.name = object_meta(object).name();
  if (row.name.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(store, ": put_object: ", kind_name(row.kind), " without metadata.name"));
  }
  absl::StatusOr<std::string> body = serialize_record(
      object, absl::StrCat(store, ": object ", kind_name(row.kind), "/", row.name));
  if (!body.ok()) return body.status();
  row.body = *std::move(body);
  return row;
}

absl::StatusOr<tenon::v1::Object> parse_stored_object(const std::string& store,
                                                      tenon::v1::ObjectKind kind,
                                                      const std::string& name,
                                                      const std::string& body) {
  tenon::v1::Object object;
  if (!object.ParseFromString(body)) {
    return absl::DataLossError(absl::StrCat(store, ": object ", kind_name(kind), "/", name,
                                            ": the stored body does not parse"));
  }
  if (object_kind(object) != kind || object_meta(object).name() != name) {
    return absl::DataLossError(
        absl::StrCat(store, ": object ", kind_name(kind), "/", name, ": the stored body holds ",
                     kind_name(object_kind(object)), "/", object_meta(object).name()));
  }
  return object;
}

absl::StatusOr<tenon::v1::DesiredState> parse_stored_desired_state(const std::string& store,
                                                                   const std::string& device,
                                                                   int64_t version,
                                                                   const std::string& body) {
  tenon::v1::DesiredState state;
  if (!state.ParseFromString(body) || static_cast<int64_t>(state.version()) != version) {
    return absl::DataLossError(
        absl::StrCat(store, ": desired state of device ", device, ": the stored body is corrupt"));
  }
  return state;
}

}  // namespace tenon::controller
