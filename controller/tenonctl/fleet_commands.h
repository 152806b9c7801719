// tenonctl's fleet commands: apply, get, describe, delete, diff, logs, migrate, token create and
// rollout status, each one or a few FleetService RPCs against tenon-controller.
#pragma once

#include <string>
#include <vector>

#include "client_config.h"

namespace tenon::controller {

// Exit statuses of every tenonctl command, also in --help and controller/README.md.
inline constexpr int kExitOk = 0;
inline constexpr int kExitRefused = 1;      // refused by the controller, or diff found differences
inline constexpr int kExitBadInput = 2;     // usage, bad manifest, INVALID_ARGUMENT
inline constexpr int kExitBuildFailed = 3;  // compose/build: the toolchain or the cache failed
inline constexpr int kExitNotFound = 4;
inline constexpr int kExitUnreachable = 5;  // cannot reach or authenticate with the controller
// rollout status: how a rollout ended other than complete, for pipelines to gate on.
inline constexpr int kExitRolloutHalted = 6;
inline constexpr int kExitRolloutRolledBack = 7;
inline constexpr int kExitRolloutTimedOut = 8;

// What the fleet commands were given, besides the client configuration.
struct FleetOptions {
  std::string file;  // -f: a manifest file, a folder of them, or "-"
  bool dry_run = false;
  std::string kind;
  std::string name;
  std::string output;    // "", "yaml", "json", "wide"
  std::string selector;  // -l: see label_selector.h
  bool watch = false;    // get -w: print changes after the list until interrupted
  std::string device;
  std::string deployment;
  bool force = false;
  bool follow = false;
  uint64_t tail_bytes = 0;
  // token create
  std::string token_device;
  uint32_t token_uses = 0;
  std::string token_ttl = "24h";
  std::vector<std::string> token_labels;  // key=value
  // migrate
  std::string target_device;
  // rollout status, rollout pause|resume|abort|undo
  std::string rollout_deadline = "10m";
  std::string rollout_action;  // "pause", "resume", "abort", "undo"
  uint64_t to_revision = 0;
};

int run_apply(const ClientConfig& config, const FleetOptions& options);
int run_get(const ClientConfig& config, const FleetOptions& options);
int run_describe(const ClientConfig& config, const FleetOptions& options);
int run_delete(const ClientConfig& config, const FleetOptions& options);
int run_diff(const ClientConfig& config, const FleetOptions& options);
int run_logs(const ClientConfig& config, const FleetOptions& options);
int run_token_create(const ClientConfig& config, const FleetOptions& options);
int run_migrate(const ClientConfig& config, const FleetOptions& options);
// Follows a deployment's rollout until it completes (0), halts (6), is rolled back (7) or
// --deadline passes (8), printing each change of its state.
int run_rollout_status(const ClientConfig& config, const FleetOptions& options);
// rollout pause|resume|abort|undo: one ControlRollout call; prints the rollout's state after it.
int run_rollout_control(const ClientConfig& config, const FleetOptions& options);
// rollout history: the deployment's kept revisions and its rollout events.
int run_rollout_history(const ClientConfig& config, const FleetOptions& options);

}  // namespace tenon::controller
