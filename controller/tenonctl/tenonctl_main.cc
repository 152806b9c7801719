// tenonctl: the operator CLI. `compose` prints the composition an app would get on a device;
// `build` also links its image. Neither needs a running controller: both read the catalog
// (manifests and built archives) of this build tree, or the one named by --catalog/--archives.
#include <filesystem>
#include <iostream>
#include <string>
#include <variant>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "catalog.h"
#include "composition.h"
#include "device.h"
#include "image_builder.h"
#include "render.h"
#include "tenonctl_defaults.h"

namespace {

using namespace tenon::controller;

// Exit statuses, also in --help.
constexpr int kOk = 0;
constexpr int kRefused = 1;      // unsatisfiable, conflicting, unsupported, unschedulable, too big
constexpr int kBadInput = 2;     // usage errors, unreadable or invalid files
constexpr int kBuildFailed = 3;  // the toolchain or the cache failed

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

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli("tenonctl: compose TenonOS images for devices, without a controller");
  cli.require_subcommand(1);
  cli.footer(
      "Exit status: 0 ok; 1 refused (unsatisfiable, conflict, unsupported arch, unschedulable, "
      "does not fit); 2 usage error or invalid input (errors name file:line:field); 3 the "
      "toolchain or the image cache failed.");
  Options options;
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
  if (compose_command->parsed()) return run_compose(options);
  return run_build(options);
}
