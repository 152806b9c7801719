// See fleet_composer.h.
#include "fleet_composer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "crypto/sha256.h"

namespace tenon::controller {
namespace {

namespace v1 = tenon::v1;

SchedulerKind scheduler_from_proto(v1::SchedulerKind kind) {
  switch (kind) {
    case v1::SCHEDULER_KIND_FIXED_PRIORITY:
      return SchedulerKind::kFixedPriority;
    case v1::SCHEDULER_KIND_EARLIEST_DEADLINE_FIRST:
      return SchedulerKind::kEarliestDeadlineFirst;
    default:
      break;
  }
  return SchedulerKind::kNone;
}

v1::SchedulerKind scheduler_to_proto(SchedulerKind kind) {
  switch (kind) {
    case SchedulerKind::kFixedPriority:
      return v1::SCHEDULER_KIND_FIXED_PRIORITY;
    case SchedulerKind::kEarliestDeadlineFirst:
      return v1::SCHEDULER_KIND_EARLIEST_DEADLINE_FIRST;
    case SchedulerKind::kNone:
      break;
  }
  return v1::SCHEDULER_KIND_UNSPECIFIED;
}

v1::MemoryAccess access_to_proto(MemoryAccess access) {
  switch (access) {
    case MemoryAccess::kNone:
      return v1::MEMORY_ACCESS_NONE;
    case MemoryAccess::kReadOnly:
      return v1::MEMORY_ACCESS_READ_ONLY;
    case MemoryAccess::kReadWrite:
      return v1::MEMORY_ACCESS_READ_WRITE;
    case MemoryAccess::kReadExecute:
      return v1::MEMORY_ACCESS_READ_EXECUTE;
  }
  return v1::MEMORY_ACCESS_UNSPECIFIED;
}

void add_library(const ChosenLibrary& chosen, v1::LibraryLayer layer, v1::Composition* out) {
  v1::ChosenLibrary* library = out->add_libraries();
  library->set_name(chosen.name);
  library->set_layer(layer);
  for (const auto& [option, value] : chosen.config) {
    v1::ConfigValue& config = (*library->mutable_config())[option];
    switch (value.type) {
      case OptionType::kInteger:
        config.set_int_value(value.integer);
        break;
      case OptionType::kBoolean:
        config.set_bool_value(value.boolean);
        break;
      case OptionType::kString:
        config.set_string_value(value.text);
        break;
    }
  }
  for (const std::string& capability : chosen.provides) library->add_provides(capability);
  library->set_footprint_bytes(chosen.footprint.total_bytes());
  library->set_reason(chosen.reason);
}

v1::Composition composition_to_proto(const Composition& composition, const std::string& app_name,
                                     const v1::AppSpec& app, const v1::DeviceProfile& profile,
                                     const v1::Placement& placement) {
  v1::Composition out;
  out.mutable_metadata()->set_name(
      app_name.empty() ? absl::StrCat("inline-", composition.input_digest.substr(0, 12))
                       : composition.name);
  v1::CompositionInputs* inputs = out.mutable_inputs();
  inputs->set_app(app_name);
  *inputs->mutable_app_spec() = app;
  *inputs->mutable_profile() = profile;
  *inputs->mutable_placement() = placement;
  inputs->set_policy(v1::COMPOSITION_POLICY_MINIMISE_FOOTPRINT);
  inputs->set_catalog_digest(absl::StrCat("sha256:", composition.catalog_digest));
  inputs->set_input_digest(absl::StrCat("sha256:", composition.input_digest));
  for (const ChosenLibrary& library : composition.libraries) {
    add_library(library, v1::LIBRARY_LAYER_TENON, &out);
  }
  for (const ChosenLibrary& library : composition.mortise_libraries) {
    add_library(library, v1::LIBRARY_LAYER_MORTISE, &out);
  }
  v1::MemoryPlan* plan = out.mutable_memory_plan();
  plan->set_total_bytes(composition.memory_plan.total_bytes);
  for (const MemoryRegion& region : composition.memory_plan.regions) {
    v1::MemoryRegion* entry = plan->add_regions();
    entry->set_name(region.name);
    entry->set_guest_address(region.guest_address);
    entry->set_size_bytes(region.size_bytes);
    entry->set_access(access_to_proto(region.access));
  }
  const SchedulabilityVerdict& verdict = composition.schedulability;
  v1::SchedulabilityVerdict* schedulability = out.mutable_schedulability();
  schedulability->set_result(!verdict.analysed     ? v1::SCHEDULABILITY_RESULT_NOT_ANALYSED
                             : verdict.schedulable ? v1::SCHEDULABILITY_RESULT_SCHEDULABLE
                                                   : v1::SCHEDULABILITY_RESULT_UNSCHEDULABLE);
  schedulability->set_analysis(verdict.analysis == "processor-demand"
                                   ? v1::SCHEDULABILITY_ANALYSIS_PROCESSOR_DEMAND
                                   : v1::SCHEDULABILITY_ANALYSIS_RESPONSE_TIME);
  schedulability->set_scheduler(scheduler_to_proto(verdict.scheduler));
  schedulability->set_utilisation(verdict.utilisation);
  schedulability->set_per_job_overhead_ns(verdict.per_job_overhead_ns);
  for (const TaskVerdict& task : verdict.tasks) {
    v1::TaskVerdict* entry = schedulability->add_tasks();
    entry->set_task_name(task.name);
    entry->set_criticality(v1::CRITICALITY_HARD);
    entry->set_period_ns(task.period_ns);
    entry->set_relative_deadline_ns(task.relative_deadline_ns);
    entry->set_wcet_ns(task.wcet_ns);
    entry->set_worst_case_response_time_ns(task.meets_deadline ? task.worst_case_response_time_ns
                                                               : 0);
    entry->set_meets_deadline(task.meets_deadline);
  }
  for (const std::string& line : composition.explanation) out.add_explanation(line);
  return out;
}

// Everything a composition and its image depend on, hashed: the cache key.
std::string input_key(const std::string& app_name, const v1::AppSpec& app,
                      const v1::DeviceProfile& profile, const v1::Placement& placement,
                      const std::string& catalog_digest, bool build) {
  crypto::Sha256 hash;
  hash.add_field("tenon.fleet-composition.v1");
  hash.add_field(catalog_digest);
  hash.add_field(app_name);
  std::string bytes;
  app.SerializeToString(&bytes);  // deterministic enough: no maps in AppSpec
  hash.add_field(bytes);
  v1::DeviceProfile canonical = profile;
  // Versions and the kernel release do not change what is composed.
  canonical.clear_mortise_version();
  canonical.clear_agent_version();
  canonical.clear_kernel_release();
  canonical.SerializeToString(&bytes);
  hash.add_field(bytes);
  placement.SerializeToString(&bytes);
  hash.add_field(bytes);
  hash.add_field(build ? "build" : "dry");
  return hash.hex_digest();
}

}  // namespace

const char* arch_name(v1::Arch arch) {
  switch (arch) {
    case v1::ARCH_X86_64:
      return "x86_64";
    case v1::ARCH_ARM64:
      return "arm64";
    default:
      break;
  }
  return "unspecified";
}

AppSpec app_spec_from_proto(const std::string& name, const v1::AppSpec& app) {
  AppSpec spec;
  spec.name = name.empty() ? "inline" : name;
  spec.program = app.program();
  spec.needs.assign(app.needs().begin(), app.needs().end());
  std::sort(spec.needs.begin(), spec.needs.end());
  spec.tasks_given = app.tasks_size() > 0;
  for (const v1::TaskSpec& task : app.tasks()) {
    TaskSpec entry;
    entry.name = task.name();
    entry.period_ns = task.period_ns();
    entry.relative_deadline_ns =
        task.relative_deadline_ns() == 0 ? task.period_ns() : task.relative_deadline_ns();
    entry.wcet_ns = task.wcet_ns();
    entry.priority = task.priority();
    spec.tasks.push_back(entry);
  }
  spec.scheduler = scheduler_from_proto(app.scheduler());
  spec.heap_bytes = app.heap_bytes();
  spec.location.file = "<app " + spec.name + ">";
  return spec;
}

DeviceProfile device_profile_from_proto(const std::string& name, const v1::DeviceProfile& profile,
                                        uint64_t scheduling_overhead_ns) {
  DeviceProfile device;
  device.name = name;
  device.arch = arch_name(profile.arch());
  device.cores = profile.cores();
  device.realtime_cores = profile.realtime_cores();
  device.memory_bytes = profile.memory_bytes();
  device.guest_memory_bytes = profile.guest_memory_bytes();
  device.tsc_frequency_khz = profile.tsc_frequency_khz();
  device.hypervisor_features.assign(profile.hypervisor_features().begin(),
                                    profile.hypervisor_features().end());
  std::sort(device.hypervisor_features.begin(), device.hypervisor_features.end());
  device.mortise_libraries.assign(profile.mortise_libraries().begin(),
                                  profile.mortise_libraries().end());
  std::sort(device.mortise_libraries.begin(), device.mortise_libraries.end());
  device.guest_abi_version = profile.guest_abi_version();
  device.scheduling_overhead_ns = scheduling_overhead_ns;
  device.file = "<device " + name + ">";
  return device;
}

absl::StatusOr<std::unique_ptr<FleetComposer>> FleetComposer::create(FleetComposerConfig config,
                                                                     BlobStore* blobs) {
  absl::StatusOr<Catalog> catalog = Catalog::load(config.catalog);
  if (!catalog.ok()) return catalog.status();
  return std::unique_ptr<FleetComposer>(
      new FleetComposer(std::move(config), std::move(*catalog), blobs));
}

FleetComposer::FleetComposer(FleetComposerConfig config, Catalog catalog, BlobStore* blobs)
    : config_(std::move(config)),
      catalog_(std::move(catalog)),
      builder_(config_.builder),
      blobs_(blobs) {}

absl::StatusOr<ComposedApp> FleetComposer::compose(const std::string& app_name,
                                                   const v1::AppSpec& app,
                                                   const v1::DeviceProfile& profile,
                                                   const v1::Placement& placement, bool build) {
  const std::string key = input_key(app_name, app, profile, placement, catalog_.digest(), build);
  std::lock_guard lock(mutex_);
  if (auto found = cache_.find(key); found != cache_.end()) {
    ++hits_;
    return found->second;
  }
  ++misses_;
  const AppSpec spec = app_spec_from_proto(app_name, app);
  const DeviceProfile device =
      device_profile_from_proto("device", profile, config_.scheduling_overhead_ns);
  absl::StatusOr<Composition> composition = tenon::controller::compose(catalog_, spec, device);
  if (!composition.ok()) return composition.status();
  auto composed = std::make_shared<v1::Composition>(
      composition_to_proto(*composition, app_name, app, profile, placement));
  ComposedApp result;
  const uint64_t planned = composition->memory_plan.total_bytes;
  if (placement.memory_bytes() != 0 && placement.memory_bytes() < planned) {
    return absl::FailedPreconditionError(
        absl::StrCat("does not fit: placement.memory_bytes ", placement.memory_bytes(),
                     " is less than the ", planned, " bytes the memory plan needs"));
  }
  const uint64_t offered =
      profile.guest_memory_bytes() != 0 ? profile.guest_memory_bytes() : profile.memory_bytes();
  if (placement.memory_bytes() > offered) {
    return absl::FailedPreconditionError(
        absl::StrCat("does not fit: placement.memory_bytes ", placement.memory_bytes(),
                     " is more than the ", offered, " bytes the device offers its guests"));
  }
  result.memory_bytes = placement.memory_bytes() != 0 ? placement.memory_bytes() : planned;
  if (build) {
    absl::StatusOr<BuiltImage> image = builder_.build(catalog_, *composition);
    if (!image.ok()) return image.status();
    absl::StatusOr<std::string> bytes = read_text_file(image->path);
    if (!bytes.ok()) return bytes.status();
    absl::Status stored = blobs_->put_verified(image->image_digest, *bytes);
    if (!stored.ok()) return stored;
    composed->set_image_digest(image->image_digest);
    composed->set_image_size_bytes(image->size_bytes);
  }
  result.composition = std::move(composed);
  if (build) cache_.emplace(key, result);
  return result;
}

uint64_t FleetComposer::cache_hits() const {
  std::lock_guard lock(mutex_);
  return hits_;
}

uint64_t FleetComposer::cache_misses() const {
  std::lock_guard lock(mutex_);
  return misses_;
}

}  // namespace tenon::controller
