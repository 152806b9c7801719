// Strict field readers over yaml-cpp nodes, shared by every manifest and spec parser: each one
// checks the node's kind itself (yaml-cpp's as<T>() throws and is too lenient: it accepts "1e3"
// as an integer and "yes" as a boolean), and every error names file:line:column and the field.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tenon::controller::yaml_fields {

// "file:line:column: field: message", lines and columns 1-based.
absl::Status error_at(const std::string& file, const YAML::Node& node, const std::string& field,
                      const std::string& message);
absl::Status error_at_mark(const std::string& file, const YAML::Mark& mark,
                           const std::string& field, const std::string& message);

// Loads a document whose top level must be a mapping. Parser exceptions become statuses here.
absl::StatusOr<YAML::Node> load_mapping(std::string_view text, const std::string& file);

// A mapping reader: remembers which keys were read so unknown keys can be reported, and
// refuses duplicate keys (yaml-cpp keeps the first silently).
class MappingReader {
 public:
  MappingReader(const std::string& file, const YAML::Node& node, std::string prefix);
  absl::Status check_shape() const;  // a mapping with scalar, unique keys

  bool has(const std::string& key) const;
  YAML::Node get(const std::string& key) const;
  int line(const std::string& key) const;  // 1-based line of the key, or of the mapping

  absl::StatusOr<std::string> string(const std::string& key, bool required);
  absl::StatusOr<uint64_t> unsigned_integer(const std::string& key, bool required,
                                            uint64_t fallback = 0);
  absl::StatusOr<std::vector<std::string>> string_list(const std::string& key, bool required);
  // Every key not read so far is an error.
  absl::Status no_unknown_keys(const std::set<std::string>& known) const;

  std::string field(const std::string& key) const { return prefix_ + key; }
  const std::string& file() const { return file_; }
  const YAML::Node& node() const { return node_; }

 private:
  const std::string& file_;
  YAML::Node node_;
  std::string prefix_;
};

// Scalars, strictly: decimal digits only for integers; true/false for booleans.
absl::StatusOr<uint64_t> parse_unsigned(const std::string& file, const YAML::Node& node,
                                        const std::string& field);
absl::StatusOr<int64_t> parse_signed(const std::string& file, const YAML::Node& node,
                                     const std::string& field);
absl::StatusOr<bool> parse_boolean(const std::string& file, const YAML::Node& node,
                                   const std::string& field);
absl::StatusOr<std::string> parse_string(const std::string& file, const YAML::Node& node,
                                         const std::string& field);

// Names of libraries, capabilities, tasks: lowercase letters, digits, '-', '_', 1..63 chars.
bool is_valid_name(const std::string& name);

}  // namespace tenon::controller::yaml_fields
