// tenonctl's client configuration; see client_config.h.
#include "client_config.h"

#include <cstdlib>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "flags/duration_flag.h"
#include "manifest.h"  // read_text_file
#include "yaml_fields.h"

namespace tenon::controller {
namespace {

absl::StatusOr<std::string> read_token_file(const std::string& path) {
  absl::StatusOr<std::string> text = read_text_file(path);
  if (!text.ok()) return text.status();
  std::string token(absl::StripAsciiWhitespace(*text));
  if (token.empty())
    return absl::InvalidArgumentError(absl::StrCat(path, ": the token file is empty"));
  return token;
}

struct FileSettings {
  std::string server;
  std::string token;
  std::string token_file;  // resolved against the config file's folder
};

absl::StatusOr<FileSettings> read_config_file(const std::string& path) {
  absl::StatusOr<std::string> text = read_text_file(path);
  if (!text.ok()) return text.status();
  FileSettings settings;
  if (absl::StripAsciiWhitespace(*text).empty()) return settings;
  absl::StatusOr<YAML::Node> root = yaml_fields::load_mapping(*text, path);
  if (!root.ok()) return root.status();
  yaml_fields::MappingReader reader(path, *root, "");
  if (absl::Status shape = reader.check_shape(); !shape.ok()) return shape;
  absl::StatusOr<std::string> server = reader.string("server", false);
  if (!server.ok()) return server.status();
  absl::StatusOr<std::string> token = reader.string("token", false);
  if (!token.ok()) return token.status();
  absl::StatusOr<std::string> token_file = reader.string("token_file", false);
  if (!token_file.ok()) return token_file.status();
  if (absl::Status keys = reader.no_unknown_keys({"server", "token", "token_file"}); !keys.ok()) {
    return keys;
  }
  if (!token->empty() && !token_file->empty()) {
    return yaml_fields::error_at(path, reader.get("token_file"), "token_file",
                                 "give token or token_file, not both");
  }
  settings.server = *server;
  settings.token = *token;
  if (!token_file->empty()) {
    std::filesystem::path file(*token_file);
    if (file.is_relative()) file = std::filesystem::path(path).parent_path() / file;
    settings.token_file = file.string();
  }
  return settings;
}

}  // namespace

absl::StatusOr<ClientConfig> resolve_client_config(const ClientFlags& flags) {
  ClientConfig config;
  std::string config_path = flags.config_file;
  bool config_required = !config_path.empty();
  if (config_path.empty()) {
    if (const char* from_environment = std::getenv("TENONCTL_CONFIG");
        from_environment != nullptr && *from_environment != '\0') {
      config_path = from_environment;
      config_required = true;
    } else if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
      config_path = absl::StrCat(home, "/.config/tenon/config.yaml");
    }
  }
  FileSettings file;
  std::error_code error;
  if (!config_path.empty() && (config_required || std::filesystem::exists(config_path, error))) {
    absl::StatusOr<FileSettings> settings = read_config_file(config_path);
    if (!settings.ok()) return settings.status();
    file = std::move(*settings);
  }
  if (!flags.server.empty()) {
    config.server = flags.server;
  } else if (!file.server.empty()) {
    config.server = file.server;
  }
  if (!flags.token.empty() && !flags.token_file.empty()) {
    return absl::InvalidArgumentError("give --token or --token-file, not both");
  }
  // A token given on the command line wins over any in the config file.
  if (!flags.token.empty()) {
    config.token = flags.token;
  } else if (!flags.token_file.empty()) {
    absl::StatusOr<std::string> token = read_token_file(flags.token_file);
    if (!token.ok()) return token.status();
    config.token = *token;
  } else if (!file.token.empty()) {
    config.token = file.token;
  } else if (!file.token_file.empty()) {
    absl::StatusOr<std::string> token = read_token_file(file.token_file);
    if (!token.ok()) return token.status();
    config.token = *token;
  }
  if (!flags.timeout.empty()) {
    absl::StatusOr<absl::Duration> timeout =
        tenon::flags::parse_duration_flag("--timeout", flags.timeout);
    if (!timeout.ok()) return timeout.status();
    config.timeout = *timeout;
  }
  return config;
}

}  // namespace tenon::controller
