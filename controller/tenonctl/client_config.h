// Where tenonctl finds the controller and its operator credential: flags, then the config file
// (--config, else $TENONCTL_CONFIG, else ~/.config/tenon/config.yaml), then defaults.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tenon::controller {

inline constexpr const char* kDefaultServer = "127.0.0.1:7440";

// As given on the command line; empty means "not given".
struct ClientFlags {
  std::string server;
  std::string token;
  std::string token_file;
  std::string config_file;
  std::string timeout;
};

struct ClientConfig {
  std::string server = kDefaultServer;         // host:port of the controller's gRPC endpoint
  std::string token;                           // empty: no authorization metadata is sent
  absl::Duration timeout = absl::Seconds(30);  // per RPC; a following log stream has none
};

// The config file is YAML with the keys `server`, `token` and `token_file` (a path relative to
// the config file's folder, read and stripped of surrounding whitespace), all optional; unknown
// keys are errors. A missing default config file is fine; a missing --config or
// $TENONCTL_CONFIG file is an error. Errors are InvalidArgument or NotFound naming the file.
absl::StatusOr<ClientConfig> resolve_client_config(const ClientFlags& flags);

}  // namespace tenon::controller
