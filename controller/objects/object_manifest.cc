// Manifests read by walking the proto descriptors; see object_manifest.h.
#include "object_manifest.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/duration.pb.h>
#include <google/protobuf/message.h>
#include <google/protobuf/timestamp.pb.h>
#include <google/protobuf/util/time_util.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <exception>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <limits>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "manifest.h"  // read_text_file
#include "object_meta.h"
#include "yaml_fields.h"

namespace tenon::controller {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::OneofDescriptor;
using google::protobuf::Reflection;
using yaml_fields::error_at;

// Case, '_' and '-' do not matter when naming an enum value: OnFailure, on-failure, ON_FAILURE.
std::string normalised_enum_name(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (c != '_' && c != '-') out.push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

std::string key_list(const Descriptor* type) {
  std::vector<std::string> names;
  for (int i = 0; i < type->field_count(); ++i) names.push_back(type->field(i)->name());
  return absl::StrJoin(names, ", ");
}

// Reads YAML into a message through its descriptor and reflection; remembers field lines.
class MessageReader {
 public:
  MessageReader(const std::string& file, std::map<std::string, int>* field_lines)
      : file_(file), field_lines_(field_lines) {}

  // node must be a mapping (or null: an empty message).
  absl::Status read_message(const YAML::Node& node, const std::string& path, Message* message) {
    const Descriptor* type = message->GetDescriptor();
    if (type->full_name() == "google.protobuf.Duration") return read_duration(node, path, message);
    if (type->full_name() == "google.protobuf.Timestamp") {
      return read_timestamp(node, path, message);
    }
    if (type->file()->package() == "google.protobuf") {
      return error_at(file_, node, path,
                      absl::StrCat(type->full_name(), " is not supported in manifests"));
    }
    if (node.IsNull()) return absl::OkStatus();
    yaml_fields::MappingReader reader(file_, node, path.empty() ? "" : path + ".");
    if (absl::Status shape = reader.check_shape(); !shape.ok()) return shape;
    std::map<const FieldDescriptor*, std::string> seen_fields;
    std::map<const OneofDescriptor*, std::string> seen_oneofs;
    for (const auto& entry : node) {
      const std::string key = entry.first.Scalar();
      const std::string field_path = path.empty() ? key : absl::StrCat(path, ".", key);
      const FieldDescriptor* field = find_field(type, key);
      if (field == nullptr) {
        return error_at(file_, entry.first, field_path,
                        absl::StrCat("unknown field (valid: ", key_list(type), ")"));
      }
      const std::string canonical_path =
          path.empty() ? field->name() : absl::StrCat(path, ".", field->name());
      if (auto [previous, inserted] = seen_fields.emplace(field, key); !inserted) {
        return error_at(file_, entry.first, canonical_path,
                        absl::StrCat("given twice (as ", previous->second, " and ", key, ")"));
      }
      if (const OneofDescriptor* oneof = field->real_containing_oneof(); oneof != nullptr) {
        if (auto [previous, inserted] = seen_oneofs.emplace(oneof, field->name()); !inserted) {
          return error_at(file_, entry.first, canonical_path,
                          absl::StrCat("only one of the ", oneof->name(), " fields may be set (",
                                       previous->second, " is set too)"));
        }
      }
      record_line(canonical_path, entry.first);
      if (absl::Status status = read_field(entry.second, canonical_path, message, field);
          !status.ok()) {
        return status;
      }
    }
    return absl::OkStatus();
  }

  void record_line(const std::string& path, const YAML::Node& node) {
    if (!node.Mark().is_null()) field_lines_->emplace(path, node.Mark().line + 1);
  }

 private:
  static const FieldDescriptor* find_field(const Descriptor* type, const std::string& key) {
    if (const FieldDescriptor* field = type->FindFieldByName(key)) return field;
    for (int i = 0; i < type->field_count(); ++i) {
      if (type->field(i)->json_name() == key) return type->field(i);
    }
    return nullptr;
  }

  absl::Status read_field(const YAML::Node& node, const std::string& path, Message* message,
                          const FieldDescriptor* field) {
    const Reflection* reflection = message->GetReflection();
    if (field->is_map()) {
      if (node.IsNull()) return absl::OkStatus();
      yaml_fields::MappingReader reader(file_, node, path + ".");
      if (!node.IsMap()) return error_at(file_, node, path, "expected a mapping");
      if (absl::Status shape = reader.check_shape(); !shape.ok()) return shape;
      const FieldDescriptor* key_field = field->message_type()->map_key();
      const FieldDescriptor* value_field = field->message_type()->map_value();
      for (const auto& entry : node) {
        const std::string entry_path = absl::StrCat(path, "[", entry.first.Scalar(), "]");
        record_line(entry_path, entry.first);
        Message* map_entry = reflection->AddMessage(message, field);
        if (absl::Status key = store(entry.first, entry_path, map_entry, key_field, false);
            !key.ok()) {
          return key;
        }
        if (absl::Status value = store(entry.second, entry_path, map_entry, value_field, false);
            !value.ok()) {
          return value;
        }
      }
      return absl::OkStatus();
    }
    if (field->is_repeated()) {
      if (node.IsNull()) return absl::OkStatus();
      if (!node.IsSequence()) return error_at(file_, node, path, "expected a list");
      for (size_t i = 0; i < node.size(); ++i) {
        const std::string item_path = absl::StrCat(path, "[", i, "]");
        record_line(item_path, node[i]);
        if (absl::Status status = store(node[i], item_path, message, field, true); !status.ok()) {
          return status;
        }
      }
      return absl::OkStatus();
    }
    return store(node, path, message, field, false);
  }

  // Sets (or, for a repeated field, adds) one value of field from node.
  absl::Status store(const YAML::Node& node, const std::string& path, Message* message,
                     const FieldDescriptor* field, bool add) {
    const Reflection* reflection = message->GetReflection();
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_MESSAGE: {
        Message* child = add ? reflection->AddMessage(message, field)
                             : reflection->MutableMessage(message, field);
        if (!node.IsNull() && !node.IsMap() &&
            child->GetDescriptor()->file()->package() != "google.protobuf") {
          return error_at(file_, node, path, "expected a mapping");
        }
        return read_message(node, path, child);
      }
      case FieldDescriptor::CPPTYPE_STRING: {
        absl::StatusOr<std::string> text = yaml_fields::parse_string(file_, node, path);
        if (!text.ok()) return text.status();
        std::string value = *text;
        if (field->type() == FieldDescriptor::TYPE_BYTES && !absl::Base64Unescape(*text, &value)) {
          return error_at(file_, node, path, "expected base64 text");
        }
        add ? reflection->AddString(message, field, value)
            : reflection->SetString(message, field, value);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_BOOL: {
        absl::StatusOr<bool> value = yaml_fields::parse_boolean(file_, node, path);
        if (!value.ok()) return value.status();
        add ? reflection->AddBool(message, field, *value)
            : reflection->SetBool(message, field, *value);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_UINT64: {
        absl::StatusOr<uint64_t> value = yaml_fields::parse_unsigned(file_, node, path);
        if (!value.ok()) return value.status();
        add ? reflection->AddUInt64(message, field, *value)
            : reflection->SetUInt64(message, field, *value);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_UINT32: {
        absl::StatusOr<uint64_t> value = yaml_fields::parse_unsigned(file_, node, path);
        if (!value.ok()) return value.status();
        if (*value > std::numeric_limits<uint32_t>::max()) {
          return error_at(file_, node, path,
                          absl::StrCat("expected an integer from 0 to 4294967295, got ", *value));
        }
        add ? reflection->AddUInt32(message, field, static_cast<uint32_t>(*value))
            : reflection->SetUInt32(message, field, static_cast<uint32_t>(*value));
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_INT64: {
        absl::StatusOr<int64_t> value = yaml_fields::parse_signed(file_, node, path);
        if (!value.ok()) return value.status();
        add ? reflection->AddInt64(message, field, *value)
            : reflection->SetInt64(message, field, *value);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_INT32: {
        absl::StatusOr<int64_t> value = yaml_fields::parse_signed(file_, node, path);
        if (!value.ok()) return value.status();
        if (*value < std::numeric_limits<int32_t>::min() ||
            *value > std::numeric_limits<int32_t>::max()) {
          return error_at(file_, node, path,
                          absl::StrCat("expected a 32-bit integer, got ", *value));
        }
        add ? reflection->AddInt32(message, field, static_cast<int32_t>(*value))
            : reflection->SetInt32(message, field, static_cast<int32_t>(*value));
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_DOUBLE:
      case FieldDescriptor::CPPTYPE_FLOAT: {
        absl::StatusOr<double> value = parse_number(node, path);
        if (!value.ok()) return value.status();
        if (field->cpp_type() == FieldDescriptor::CPPTYPE_DOUBLE) {
          add ? reflection->AddDouble(message, field, *value)
              : reflection->SetDouble(message, field, *value);
        } else {
          add ? reflection->AddFloat(message, field, static_cast<float>(*value))
              : reflection->SetFloat(message, field, static_cast<float>(*value));
        }
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_ENUM: {
        absl::StatusOr<const EnumValueDescriptor*> value =
            parse_enum(node, path, field->enum_type());
        if (!value.ok()) return value.status();
        add ? reflection->AddEnum(message, field, *value)
            : reflection->SetEnum(message, field, *value);
        return absl::OkStatus();
      }
    }
    return error_at(file_, node, path, "field type not supported in manifests");
  }

  // A finite decimal number ("0.05", "1", "1e-3").
  absl::StatusOr<double> parse_number(const YAML::Node& node, const std::string& path) {
    if (!node.IsScalar()) return error_at(file_, node, path, "expected a number");
    const std::string& text = node.Scalar();
    double value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || error != std::errc() || end != text.data() + text.size() ||
        !std::isfinite(value)) {
      return error_at(file_, node, path, absl::StrCat("expected a number, got '", text, "'"));
    }
    return value;
  }

  absl::StatusOr<const EnumValueDescriptor*> parse_enum(const YAML::Node& node,
                                                        const std::string& path,
                                                        const EnumDescriptor* type) {
    const std::string prefix = enum_common_prefix(type);
    std::vector<std::string> valid;
    for (int i = 0; i < type->value_count(); ++i) {
      const std::string& name = type->value(i)->name();
      if (!name.ends_with("_UNSPECIFIED")) valid.push_back(name.substr(prefix.size()));
    }
    const std::string valid_text = absl::StrCat(" (valid: ", absl::StrJoin(valid, ", "), ")");
    if (!node.IsScalar()) {
      return error_at(file_, node, path, absl::StrCat("expected a name", valid_text));
    }
    const std::string wanted = normalised_enum_name(node.Scalar());
    for (int i = 0; i < type->value_count(); ++i) {
      const std::string& name = type->value(i)->name();
      if (wanted == normalised_enum_name(name) ||
          wanted == normalised_enum_name(std::string_view(name).substr(prefix.size()))) {
        return type->value(i);
      }
    }
    return error_at(file_, node, path,
                    absl::StrCat("unknown value '", node.Scalar(), "'", valid_text));
  }

  absl::Status read_duration(const YAML::Node& node, const std::string& path, Message* message) {
    std::optional<google::protobuf::Duration> duration;
    if (node.IsScalar()) duration = parse_duration(node.Scalar());
    if (!duration) {
      return error_at(
          file_, node, path,
          absl::StrCat("expected a duration like 250ms, 1.5s, 2m or 1h30m, got '",
                       node.IsScalar() ? node.Scalar() : std::string("(not a value)"), "'"));
    }
    message->CopyFrom(*duration);
    return absl::OkStatus();
  }

  absl::Status read_timestamp(const YAML::Node& node, const std::string& path, Message* message) {
    google::protobuf::Timestamp timestamp;
    if (!node.IsScalar() ||
        !google::protobuf::util::TimeUtil::FromString(node.Scalar(), &timestamp)) {
      return error_at(file_, node, path, "expected an RFC 3339 time like 2024-05-01T12:00:00Z");
    }
    message->CopyFrom(timestamp);
    return absl::OkStatus();
  }

  const std::string& file_;
  std::map<std::string, int>* field_lines_;
};

// (kind, name) -> "file:line:column" of the first definition, across one load.
using DefinitionIndex = std::map<std::pair<tenon::v1::ObjectKind, std::string>, std::string>;

absl::StatusOr<ManifestObject> parse_document(const YAML::Node& root, const std::string& file,
                                              DefinitionIndex* definitions) {
  ManifestObject result;
  result.file = file;
  result.line = root.Mark().line + 1;
  if (!root.IsMap()) {
    return error_at(file, root, "(document)", "a manifest document must be a mapping");
  }
  yaml_fields::MappingReader reader(file, root, "");
  if (absl::Status shape = reader.check_shape(); !shape.ok()) return shape;
  absl::StatusOr<std::string> api_version = reader.string("apiVersion", true);
  if (!api_version.ok()) return api_version.status();
  if (*api_version != kApiVersion) {
    return error_at(
        file, reader.get("apiVersion"), "apiVersion",
        absl::StrCat("expected ", std::string(kApiVersion), ", got '", *api_version, "'"));
  }
  absl::StatusOr<std::string> kind_text = reader.string("kind", true);
  if (!kind_text.ok()) return kind_text.status();
  Message* kind_message = nullptr;
  tenon::v1::Object& object = result.object;
  if (*kind_text == "Device") {
    kind_message = object.mutable_device();
  } else if (*kind_text == "App") {
    kind_message = object.mutable_app();
  } else if (*kind_text == "Deployment") {
    kind_message = object.mutable_deployment();
  } else if (*kind_text == "Instance" || *kind_text == "Composition") {
    return error_at(file, reader.get("kind"), "kind",
                    absl::StrCat(*kind_text,
                                 " objects are derived by the controller and cannot be applied "
                                 "(manifests hold Device, App and Deployment)"));
  } else {
    return error_at(
        file, reader.get("kind"), "kind",
        absl::StrCat("unknown kind '", *kind_text, "' (valid: Device, App, Deployment)"));
  }
  if (absl::Status keys =
          reader.no_unknown_keys({"apiVersion", "kind", "metadata", "spec", "status"});
      !keys.ok()) {
    return keys;
  }
  for (const std::string key : {"apiVersion", "kind"}) result.field_lines[key] = reader.line(key);
  MessageReader message_reader(file, &result.field_lines);
  const Descriptor* type = kind_message->GetDescriptor();
  const Reflection* reflection = kind_message->GetReflection();
  // status is output only: accepted so that `get -o yaml` output applies again, never read.
  for (const std::string key : {"metadata", "spec"}) {
    if (key == "metadata" && !reader.has(key)) {
      return error_at(file, root, "metadata", "missing required field");
    }
    if (!reader.has(key)) continue;
    const YAML::Node value = reader.get(key);
    result.field_lines[key] = reader.line(key);
    if (!value.IsMap() && !value.IsNull()) return error_at(file, value, key, "expected a mapping");
    Message* child = reflection->MutableMessage(kind_message, type->FindFieldByName(key));
    if (absl::Status status = message_reader.read_message(value, key, child); !status.ok()) {
      return status;
    }
  }
  const YAML::Node metadata = reader.get("metadata");
  const yaml_fields::MappingReader metadata_reader(file, metadata, "metadata.");
  if (metadata.IsNull() || !metadata_reader.has("name")) {
    return error_at(file, metadata, "metadata.name", "missing required field");
  }
  const tenon::v1::ObjectKind kind = object_kind(object);
  const std::string& name = object_meta(object).name();
  const YAML::Node name_node = metadata_reader.get("name");
  const std::string here =
      absl::StrFormat("%s:%d:%d", file, name_node.Mark().line + 1, name_node.Mark().column + 1);
  auto [first, inserted] = definitions->emplace(std::make_pair(kind, name), here);
  if (!inserted) {
    return error_at(file, name_node, "metadata.name",
                    absl::StrCat(kind_name(kind), " '", name, "' is defined twice (first at ",
                                 first->second, ")"));
  }
  return result;
}

absl::Status parse_into(std::string_view text, const std::string& file,
                        DefinitionIndex* definitions, std::vector<ManifestObject>* objects) {
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(std::string(text));
  } catch (const YAML::Exception& exception) {
    return yaml_fields::error_at_mark(file, exception.mark, "(document)", exception.msg);
  } catch (const std::exception& exception) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": (document): ", exception.what()));
  }
  for (const YAML::Node& document : documents) {
    if (document.IsNull()) continue;  // an empty document, e.g. after a trailing ---
    absl::StatusOr<ManifestObject> object = parse_document(document, file, definitions);
    if (!object.ok()) return object.status();
    objects->push_back(std::move(*object));
  }
  return absl::OkStatus();
}

}  // namespace

std::optional<google::protobuf::Duration> parse_duration(std::string_view text) {
  struct Unit {
    std::string_view name;
    int64_t nanoseconds;
  };
  // Longer names first so that "ms" is not read as "m".
  static constexpr Unit kUnits[] = {{"ns", 1},
                                    {"us", 1000},
                                    {"\xC2\xB5s", 1000},
                                    {"ms", 1000000},
                                    {"s", 1000000000},
                                    {"m", 60 * int64_t{1000000000}},
                                    {"h", 3600 * int64_t{1000000000}}};
  google::protobuf::Duration duration;
  if (text == "0") return duration;
  if (text.empty()) return std::nullopt;
  int64_t total = 0;
  size_t position = 0;
  while (position < text.size()) {
    const size_t number_start = position;
    int64_t whole = 0;
    while (position < text.size() &&
           absl::ascii_isdigit(static_cast<unsigned char>(text[position]))) {
      if (__builtin_mul_overflow(whole, 10, &whole) ||
          __builtin_add_overflow(whole, text[position] - '0', &whole)) {
        return std::nullopt;
      }
      ++position;
    }
    const bool has_whole = position > number_start;
    std::string_view fraction;
    if (position < text.size() && text[position] == '.') {
      const size_t fraction_start = ++position;
      while (position < text.size() &&
             absl::ascii_isdigit(static_cast<unsigned char>(text[position]))) {
        ++position;
      }
      fraction = text.substr(fraction_start, position - fraction_start);
    }
    if (!has_whole && fraction.empty()) return std::nullopt;
    const Unit* unit = nullptr;
    for (const Unit& candidate : kUnits) {
      if (text.substr(position, candidate.name.size()) == candidate.name) {
        unit = &candidate;
        break;
      }
    }
    if (unit == nullptr) return std::nullopt;
    position += unit->name.size();
    int64_t amount = 0;
    if (__builtin_mul_overflow(whole, unit->nanoseconds, &amount)) return std::nullopt;
    // Digits below a nanosecond are dropped.
    int64_t scale = unit->nanoseconds;
    for (char digit : fraction) {
      scale /= 10;
      // "9223372036.9s": the whole part fits, the fraction carries it past 64 bits.
      if (__builtin_add_overflow(amount, (digit - '0') * scale, &amount)) return std::nullopt;
    }
    if (__builtin_add_overflow(total, amount, &total)) return std::nullopt;
  }
  duration.set_seconds(total / 1000000000);
  duration.set_nanos(static_cast<int32_t>(total % 1000000000));
  return duration;
}

int ManifestObject::line_of(const std::string& path) const {
  std::string prefix = path;
  while (!prefix.empty()) {
    if (auto found = field_lines.find(prefix); found != field_lines.end()) return found->second;
    // Drop the last component: ".name" or "[1]".
    size_t cut = prefix.find_last_of(".[");
    if (cut == std::string::npos) break;
    prefix.resize(cut);
  }
  return line;
}

absl::StatusOr<std::vector<ManifestObject>> parse_manifests(std::string_view text,
                                                            const std::string& file) {
  DefinitionIndex definitions;
  std::vector<ManifestObject> objects;
  if (absl::Status status = parse_into(text, file, &definitions, &objects); !status.ok()) {
    return status;
  }
  return objects;
}

absl::StatusOr<std::vector<ManifestObject>> load_manifests(const std::string& path) {
  std::vector<std::string> files;
  std::error_code error;
  if (path != "-" && std::filesystem::is_directory(path, error)) {
    for (const auto& entry : std::filesystem::directory_iterator(path, error)) {
      const std::string extension = entry.path().extension().string();
      if (entry.is_regular_file() && (extension == ".yaml" || extension == ".yml")) {
        files.push_back(entry.path().string());
      }
    }
    if (error) return absl::InvalidArgumentError(absl::StrCat(path, ": ", error.message()));
    std::sort(files.begin(), files.end());
  } else {
    files.push_back(path);
  }
  DefinitionIndex definitions;
  std::vector<ManifestObject> objects;
  for (const std::string& file : files) {
    absl::StatusOr<std::string> text;
    if (file == "-") {
      text = std::string(std::istreambuf_iterator<char>(std::cin), {});
    } else {
      text = read_text_file(file);
    }
    if (!text.ok()) return text.status();
    const std::string name = file == "-" ? std::string("<stdin>") : file;
    if (absl::Status status = parse_into(*text, name, &definitions, &objects); !status.ok()) {
      return status;
    }
  }
  return objects;
}

std::string enum_common_prefix(const EnumDescriptor* type) {
  std::string prefix = type->value(0)->name();
  for (int i = 1; i < type->value_count(); ++i) {
    const std::string& name = type->value(i)->name();
    size_t length = 0;
    while (length < prefix.size() && length < name.size() && prefix[length] == name[length]) {
      ++length;
    }
    prefix.resize(length);
  }
  const size_t underscore = prefix.rfind('_');
  return underscore == std::string::npos ? std::string() : prefix.substr(0, underscore + 1);
}

}  // namespace tenon::controller
