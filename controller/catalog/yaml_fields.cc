// Strict yaml-cpp field readers; see yaml_fields.h.
#include "yaml_fields.h"

#include <charconv>
#include <exception>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tenon::controller::yaml_fields {

absl::Status error_at_mark(const std::string& file, const YAML::Mark& mark,
                           const std::string& field, const std::string& message) {
  const int line = mark.is_null() ? 0 : mark.line + 1;
  const int column = mark.is_null() ? 0 : mark.column + 1;
  return absl::InvalidArgumentError(
      absl::StrFormat("%s:%d:%d: %s: %s", file, line, column, field, message));
}

absl::Status error_at(const std::string& file, const YAML::Node& node, const std::string& field,
                      const std::string& message) {
  return error_at_mark(file, node.Mark(), field, message);
}

absl::StatusOr<YAML::Node> load_mapping(std::string_view text, const std::string& file) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& exception) {
    return error_at_mark(file, exception.mark, "(document)", exception.msg);
  } catch (const std::exception& exception) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": (document): ", exception.what()));
  }
  if (!root.IsMap()) {
    return error_at(file, root, "(document)", "the document must be a mapping of fields");
  }
  return root;
}

MappingReader::MappingReader(const std::string& file, const YAML::Node& node, std::string prefix)
    : file_(file), node_(node), prefix_(std::move(prefix)) {}

absl::Status MappingReader::check_shape() const {
  if (!node_.IsMap()) {
    std::string name = prefix_.empty() ? "(document)" : prefix_.substr(0, prefix_.size() - 1);
    return error_at(file_, node_, name, "expected a mapping");
  }
  std::set<std::string> seen;
  for (const auto& entry : node_) {
    if (!entry.first.IsScalar()) {
      return error_at(file_, entry.first, prefix_ + "(key)", "keys must be plain names");
    }
    const std::string key = entry.first.Scalar();
    if (!seen.insert(key).second) {
      return error_at(file_, entry.first, field(key), "duplicate key");
    }
  }
  return absl::OkStatus();
}

bool MappingReader::has(const std::string& key) const {
  for (const auto& entry : node_) {
    if (entry.first.IsScalar() && entry.first.Scalar() == key) return true;
  }
  return false;
}

YAML::Node MappingReader::get(const std::string& key) const {
  for (const auto& entry : node_) {
    if (entry.first.IsScalar() && entry.first.Scalar() == key) return entry.second;
  }
  return YAML::Node();
}

int MappingReader::line(const std::string& key) const {
  for (const auto& entry : node_) {
    if (entry.first.IsScalar() && entry.first.Scalar() == key) return entry.first.Mark().line + 1;
  }
  return node_.Mark().is_null() ? 0 : node_.Mark().line + 1;
}

absl::StatusOr<std::string> MappingReader::string(const std::string& key, bool required) {
  if (!has(key)) {
    if (required) return error_at(file_, node_, field(key), "missing required field");
    return std::string();
  }
  return parse_string(file_, get(key), field(key));
}

absl::StatusOr<uint64_t> MappingReader::unsigned_integer(const std::string& key, bool required,
                                                         uint64_t fallback) {
  if (!has(key)) {
    if (required) return error_at(file_, node_, field(key), "missing required field");
    return fallback;
  }
  return parse_unsigned(file_, get(key), field(key));
}

absl::StatusOr<std::vector<std::string>> MappingReader::string_list(const std::string& key,
                                                                    bool required) {
  std::vector<std::string> values;
  if (!has(key)) {
    if (required) return error_at(file_, node_, field(key), "missing required field");
    return values;
  }
  const YAML::Node list = get(key);
  if (list.IsNull()) return values;
  if (!list.IsSequence()) return error_at(file_, list, field(key), "expected a list of names");
  std::set<std::string> seen;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string item_field = absl::StrCat(field(key), "[", i, "]");
    absl::StatusOr<std::string> value = parse_string(file_, list[i], item_field);
    if (!value.ok()) return value.status();
    if (!is_valid_name(*value)) {
      return error_at(file_, list[i], item_field,
                      absl::StrCat("'", *value, "' is not a valid name (a-z, 0-9, '-', '_')"));
    }
    if (!seen.insert(*value).second) {
      return error_at(file_, list[i], item_field, absl::StrCat("'", *value, "' listed twice"));
    }
    values.push_back(*value);
  }
  return values;
}

absl::Status MappingReader::no_unknown_keys(const std::set<std::string>& known) const {
  for (const auto& entry : node_) {
    const std::string key = entry.first.Scalar();
    if (!known.contains(key)) {
      std::string list;
      for (const std::string& name : known) absl::StrAppend(&list, list.empty() ? "" : ", ", name);
      return error_at(file_, entry.first, field(key),
                      absl::StrCat("unknown field (known: ", list, ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> parse_string(const std::string& file, const YAML::Node& node,
                                         const std::string& field) {
  if (!node.IsScalar()) return error_at(file, node, field, "expected a single value");
  return node.Scalar();
}

absl::StatusOr<uint64_t> parse_unsigned(const std::string& file, const YAML::Node& node,
                                        const std::string& field) {
  if (!node.IsScalar()) return error_at(file, node, field, "expected a non-negative integer");
  const std::string& text = node.Scalar();
  uint64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
    return error_at(
        file, node, field,
        absl::StrCat("expected a non-negative integer that fits 64 bits, got '", text, "'"));
  }
  return value;
}

absl::StatusOr<int64_t> parse_signed(const std::string& file, const YAML::Node& node,
                                     const std::string& field) {
  if (!node.IsScalar()) return error_at(file, node, field, "expected an integer");
  const std::string& text = node.Scalar();
  int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
    return error_at(file, node, field,
                    absl::StrCat("expected an integer that fits 64 bits, got '", text, "'"));
  }
  return value;
}

absl::StatusOr<bool> parse_boolean(const std::string& file, const YAML::Node& node,
                                   const std::string& field) {
  if (node.IsScalar() && node.Scalar() == "true") return true;
  if (node.IsScalar() && node.Scalar() == "false") return false;
  return error_at(file, node, field, "expected true or false");
}

bool is_valid_name(const std::string& name) {
  if (name.empty() || name.size() > 63) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

}  // namespace tenon::controller::yaml_fields
