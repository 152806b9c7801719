// tenonctl: the operator CLI. The fleet commands (apply, get, describe, delete, diff, logs,
// token create) talk to tenon-controller (fleet_commands.cc). `compose` prints the composition an
// app would get on a device and `build` also links its image; neither needs a running
// controller: both read the catalog (manifests and built archives) of this build tree, or the
// one named by --catalog/--archives.
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <variant>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "catalog.h"
#include "client_config.h"
#include "composition.h"
#include "device.h"
#include "fleet_commands.h"
#include "image_builder.h"
#include "render.h"
#include "tenonctl_defaults.h"

namespace {

using namespace tenon::controller;

// Exit statuses (fleet_commands.h), also in --help. For compose and build, "refused" means
// unsatisfiable, conflicting, unsupported, unschedulable or too big.
constexpr int kOk = kExitOk;
constexpr int kRefused = kExitRefused;
constexpr int kBadInput = kExitBadInput;
constexpr int kBuildFailed = kExitBuildFailed;

struct Options {
  std::string app_file;
  std::string device_file;
  std::string output_format = "yaml";
  std::string image_output;
  std::string source_root = defaults::kSourceRoot;
  std::string archive_root = defaults::kArchiveRoot;
  std::string cache_dir = defaults::kCacheDir;
};

int report(const absl::Status& status) {
  std::cerr << "tenonctl: " << status.message() << "\n";
  return absl::IsFailedPrecondition(status) ? kRefused : kBadInput;
}

struct Loaded {
  Catalog catalog;
  Composition composition;
};

// Reads the catalog and both files and composes; on failure returns the exit status.
std::variant<Loaded, int> load_and_compose(const Options& options) {
  absl::StatusOr<std::string> app_text = read_text_file(options.app_file);
  if (!app_text.ok()) return report(app_text.status());
  absl::StatusOr<AppSpec> app = parse_app_spec(*app_text, options.app_file);
  if (!app.ok()) return report(app.status());
  absl::StatusOr<std::string> device_text = read_text_file(options.device_file);
  if (!device_text.ok()) return report(device_text.status());
  absl::StatusOr<DeviceProfile> device = parse_device_profile(*device_text, options.device_file);
  if (!device.ok()) return report(device.status());
  CatalogPaths paths;
  paths.source_root = options.source_root;
  paths.archive_root = options.archive_root;
  absl::StatusOr<Catalog> catalog = Catalog::load(paths);
  if (!catalog.ok()) return report(catalog.status());
  absl::StatusOr<Composition> composition = compose(*catalog, *app, *device);
  if (!composition.ok()) return report(composition.status());
  return Loaded{std::move(*catalog), std::move(*composition)};
}

int run_compose(const Options& options) {
  std::variant<Loaded, int> loaded = load_and_compose(options);
  if (int* status = std::get_if<int>(&loaded)) return *status;
  const Composition& composition = std::get<Loaded>(loaded).composition;
  nlohmann::ordered_json document = composition_to_json(composition);
  if (options.output_format == "json") {
    std::cout << document.dump(2) << "\n";
  } else {
    std::cout << json_to_yaml(document);
  }
  return kOk;
}

int run_build(const Options& options) {
  std::variant<Loaded, int> loaded = load_and_compose(options);
  if (int* status = std::get_if<int>(&loaded)) return *status;
  Loaded& result = std::get<Loaded>(loaded);
  ImageBuilderConfig config;
  config.compiler = defaults::kCompiler;
  for (const char* option : defaults::kLinkOptions) config.link_options.push_back(option);
  config.linker_script = defaults::kLinkerScript;
  config.cache_dir = options.cache_dir;
  ImageBuilder builder(config);
  absl::StatusOr<BuiltImage> image = builder.build(result.catalog, result.composition);
  if (!image.ok()) {
    std::cerr << "tenonctl: " << image.status().message() << "\n";
    return absl::IsFailedPrecondition(image.status()) ? kRefused : kBuildFailed;
  }
  std::error_code error;
  std::filesystem::copy_file(image->path, options.image_output,
                             std::filesystem::copy_options::overwrite_existing, error);
  if (error) {
    std::cerr << "tenonctl: " << options.image_output << ": " << error.message() << "\n";
    return kBuildFailed;
  }
  const uint64_t memory = result.composition.memory_plan.total_bytes;
  std::cout << "composition " << result.composition.name << "\n"
            << "image " << options.image_output << " " << image->image_digest << " "
            << image->size_bytes << " bytes (" << (image->cache_hit ? "cache hit" : "linked")
            << ")\n"
            << "memory " << memory << " bytes\n"
            << "run: mortise run " << options.image_output << " --memory " << memory / 1024
            << "K\n";
  return kOk;
}

// Blanks the value of --token in this process's arguments once they are parsed, so that `ps` and
// /proc/<pid>/cmdline do not show the operator token (--token-file or the config file keep it
// out of them from the start). CLI11 has copied the value by then.
void hide_token_argument(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    char* value = nullptr;
    if (std::strcmp(argv[i], "--token") == 0 && i + 1 < argc) {
      value = argv[i + 1];
    } else if (std::strncmp(argv[i], "--token=", 8) == 0) {
      value = argv[i] + 8;
    }
    if (value != nullptr) std::memset(value, '*', std::strlen(value));
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli(
      "tenonctl: operate a TenonOS fleet through tenon-controller, and compose TenonOS images "
      "for devices without one");
  cli.require_subcommand(1);
  cli.footer(
      "Exit status: 0 ok; 1 refused (by the controller: FAILED_PRECONDITION, ALREADY_EXISTS, "
      "ABORTED, ...; by compose/build: unsatisfiable, conflict, unsupported arch, "
      "unschedulable, does not fit), or diff found differences; 2 bad input (usage, invalid "
      "manifest with file:line: field, INVALID_ARGUMENT); 3 the toolchain or the image cache "
      "failed; 4 not found; 5 cannot reach or authenticate with the controller (UNAVAILABLE, "
      "UNAUTHENTICATED, PERMISSION_DENIED, DEADLINE_EXCEEDED); rollout status: 6 halted, 7 "
      "rolled back, 8 not done by --deadline.");
  Options options;
  ClientFlags client_flags;
  FleetOptions fleet;
  cli.add_option("--server", client_flags.server,
                 "Controller gRPC address host:port (default 127.0.0.1:7440)");
  cli.add_option("--token", client_flags.token,
                 "Operator bearer token (blanked in the process's arguments once read; prefer "
                 "--token-file)");
  cli.add_option("--token-file", client_flags.token_file, "File holding the operator token");
  cli.add_option("--config", client_flags.config_file,
                 "Client config (YAML: server, token or token_file); default $TENONCTL_CONFIG "
                 "or ~/.config/tenon/config.yaml");
  cli.add_option("--timeout", client_flags.timeout, "Per-request deadline, e.g. 10s (default 30s)")
      ->type_name("DURATION");

  auto add_common = [&](CLI::App* command) {
    command->add_option("-f,--file", options.app_file, "App spec (YAML)")->required();
    command->add_option("--device", options.device_file, "Device profile (YAML)")->required();
    command->add_option("--catalog", options.source_root,
                        "Source tree holding tenon/ and mortise/ manifests");
    command->add_option("--archives", options.archive_root,
                        "Directory holding lib/<arch>/ and apps/<arch>/ archives");
  };
  CLI::App* compose_command = cli.add_subcommand(
      "compose", "Print the composition (libraries, config, memory plan, schedulability, why)");
  add_common(compose_command);
  compose_command->add_option("-o,--output", options.output_format, "yaml or json")
      ->check(CLI::IsMember({"yaml", "json"}));
  CLI::App* build_command =
      cli.add_subcommand("build", "Compose and link the image (cached by content)");
  add_common(build_command);
  build_command->add_option("-o,--output", options.image_output, "Where to write the ELF image")
      ->required();
  build_command->add_option("--cache", options.cache_dir, "Image cache directory");

  // Fleet commands; the global options may also follow them.
  const std::string kinds = "device, app, deployment, instance, composition (or plural, short)";
  CLI::App* apply_command = cli.add_subcommand(
      "apply", "Create or update the objects of manifests (validated locally first)");
  apply_command->add_option("-f,--file", fleet.file, "Manifest file, folder of *.yaml, or -")
      ->required();
  apply_command->add_flag("--dry-run", fleet.dry_run, "Validate and compose, store nothing");
  CLI::App* get_command = cli.add_subcommand("get", "List objects of a kind, or show one");
  get_command->add_option("kind", fleet.kind, kinds)->required();
  get_command->add_option("name", fleet.name, "Object name");
  get_command->add_option("-o,--output", fleet.output, "yaml, json or wide")
      ->check(CLI::IsMember({"yaml", "json", "wide"}));
  get_command->add_option("-l,--selector", fleet.selector,
                          "Labels: key=value,key!=value,key in (a,b),key notin (a,b),key,!key");
  get_command->add_option("--device", fleet.device, "Instances on this device");
  get_command->add_flag("-w,--watch", fleet.watch,
                        "After the list, print each change as it happens (Ctrl-C ends)");
  get_command->add_option("--deployment", fleet.deployment, "Instances of this deployment");
  CLI::App* describe_command = cli.add_subcommand("describe", "Show one object in detail");
  describe_command->add_option("kind", fleet.kind, kinds)->required();
  describe_command->add_option("name", fleet.name, "Object name")->required();
  CLI::App* delete_command =
      cli.add_subcommand("delete", "Delete a device, app or deployment (KIND NAME or -f FILE)");
  delete_command->add_option("kind", fleet.kind, "device, app or deployment");
  delete_command->add_option("name", fleet.name, "Object name");
  delete_command->add_option("-f,--file", fleet.file, "Delete the objects of these manifests");
  delete_command->add_flag("--force", fleet.force, "Delete a device even while it runs instances");
  CLI::App* diff_command = cli.add_subcommand(
      "diff", "Show what apply would change (exit 1 when something would change)");
  diff_command->add_option("-f,--file", fleet.file, "Manifest file, folder of *.yaml, or -")
      ->required();
  CLI::App* logs_command = cli.add_subcommand("logs", "Print an instance's console output");
  logs_command->add_option("instance", fleet.name, "Instance name")->required();
  logs_command->add_flag("-f,--follow", fleet.follow, "Keep printing new output");
  logs_command->add_option("--tail", fleet.tail_bytes, "Start with the last BYTES held");
  CLI::App* token_command = cli.add_subcommand("token", "Bootstrap tokens for enrolling devices");
  token_command->require_subcommand(1);
  CLI::App* token_create_command = token_command->add_subcommand(
      "create", "Create a bootstrap token; prints the secret (shown only once)");
  token_create_command->add_option("--device", fleet.token_device,
                                   "Only a device of this name may enroll with it");
  token_create_command->add_option("--uses", fleet.token_uses, "How many enrolments (default 1)");
  token_create_command->add_option("--ttl", fleet.token_ttl, "Validity, e.g. 1h (default 24h)")
      ->type_name("DURATION");
  token_create_command->add_option("--label", fleet.token_labels,
                                   "key=value given to enrolled devices (repeatable)");
  token_create_command->add_option("-o,--output", fleet.output, "json or yaml")
      ->check(CLI::IsMember({"json", "yaml"}));
  CLI::App* migrate_command = cli.add_subcommand(
      "migrate", "Move a running instance to another device (snapshot, transfer, restore)");
  migrate_command->add_option("instance", fleet.name, "Instance name")->required();
  migrate_command->add_option("--to", fleet.target_device, "Target device")->required();
  migrate_command->add_option("-o,--output", fleet.output, "json for the whole report")
      ->check(CLI::IsMember({"json"}));
  CLI::App* rollout_command = cli.add_subcommand("rollout", "Follow a deployment's staged rollout");
  rollout_command->require_subcommand(1);
  CLI::App* rollout_status_command = rollout_command->add_subcommand(
      "status",
      "Wait for a deployment's rollout to end: exit 0 complete, 6 halted, 7 rolled back, 8 "
      "--deadline passed");
  rollout_status_command->add_option("deployment", fleet.name, "Deployment name")->required();
  rollout_status_command
      ->add_option("--deadline", fleet.rollout_deadline,
                   "Give up after this long, e.g. 5m (default 10m)")
      ->type_name("DURATION");
  rollout_status_command->add_option("-o,--output", fleet.output, "json: the final status")
      ->check(CLI::IsMember({"json"}));
  std::vector<CLI::App*> rollout_control_commands;
  for (const auto& [action, help] : std::vector<std::pair<std::string, std::string>>{
           {"pause", "Stop starting waves; reached devices keep the new revision"},
           {"resume", "Go on with a paused or halted rollout from its current wave"},
           {"abort", "Roll every device back to the previous revision"},
           {"undo", "Put every device on an earlier kept revision (default: the one before)"}}) {
    CLI::App* command = rollout_command->add_subcommand(action, help);
    command->add_option("deployment", fleet.name, "Deployment name")->required();
    if (action == "undo") {
      command->add_option("--to-revision", fleet.to_revision,
                          "Revision to go back to (see rollout history)");
    }
    command->callback([&fleet, action = action] { fleet.rollout_action = action; });
    rollout_control_commands.push_back(command);
  }
  CLI::App* rollout_history_command = rollout_command->add_subcommand(
      "history", "A deployment's kept revisions (* current) and its rollout events");
  rollout_history_command->add_option("deployment", fleet.name, "Deployment name")->required();
  rollout_history_command->add_option("-o,--output", fleet.output, "json: revisions and events")
      ->check(CLI::IsMember({"json"}));
  for (CLI::App* command : rollout_control_commands) command->fallthrough();
  rollout_history_command->fallthrough();
  for (CLI::App* command : {apply_command, get_command, describe_command, delete_command,
                            diff_command, logs_command, migrate_command, token_command,
                            token_create_command, rollout_command, rollout_status_command}) {
    command->fallthrough();
  }

  try {
    cli.parse(argc, argv);
  } catch (const CLI::CallForHelp& help) {
    return cli.exit(help);
  } catch (const CLI::CallForAllHelp& help) {
    return cli.exit(help);
  } catch (const CLI::ParseError& error) {
    cli.exit(error);
    return kBadInput;
  }
  hide_token_argument(argc, argv);
  if (compose_command->parsed()) return run_compose(options);
  if (build_command->parsed()) return run_build(options);

  absl::StatusOr<ClientConfig> client = resolve_client_config(client_flags);
  if (!client.ok()) {
    std::cerr << "tenonctl: " << client.status().message() << "\n";
    return kBadInput;
  }
  if (apply_command->parsed()) return run_apply(*client, fleet);
  if (get_command->parsed()) return run_get(*client, fleet);
  if (describe_command->parsed()) return run_describe(*client, fleet);
  if (delete_command->parsed()) return run_delete(*client, fleet);
  if (diff_command->parsed()) return run_diff(*client, fleet);
  if (logs_command->parsed()) return run_logs(*client, fleet);
  if (migrate_command->parsed()) return run_migrate(*client, fleet);
  if (rollout_status_command->parsed()) return run_rollout_status(*client, fleet);
  if (rollout_history_command->parsed()) return run_rollout_history(*client, fleet);
  if (!fleet.rollout_action.empty()) return run_rollout_control(*client, fleet);
  return run_token_create(*client, fleet);
}
