// B8: composition + image build per device. Cold (empty image cache: compose, generate the
// configuration object, link with the real toolchain, hash), warm (the same request again: a
// composition and a cache lookup), and a fleet of many devices drawn from few distinct profiles
// (wall time and image cache hit ratio). Writes one JSON file; never fails on a timing.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>
#include <set>
#include <thread>

#include "CLI/CLI.hpp"
#include "bench_report.h"
#include "catalog.h"
#include "composition.h"
#include "device.h"
#include "image_builder.h"
#include "nlohmann/json.hpp"
#include "tenonctl_defaults.h"

namespace {

using namespace tenon::controller;
using Clock = std::chrono::steady_clock;
using tenon::bench::summarize;

double elapsed_ms(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

ImageBuilderConfig builder_config(const std::string& cache_dir) {
  ImageBuilderConfig config;
  config.compiler = defaults::kCompiler;
  for (const char* option : defaults::kLinkOptions) config.link_options.push_back(option);
  config.linker_script = defaults::kLinkerScript;
  config.cache_dir = cache_dir;
  return config;
}

// Twenty distinct device profiles: memory sizes, measured per-job overheads and feature sets
// that a fleet of x86_64 edge boxes plausibly reports.
std::vector<DeviceProfile> profiles() {
  std::vector<DeviceProfile> result;
  const uint64_t memories[] = {16ull << 20, 64ull << 20, 256ull << 20, 1ull << 30};
  const uint64_t overheads[] = {0, 1000, 2000, 5000, 10000};
  for (uint64_t memory : memories) {
    for (uint64_t overhead : overheads) {
      DeviceProfile device;
      device.arch = "x86_64";
      device.cores = 2;
      device.realtime_cores = 1;
      device.memory_bytes = memory * 4;
      device.guest_memory_bytes = memory;
      device.scheduling_overhead_ns = overhead;
      device.hypervisor_features = {"disable-exits-hlt", "kvm", "tsc-deadline-timer", "x2apic"};
      device.mortise_libraries = {"console", "hypercall", "kvm", "loader", "memory", "pagetable"};
      result.push_back(device);
    }
  }
  return result;
}

AppSpec app_spec(const Catalog& catalog, const std::string& program) {
  AppSpec spec = catalog.find_app(program)->spec;
  spec.program = program;
  spec.tasks_given = false;
  return spec;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"B8: composition and image build per device, cold, warm and for a fleet"};
  std::string output_path, commit = "unknown", command, work_dir;
  std::string source_root = defaults::kSourceRoot, archive_root = defaults::kArchiveRoot;
  int cold_runs = 20, warm_runs = 1000, devices = 10000;
  cli.add_option("--output", output_path, "JSON result file")->required();
  cli.add_option("--cold-runs", cold_runs, "cold compose+build samples")->capture_default_str();
  cli.add_option("--warm-runs", warm_runs, "warm compose+build samples")->capture_default_str();
  cli.add_option("--devices", devices, "fleet size (20 distinct profiles)")->capture_default_str();
  cli.add_option("--work-dir", work_dir, "where image caches go (default: a fresh temp dir)");
  cli.add_option("--catalog", source_root, "source tree with the manifests");
  cli.add_option("--archives", archive_root, "built archives (lib/ and apps/)");
  cli.add_option("--commit", commit, "commit being measured");
  cli.add_option("--command", command, "the command line that ran this benchmark");
  CLI11_PARSE(cli, argc, argv);

  nlohmann::json report;
  report["benchmarks"] = {"B8"};
  report["commit"] = commit;
  report["command"] = command;
  report["machine"] = tenon::bench::machine_info();
  if (work_dir.empty()) {
    std::string pattern = (std::filesystem::temp_directory_path() / "tenon-b8-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      std::cerr << "compose_bench: cannot create a temporary directory\n";
      return 2;
    }
    work_dir = pattern;
  }

  const Clock::time_point catalog_start = Clock::now();
  CatalogPaths paths;
  paths.source_root = source_root;
  paths.archive_root = archive_root;
  absl::StatusOr<Catalog> catalog = Catalog::load(paths);
  if (!catalog.ok()) {
    std::cerr << "compose_bench: " << catalog.status() << "\n";
    return 2;
  }
  report["catalog_load_ms"] = elapsed_ms(catalog_start);
  const std::vector<DeviceProfile> fleet_profiles = profiles();
  const AppSpec probe = app_spec(*catalog, "latency-probe");
  int failures = 0;

  // Cold: a fresh cache each time, so every sample links.
  std::vector<double> cold_ms, cold_compose_ms;
  for (int i = 0; i < cold_runs; ++i) {
    ImageBuilder builder(builder_config(work_dir + "/cold-" + std::to_string(i)));
    const Clock::time_point start = Clock::now();
    absl::StatusOr<Composition> composition = compose(*catalog, probe, fleet_profiles[1]);
    const double compose_ms = elapsed_ms(start);
    absl::StatusOr<BuiltImage> image =
        composition.ok() ? builder.build(*catalog, *composition) : composition.status();
    if (!image.ok() || image->cache_hit) {
      ++failures;
      continue;
    }
    cold_ms.push_back(elapsed_ms(start));
    cold_compose_ms.push_back(compose_ms);
  }

  // Warm: the same request against a populated cache.
  ImageBuilder warm_builder(builder_config(work_dir + "/warm"));
  {
    absl::StatusOr<Composition> composition = compose(*catalog, probe, fleet_profiles[1]);
    if (composition.ok()) (void)warm_builder.build(*catalog, *composition);
  }
  std::vector<double> warm_ms;
  for (int i = 0; i < warm_runs; ++i) {
    const Clock::time_point start = Clock::now();
    absl::StatusOr<Composition> composition = compose(*catalog, probe, fleet_profiles[1]);
    absl::StatusOr<BuiltImage> image =
        composition.ok() ? warm_builder.build(*catalog, *composition) : composition.status();
    if (!image.ok() || !image->cache_hit) {
      ++failures;
      continue;
    }
    warm_ms.push_back(elapsed_ms(start));
  }

  // Fleet: devices drawn (fixed seed) from the 20 profiles, each running one of the example
  // apps; one shared cache, as one controller would have.
  const std::vector<AppSpec> apps = {probe, app_spec(*catalog, "control-loop"),
                                     app_spec(*catalog, "hello")};
  ImageBuilder fleet_builder(builder_config(work_dir + "/fleet"));
  std::mt19937_64 random(8);
  uint64_t hits = 0, builds = 0, refusals = 0;
  std::set<std::string> compositions, images;
  const Clock::time_point fleet_start = Clock::now();
  for (int device_index = 0; device_index < devices; ++device_index) {
    DeviceProfile device = fleet_profiles[random() % fleet_profiles.size()];
    device.name = "device-" + std::to_string(device_index);
    const AppSpec& app = apps[random() % apps.size()];
    absl::StatusOr<Composition> composition = compose(*catalog, app, device);
    if (!composition.ok()) {
      ++refusals;
      continue;
    }
    absl::StatusOr<BuiltImage> image = fleet_builder.build(*catalog, *composition);
    if (!image.ok()) {
      ++failures;
      continue;
    }
    compositions.insert(composition->input_digest);
    images.insert(image->image_digest);
    (image->cache_hit ? hits : builds)++;
  }
  const double fleet_ms = elapsed_ms(fleet_start);

  report["cold_compose_build_ms"] = summarize(cold_ms);
  report["cold_compose_only_ms"] = summarize(cold_compose_ms);
  report["warm_compose_build_ms"] = summarize(warm_ms);
  report["fleet"] = {
      {"devices", devices},
      {"distinct_profiles", fleet_profiles.size()},
      {"apps", apps.size()},
      {"wall_ms", fleet_ms},
      {"per_device_us", devices > 0 ? fleet_ms * 1000 / devices : 0},
      {"distinct_compositions", compositions.size()},
      {"distinct_images", images.size()},
      {"images_linked", builds},
      {"cache_hits", hits},
      {"refusals", refusals},
      {"cache_hit_ratio", hits + builds > 0 ? double(hits) / double(hits + builds) : 0}};
  report["failures"] = failures;
  report["targets"] = {
      {"cold_ms", "<= 50 + link time"}, {"warm_ms", "<= 1"}, {"fleet_10k_ms", "<= 2000"}};
  std::ofstream(output_path) << report.dump(2) << "\n";
  std::filesystem::remove_all(work_dir);
  std::cout << "B8 compose: cold p50 " << report["cold_compose_build_ms"]["p50"] << " ms, warm p50 "
            << report["warm_compose_build_ms"]["p50"] << " ms, " << devices << " devices in "
            << fleet_ms << " ms, cache hit ratio " << report["fleet"]["cache_hit_ratio"] << "\n";
  return failures == 0 ? 0 : 1;
}
