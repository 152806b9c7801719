// Fuzzes the REST API's request bodies as rest_api.cc reads them: the shape check, protobuf's JSON
// parser into each POST route's request, then the validation those requests meet first, and the
// ?selector= parser on the same bytes. Nothing may crash, hang or grow memory out of proportion.
//
// The shape check must see a body as the protobuf parser does: every body is also parsed as a
// google.protobuf.Value, which keeps the nesting that the request messages flatten, and the check
// must pass it exactly when that nesting is within the limits it promises (request_limits.h).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "label_selector.h"
#include "request_limits.h"
#include "tenon/v1/fleet.pb.h"
#include "validate.h"

namespace {

namespace v1 = tenon::v1;
using tenon::controller::kMaxJsonDepth;

// A message may hold this much per byte of its JSON (an empty element "{}," is three bytes and a
// message of a few hundred); more would be the amplification of issue 19's nested arrays.
constexpr size_t kMaxBytesPerJsonByte = 256;
constexpr size_t kMaxBytesBase = 64 << 10;

[[noreturn]] void fail(const char* what, const std::string& body) {
  std::fprintf(stderr, "rest_json_fuzz: %s\nbody (%zu bytes): %.400s\n", what, body.size(),
               body.c_str());
  std::abort();
}

bool parse(const std::string& body, google::protobuf::Message* message) {
  google::protobuf::util::JsonParseOptions options;  // as parse_body in rest_api.cc
  return google::protobuf::util::JsonStringToMessage(body, message, options).ok();
}

void check_size(const google::protobuf::Message& message, const std::string& body) {
  if (message.SpaceUsedLong() > kMaxBytesBase + kMaxBytesPerJsonByte * body.size()) {
    fail("a parsed request holds far more memory than its body", body);
  }
}

// A body's shape as the protobuf parser reads it: how deeply containers nest, and whether a list
// sits directly in a list (the two things the shape check refuses).
struct Shape {
  int depth = 0;
  bool list_in_list = false;
};

void measure(const google::protobuf::Value& value, int depth, bool in_list, Shape* shape) {
  if (!value.has_struct_value() && !value.has_list_value()) return;
  shape->depth = std::max(shape->depth, depth + 1);
  if (value.has_list_value()) {
    shape->list_in_list = shape->list_in_list || in_list;
    for (const google::protobuf::Value& item : value.list_value().values()) {
      measure(item, depth + 1, true, shape);
    }
  } else {
    for (const auto& [key, field] : value.struct_value().fields()) {
      measure(field, depth + 1, false, shape);
    }
  }
}

void check_objects(const google::protobuf::RepeatedPtrField<v1::Object>& objects) {
  for (const v1::Object& object : objects) (void)tenon::controller::check_object(object);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  // The query parameter arrives as any bytes (rest_api.cc decodes %XX before parsing).
  (void)tenon::controller::parse_label_selector(body);

  // Larger bodies are refused by the HTTP server's payload limit before anything reads them.
  if (size > tenon::controller::kMaxRequestBytes) return 0;
  const bool passed = tenon::controller::check_json_shape(body).ok();
  // Any body the parser reads (as a Value, which keeps every level) is one the check judged
  // exactly as its parsed shape deserves: passed within the limits, refused beyond them.
  google::protobuf::Value value;
  if (parse(body, &value)) {
    Shape shape;
    measure(value, 0, false, &shape);
    const bool within = shape.depth <= kMaxJsonDepth && !shape.list_in_list;
    if (passed && !within) {
      fail("the shape check passed a body the parser reads beyond its limits", body);
    }
    if (!passed && within) {
      fail("the shape check refused a body the parser reads within its limits", body);
    }
  }
  if (!passed) return 0;

  v1::ApplyRequest apply;
  if (parse(body, &apply)) {
    check_size(apply, body);
    check_objects(apply.objects());
  }
  v1::DiffRequest diff;
  if (parse(body, &diff)) {
    check_size(diff, body);
    check_objects(diff.objects());
  }
  v1::ComposeRequest compose;
  if (parse(body, &compose)) {
    check_size(compose, body);
    if (compose.has_app_spec()) (void)tenon::controller::validate_app_spec(compose.app_spec());
  }
  v1::CreateBootstrapTokenRequest token;
  if (parse(body, &token)) {
    check_size(token, body);
    // What Controller::create_bootstrap_token checks before it touches the store.
    if (token.has_ttl()) {
      (void)(absl::Seconds(token.ttl().seconds()) + absl::Nanoseconds(token.ttl().nanos()));
    }
    v1::Object probe;
    probe.mutable_device()->mutable_metadata()->set_name(
        token.device_name().empty() ? "probe" : token.device_name());
    *probe.mutable_device()->mutable_metadata()->mutable_labels() = token.labels();
    (void)tenon::controller::check_object(probe);
  }
  return 0;
}
