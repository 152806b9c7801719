// The composition engine; see composition.h. The search is exhaustive over the providers of each
// capability (the catalog is small: a handful of alternatives), so "smallest" is exact.
#include <algorithm>
#include <charconv>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "composition.h"
#include "crypto/sha256.h"
#include "tenon/abi.h"

namespace tenon::controller {
namespace {

constexpr uint64_t kPage = tenon::abi::kPageSize;
constexpr uint64_t kMaxGuestMemory = 1ull << 30;  // mortise::kMaxGuestMemory
constexpr uint64_t kBytesPerPageTable = 512 * kPage;
constexpr size_t kMaxSolutions = 4096;

uint64_t round_up(uint64_t value, uint64_t unit = kPage) {
  return (value + unit - 1) / unit * unit;
}

absl::Status refused(const char* kind, const std::string& message) {
  return absl::FailedPreconditionError(absl::StrCat(kind, ": ", message));
}

bool contains(const std::vector<std::string>& list, const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

std::string kib(uint64_t bytes) {
  return bytes % 1024 == 0 ? absl::StrCat(bytes / 1024, " KiB") : absl::StrCat(bytes, " bytes");
}

// One complete, conflict-free choice of libraries; `why` says for each which capability pulled
// it in and for whom.
struct Solution {
  std::vector<const CatalogLibrary*> libraries;  // in the order chosen
  std::map<const CatalogLibrary*, std::string> why;
  std::map<const CatalogLibrary*, std::set<std::string>> satisfies;
  uint64_t footprint = 0;
  std::vector<std::string> names() const {
    std::vector<std::string> result;
    for (const CatalogLibrary* library : libraries) result.push_back(library->manifest.name);
    std::sort(result.begin(), result.end());
    return result;
  }
};

struct Search {
  const Catalog& catalog;
  const DeviceProfile& device;
  std::vector<std::string> roots;  // needs, in order
  std::vector<Solution> solutions;
  std::set<std::vector<std::string>> seen;
  // capability -> provider -> why it was not usable, for the refusal message
  std::map<std::string, std::map<std::string, std::string>> rejected;
  std::set<std::string> met;  // capabilities some usable provider met somewhere in the search
  bool any_conflict = false;
  bool truncated = false;

  // Why `library` cannot join `chosen`, or "" when it can.
  std::string unusable(const CatalogLibrary& library, const Solution& chosen) {
    const LibraryManifest& manifest = library.manifest;
    if (!contains(manifest.archs, device.arch)) {
      return absl::StrCat("does not support arch ", device.arch);
    }
    for (const std::string& feature : manifest.host_features) {
      if (!std::binary_search(device.hypervisor_features.begin(), device.hypervisor_features.end(),
                              feature)) {
        return absl::StrCat("needs hypervisor feature '", feature, "', which the device lacks");
      }
    }
    for (const CatalogLibrary* other : chosen.libraries) {
      if (contains(manifest.conflicts, other->manifest.name) ||
          contains(other->manifest.conflicts, manifest.name)) {
        any_conflict = true;
        return absl::StrCat("conflicts with ", other->manifest.name, " (", chosen.why.at(other),
                            ")");
      }
    }
    return "";
  }

  // The first capability (roots first, then each chosen library's requires and uses, in order)
  // that nothing chosen provides, with who needs it.
  std::optional<std::pair<std::string, std::string>> first_unmet(const Solution& chosen) {
    auto provided = [&](const std::string& capability) {
      for (const CatalogLibrary* library : chosen.libraries) {
        if (contains(library->manifest.provides, capability)) return true;
      }
      return false;
    };
    for (const std::string& root : roots) {
      if (!provided(root)) return std::pair{root, std::string("the app")};
    }
    for (const CatalogLibrary* library : chosen.libraries) {
      for (const auto* list : {&library->manifest.requires_capabilities, &library->manifest.uses}) {
        for (const std::string& capability : *list) {
          if (!provided(capability)) return std::pair{capability, library->manifest.name};
        }
      }
    }
    return std::nullopt;
  }

  void run(Solution chosen) {
    if (solutions.size() >= kMaxSolutions) {
      truncated = true;
      return;
    }
    std::optional<std::pair<std::string, std::string>> unmet = first_unmet(chosen);
    if (!unmet) {
      if (seen.insert(chosen.names()).second) solutions.push_back(chosen);
      return;
    }
    const auto& [capability, needed_by] = *unmet;
    for (const CatalogLibrary* provider : catalog.providers(LibraryLayer::kTenon, capability)) {
      std::string reason = unusable(*provider, chosen);
      if (!reason.empty()) {
        rejected[capability][provider->manifest.name] = reason;
        continue;
      }
      met.insert(capability);
      Solution next = chosen;
      next.libraries.push_back(provider);
      next.why[provider] = absl::StrCat("provides ", capability, " for ", needed_by);
      next.footprint += provider->footprint.total_bytes();
      run(std::move(next));
    }
    if (catalog.providers(LibraryLayer::kTenon, capability).empty()) {
      rejected[capability]["(none)"] = "no library in the catalog provides it";
    }
  }
};

// Parses an option override (kept as text by the spec parser) against its declaration.
absl::StatusOr<OptionValue> typed_option(const AppSpec& app, const std::string& library,
                                         const OptionSpec& option, const OptionValue& raw) {
  const std::string field = absl::StrCat("options.", library, ".", option.name);
  auto bad = [&](const std::string& message) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s:%d: %s: %s", app.location.file, app.line_of(field), field, message));
  };
  OptionValue value;
  value.type = option.type;
  switch (option.type) {
    case OptionType::kInteger: {
      const std::string& text = raw.text;
      int64_t parsed = 0;
      const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), parsed);
      if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
        return bad(absl::StrCat("expected an integer, got '", text, "'"));
      }
      if ((option.minimum && parsed < *option.minimum) ||
          (option.maximum && parsed > *option.maximum)) {
        return bad(absl::StrCat(parsed, " is outside [",
                                option.minimum ? absl::StrCat(*option.minimum) : "-inf", ", ",
                                option.maximum ? absl::StrCat(*option.maximum) : "inf",
                                "] declared by ", library, "'s manifest"));
      }
      value.integer = parsed;
      break;
    }
    case OptionType::kBoolean:
      if (raw.text != "true" && raw.text != "false") return bad("expected true or false");
      value.boolean = raw.text == "true";
      break;
    case OptionType::kString:
      value.text = raw.text;
      break;
  }
  return value;
}

std::string canonical_inputs(const AppSpec& app, const DeviceProfile& device,
                             CompositionPolicy policy, const std::string& catalog_digest) {
  crypto::Sha256 hash;
  hash.add_field("tenon.composition.v1");
  hash.add_field(catalog_digest);
  hash.add_field(absl::StrCat(static_cast<int>(policy)));
  hash.add_field(app.name);
  hash.add_field(app.program);
  hash.add_field(absl::StrJoin(app.needs, ","));
  hash.add_field(absl::StrJoin(app.libraries, ","));
  hash.add_field(scheduler_name(app.scheduler));
  hash.add_field(absl::StrCat(app.heap_bytes));
  for (const TaskSpec& task : app.tasks) {
    hash.add_field(absl::StrFormat("%s/%d/%d/%d/%d", task.name, task.period_ns,
                                   task.relative_deadline_ns, task.wcet_ns, task.priority));
  }
  for (const auto& [library, options] : app.options) {
    for (const auto& [option, value] : options) {
      hash.add_field(absl::StrCat(library, ".", option, "=", value.text));
    }
  }
  // The device's identity is what the composition depends on, not its name: two devices of
  // the same profile share a composition (and an image).
  hash.add_field(device.arch);
  hash.add_field(absl::StrCat(device.cores, "/", device.realtime_cores, "/", device.memory_bytes,
                              "/", device.guest_memory_bytes, "/", device.guest_abi_version, "/",
                              device.scheduling_overhead_ns));
  hash.add_field(absl::StrJoin(device.hypervisor_features, ","));
  hash.add_field(absl::StrJoin(device.mortise_libraries, ","));
  return hash.hex_digest();
}

}  // namespace

const char* memory_access_name(MemoryAccess access) {
  switch (access) {
    case MemoryAccess::kNone:
      return "none";
    case MemoryAccess::kReadOnly:
      return "read-only";
    case MemoryAccess::kReadWrite:
      return "read-write";
    case MemoryAccess::kReadExecute:
      return "read-execute";
  }
  return "none";
}

std::string config_symbol(const std::string& library, const std::string& option) {
  std::string symbol = absl::StrCat("tenon_config_", library, "_", option);
  std::replace(symbol.begin(), symbol.end(), '-', '_');
  return symbol;
}

uint64_t config_object_rodata_bound(const std::vector<ChosenLibrary>& libraries) {
  uint64_t bytes = 8;  // alignment padding of the section
  for (const ChosenLibrary& library : libraries) {
    for (const auto& [name, value] : library.config) {
      bytes += 8;
      if (value.type == OptionType::kString) bytes += value.text.size() + 1;
    }
  }
  return bytes;
}

GuestMachine guest_machine(bool qemu_engine) {
  if (!qemu_engine) return {};
  return {960 << 10, 1 << 20, true};
}

MemoryPlan plan_memory(uint64_t text_bound, uint64_t rodata_bound, uint64_t data_bound,
                       uint64_t heap_bytes, uint64_t task_stack_bytes,
                       const GuestMachine& machine) {
  // Mirrors tenon/plat/image.ld (text at kImageBase, rodata and data each from a fresh
  // page, the end page aligned) and mortise/vmm/memory_layout.cc (heap from the image end, a
  // guard page, the boot stack, the page tables at the top of memory; where the machine keeps a
  // hole, everything from the guard page up goes above it unless it all fits below, and the heap
  // is the larger free range beside the hole).
  MemoryPlan plan;
  const uint64_t text = round_up(std::max<uint64_t>(text_bound, 1));
  const uint64_t rodata = round_up(rodata_bound);
  const uint64_t data = round_up(data_bound);
  plan.image_end_bound = tenon::abi::kImageBase + text + rodata + data;
  plan.heap_bytes = round_up(heap_bytes);
  plan.task_stack_bytes = task_stack_bytes;
  plan.boot_stack_bytes = kBootStackBytes;
  const uint64_t image_end = plan.image_end_bound;
  const uint64_t window_tables = machine.device_window ? kPage : 0;
  auto tables_for = [&](uint64_t total) {
    return (3 + (total + kBytesPerPageTable - 1) / kBytesPerPageTable) * kPage + window_tables;
  };
  const bool has_hole = machine.hole_end > machine.hole_start;
  // Where the heap starts and where the guard page, boot stack and page tables start, for a
  // memory of `total` bytes; settle on the smallest total that holds them (tables grow with it).
  uint64_t heap_start = image_end;
  uint64_t total = image_end + plan.heap_bytes + kPage + kBootStackBytes + tables_for(0);
  bool above_hole = false;
  for (;;) {
    const uint64_t top_block = kPage + kBootStackBytes + tables_for(total);
    uint64_t next = image_end + plan.heap_bytes + top_block;
    above_hole = has_hole && next > machine.hole_start;
    heap_start = image_end;
    if (above_hole) {
      // The top block goes above the hole; the heap stays below it if it fits there.
      const bool heap_below = image_end + plan.heap_bytes <= machine.hole_start;
      if (!heap_below) heap_start = machine.hole_end;
      next = machine.hole_end + (heap_below ? 0 : plan.heap_bytes) + top_block;
    }
    if (next == total) break;
    total = next;
  }
  plan.total_bytes = total;
  plan.page_table_bytes = tables_for(total);
  auto add = [&](std::string name, uint64_t address, uint64_t size, MemoryAccess access) {
    if (size > 0) plan.regions.push_back({std::move(name), address, size, access});
  };
  add("null", 0, tenon::abi::kBootInfoAddress, MemoryAccess::kNone);
  add("boot-info", tenon::abi::kBootInfoAddress, kPage, MemoryAccess::kReadOnly);
  add("telemetry", tenon::abi::kTelemetryAddress, kPage, MemoryAccess::kReadWrite);
  add("reserved", tenon::abi::kTelemetryAddress + kPage,
      tenon::abi::kImageBase - tenon::abi::kTelemetryAddress - kPage, MemoryAccess::kNone);
  uint64_t address = tenon::abi::kImageBase;
  add("image.text", address, text, MemoryAccess::kReadExecute);
  address += text;
  add("image.rodata", address, rodata, MemoryAccess::kReadOnly);
  address += rodata;
  add("image.data", address, data, MemoryAccess::kReadWrite);
  address += data;
  if (above_hole) {
    // Below the hole: the heap when it fits there (all of that range), else unused.
    const bool heap_below = heap_start == image_end;
    add(heap_below ? "heap" : "unused", address, machine.hole_start - address,
        heap_below ? MemoryAccess::kReadWrite : MemoryAccess::kNone);
    if (heap_below) plan.heap_bytes = machine.hole_start - address;
    add("machine-firmware", machine.hole_start, machine.hole_end - machine.hole_start,
        MemoryAccess::kNone);
    address = machine.hole_end;
    if (!heap_below) {
      add("heap", address, plan.heap_bytes, MemoryAccess::kReadWrite);
      address += plan.heap_bytes;
    }
  } else {
    add("heap", address, plan.heap_bytes, MemoryAccess::kReadWrite);
    address += plan.heap_bytes;
  }
  add("guard", address, kPage, MemoryAccess::kNone);
  address += kPage;
  add("boot-stack", address, kBootStackBytes, MemoryAccess::kReadWrite);
  address += kBootStackBytes;
  add("page-tables", address, plan.page_table_bytes, MemoryAccess::kNone);
  return plan;
}

absl::StatusOr<Composition> compose(const Catalog& catalog, const AppSpec& input_app,
                                    const DeviceProfile& device, CompositionPolicy policy) {
  Composition composition;
  composition.catalog_digest = catalog.digest();
  composition.device_name = device.name;
  composition.arch = device.arch;
  composition.policy = policy;
  std::vector<std::string>& explanation = composition.explanation;

  // ---- The program and the app spec ----------------------------------------------------------
  const std::string& file = input_app.location.file;
  const CatalogApp* program = catalog.find_app(input_app.program);
  if (program == nullptr) {
    std::vector<std::string> known;
    for (const CatalogApp& app : catalog.apps()) known.push_back(app.spec.name);
    const char* field = input_app.field_lines.contains("program") ? "program" : "name";
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s:%d: %s: no program '%s' in the catalog (known: %s)", file, input_app.line_of(field),
        field, input_app.program, absl::StrJoin(known, ", ")));
  }
  composition.program = program;
  AppSpec app = input_app;
  if (!app.tasks_given) {
    app.tasks = program->spec.tasks;
  } else {
    // The program's code creates its tasks by name; a spec can restate their timing (e.g. a
    // WCET measured on this device class) but not invent or drop tasks.
    std::set<std::string> declared, specified;
    for (const TaskSpec& task : program->spec.tasks) declared.insert(task.name);
    for (const TaskSpec& task : app.tasks) specified.insert(task.name);
    if (declared != specified) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s:%d: tasks: program '%s' creates tasks [%s] but the spec lists [%s]",
                          file, app.line_of("tasks"), app.program, absl::StrJoin(declared, ", "),
                          absl::StrJoin(specified, ", ")));
    }
  }
  std::set<std::string> needs(program->spec.needs.begin(), program->spec.needs.end());
  needs.insert(app.needs.begin(), app.needs.end());
  app.needs.assign(needs.begin(), needs.end());
  composition.input_digest = canonical_inputs(app, device, policy, catalog.digest());
  composition.name = absl::StrCat(app.name, "-", composition.input_digest.substr(0, 12));
  composition.app = app;
  explanation.push_back(absl::StrFormat("app %s runs program %s with %d task(s) and needs [%s]",
                                        app.name, app.program, app.tasks.size(),
                                        absl::StrJoin(app.needs, ", ")));

  // ---- Device: arch and ABI ------------------------------------------------------------------
  std::set<std::string> archs;
  for (const CatalogLibrary& library : catalog.libraries()) {
    if (library.manifest.layer == LibraryLayer::kTenon) {
      archs.insert(library.manifest.archs.begin(), library.manifest.archs.end());
    }
  }
  if (!archs.contains(device.arch) || device.arch != catalog.paths().arch) {
    return refused("unsupported arch",
                   absl::StrFormat("device %s is %s; the catalog builds images for %s (Tenon "
                                   "libraries support: %s)",
                                   device.name.empty() ? "(unnamed)" : device.name, device.arch,
                                   catalog.paths().arch, absl::StrJoin(archs, ", ")));
  }
  if (device.guest_abi_version != 0 && device.guest_abi_version != tenon::abi::kVersion) {
    return refused("unsatisfiable",
                   absl::StrFormat("the device's Mortise accepts guest ABI %d; Tenon images are "
                                   "built for ABI %d",
                                   device.guest_abi_version, tenon::abi::kVersion));
  }
  if (app.tasks.size() > tenon::abi::kMaxTasks) {
    return refused("unsatisfiable",
                   absl::StrFormat("%d tasks; Tenon's telemetry page and scheduler hold at most %d",
                                   app.tasks.size(), tenon::abi::kMaxTasks));
  }

  // ---- Library search --------------------------------------------------------------------------
  Search search{catalog, device, {}, {}, {}, {}, {}, false, false};
  // Every image boots through a platform library; an app with tasks needs the task library even
  // if its spec forgot to say so.
  search.roots.push_back("platform");
  if (!app.tasks.empty() && !needs.contains("tasks")) search.roots.push_back("tasks");
  for (const std::string& need : app.needs) {
    if (need != "platform") search.roots.push_back(need);
  }
  Solution start;
  for (size_t i = 0; i < app.libraries.size(); ++i) {
    const CatalogLibrary* library = catalog.find_library(LibraryLayer::kTenon, app.libraries[i]);
    if (library == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s:%d: libraries[%d]: no Tenon library '%s' in the catalog", file,
                          app.line_of("libraries"), i, app.libraries[i]));
    }
    std::string reason = search.unusable(*library, start);
    if (!reason.empty()) {
      return refused(
          search.any_conflict ? "conflict" : "unsatisfiable",
          absl::StrCat("the spec asks for ", library->manifest.name, ", which ", reason));
    }
    start.libraries.push_back(library);
    start.why[library] = "asked for by the app spec";
    start.footprint += library->footprint.total_bytes();
  }
  search.run(start);
  if (search.solutions.empty()) {
    std::vector<std::string> reasons;
    for (const auto& [capability, providers] : search.rejected) {
      // A capability some provider could meet is not why the search failed.
      if (search.met.contains(capability)) continue;
      std::vector<std::string> each;
      for (const auto& [name, why] : providers) each.push_back(absl::StrCat(name, " ", why));
      reasons.push_back(absl::StrCat("'", capability, "': ", absl::StrJoin(each, "; ")));
    }
    return refused(search.any_conflict ? "conflict" : "unsatisfiable",
                   absl::StrCat("no set of libraries meets every need of ", app.name, " on ",
                                device.name.empty() ? "this device" : device.name, ": ",
                                absl::StrJoin(reasons, " | ")));
  }

  // ---- Scheduler choice and schedulability -----------------------------------------------------
  auto scheduling_of = [](const Solution& solution) {
    for (const CatalogLibrary* library : solution.libraries) {
      if (library->manifest.scheduling != SchedulerKind::kNone) return library->manifest.scheduling;
    }
    return SchedulerKind::kNone;
  };
  std::map<SchedulerKind, SchedulabilityVerdict> verdicts;
  std::vector<const Solution*> viable;
  for (const Solution& solution : search.solutions) {
    const SchedulerKind kind = scheduling_of(solution);
    if (app.scheduler != SchedulerKind::kNone && kind != app.scheduler) continue;
    if (!app.tasks.empty()) {
      if (kind == SchedulerKind::kNone) continue;  // tasks without a policy cannot run
      if (!verdicts.contains(kind)) {
        verdicts[kind] = analyse(kind, app.tasks, device.scheduling_overhead_ns);
      }
      if (!verdicts[kind].schedulable) continue;
    }
    viable.push_back(&solution);
  }
  if (viable.empty()) {
    if (verdicts.empty()) {
      return refused("unsatisfiable",
                     absl::StrCat("the spec pins scheduler ", scheduler_name(app.scheduler),
                                  " but no library set providing every need uses it"));
    }
    std::vector<std::string> failures;
    for (const auto& [kind, verdict] : verdicts) failures.push_back(verdict.failure);
    return refused("unschedulable", absl::StrCat(app.name, ": ", absl::StrJoin(failures, "; ")));
  }
  const Solution* best =
      *std::min_element(viable.begin(), viable.end(), [](const Solution* a, const Solution* b) {
        return std::pair{a->footprint, a->names()} < std::pair{b->footprint, b->names()};
      });
  const SchedulerKind chosen_kind = scheduling_of(*best);
  if (!app.tasks.empty()) {
    composition.schedulability = verdicts[chosen_kind];
    const SchedulabilityVerdict& verdict = composition.schedulability;
    explanation.push_back(absl::StrFormat(
        "scheduler %s: %s analysis proves all %d task(s) meet their deadlines (utilisation "
        "%.4f, %d ns overhead charged per job)%s",
        scheduler_name(chosen_kind), verdict.analysis, verdict.tasks.size(), verdict.utilisation,
        verdict.per_job_overhead_ns,
        app.scheduler != SchedulerKind::kNone ? "; pinned by the app spec" : ""));
    for (const auto& [kind, other] : verdicts) {
      if (kind != chosen_kind && !other.schedulable) {
        explanation.push_back(absl::StrCat("not ", scheduler_name(kind), ": ", other.failure));
      }
    }
  } else {
    composition.schedulability.scheduler = chosen_kind;
    explanation.push_back("no periodic tasks: nothing to analyse");
  }

  // ---- The chosen libraries, their config and why ----------------------------------------------
  std::vector<const CatalogLibrary*> ordered = best->libraries;
  std::sort(ordered.begin(), ordered.end(), [](const CatalogLibrary* a, const CatalogLibrary* b) {
    return a->manifest.name < b->manifest.name;
  });
  for (const auto& [library_name, overrides] : app.options) {
    const CatalogLibrary* library = catalog.find_library(LibraryLayer::kTenon, library_name);
    const std::string field = absl::StrCat("options.", library_name);
    if (library == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s:%d: %s: no Tenon library '%s' in the catalog", file,
                          app.line_of("options"), field, library_name));
    }
    for (const auto& [option_name, raw] : overrides) {
      const auto& options = library->manifest.options;
      if (std::none_of(options.begin(), options.end(),
                       [&](const OptionSpec& o) { return o.name == option_name; })) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s:%d: %s.%s: %s declares no option '%s'", file,
                            app.line_of(absl::StrCat(field, ".", option_name)), field, option_name,
                            library_name, option_name));
      }
    }
  }
  uint64_t task_stack_bytes = 0;
  for (const CatalogLibrary* library : ordered) {
    ChosenLibrary chosen;
    chosen.library = library;
    chosen.name = library->manifest.name;
    chosen.layer = LibraryLayer::kTenon;
    chosen.footprint = library->footprint;
    for (const OptionSpec& option : library->manifest.options) {
      OptionValue value = option.default_value;
      auto overrides = app.options.find(chosen.name);
      if (overrides != app.options.end() && overrides->second.contains(option.name)) {
        absl::StatusOr<OptionValue> typed =
            typed_option(app, chosen.name, option, overrides->second.at(option.name));
        if (!typed.ok()) return typed.status();
        value = *typed;
      }
      chosen.config.emplace_back(option.name, value);
      if (chosen.name == "sched" && option.name == "task_stack_bytes") {
        task_stack_bytes = static_cast<uint64_t>(value.integer);
      }
    }
    for (const std::string& capability : library->manifest.provides)
      chosen.provides.push_back(capability);
    std::string alternatives;
    // Each alternative once, however many of this library's capabilities it also provides.
    std::set<const CatalogLibrary*> explained;
    for (const std::string& capability : library->manifest.provides) {
      for (const CatalogLibrary* other : catalog.providers(LibraryLayer::kTenon, capability)) {
        if (other == library || !explained.insert(other).second) continue;
        std::string rejected;
        for (const std::string& shared : library->manifest.provides) {
          auto found = search.rejected.find(shared);
          if (found == search.rejected.end()) continue;
          auto reason = found->second.find(other->manifest.name);
          if (reason != found->second.end()) {
            rejected = reason->second;
            break;
          }
        }
        if (!rejected.empty()) {
          absl::StrAppend(&alternatives, "; not ", other->manifest.name, ": ", rejected);
        } else if (other->manifest.scheduling != SchedulerKind::kNone &&
                   verdicts.contains(other->manifest.scheduling) &&
                   !verdicts[other->manifest.scheduling].schedulable) {
          absl::StrAppend(&alternatives, "; not ", other->manifest.name,
                          ": the task set is not schedulable under it");
        } else if (app.scheduler != SchedulerKind::kNone &&
                   other->manifest.scheduling != SchedulerKind::kNone) {
          absl::StrAppend(&alternatives, "; not ", other->manifest.name, ": the spec pins ",
                          scheduler_name(app.scheduler));
        } else {
          const int64_t difference = static_cast<int64_t>(other->footprint.total_bytes()) -
                                     static_cast<int64_t>(library->footprint.total_bytes());
          absl::StrAppend(&alternatives, "; not ", other->manifest.name, ": ",
                          difference > 0 ? absl::StrCat(difference, " bytes larger")
                          : difference < 0
                              ? absl::StrCat(-difference, " bytes smaller but unusable here")
                              : "same size, later in name order");
        }
      }
    }
    chosen.reason = absl::StrCat(best->why.at(library), " (", library->footprint.total_bytes(),
                                 " bytes)", alternatives);
    explanation.push_back(absl::StrCat(chosen.name, ": ", chosen.reason));
    composition.footprint_bytes += library->footprint.total_bytes();
    composition.libraries.push_back(std::move(chosen));
  }
  composition.footprint_bytes += program->footprint.total_bytes();

  // ---- Mortise libraries the device's hypervisor must have
  // ---------------------------------------
  std::set<std::string> host_capabilities;
  for (const CatalogLibrary* library : ordered) {
    host_capabilities.insert(library->manifest.host_requires.begin(),
                             library->manifest.host_requires.end());
  }
  std::set<const CatalogLibrary*> host_libraries;
  std::vector<std::string> pending(host_capabilities.begin(), host_capabilities.end());
  std::map<const CatalogLibrary*, std::string> host_why;
  while (!pending.empty()) {
    const std::string capability = pending.back();
    pending.pop_back();
    std::vector<const CatalogLibrary*> providers =
        catalog.providers(LibraryLayer::kMortise, capability);
    const CatalogLibrary* provider = nullptr;
    for (const CatalogLibrary* candidate : providers) {
      if (device.mortise_libraries.empty() ||
          std::binary_search(device.mortise_libraries.begin(), device.mortise_libraries.end(),
                             candidate->manifest.name)) {
        provider = candidate;
        break;
      }
    }
    if (provider == nullptr) {
      std::vector<std::string> names;
      for (const CatalogLibrary* candidate : providers) names.push_back(candidate->manifest.name);
      return refused("unsatisfiable",
                     absl::StrFormat("the image needs hypervisor capability '%s' (Mortise "
                                     "library %s), which device %s's Mortise does not have",
                                     capability, absl::StrJoin(names, " or "), device.name));
    }
    if (!host_libraries.insert(provider).second) continue;
    host_why[provider] = absl::StrCat("provides ", capability, " to the guest");
    for (const std::string& next : provider->manifest.requires_capabilities)
      pending.push_back(next);
    for (const std::string& next : provider->manifest.uses) pending.push_back(next);
  }
  std::vector<const CatalogLibrary*> host_ordered(host_libraries.begin(), host_libraries.end());
  std::sort(host_ordered.begin(), host_ordered.end(),
            [](const CatalogLibrary* a, const CatalogLibrary* b) {
              return a->manifest.name < b->manifest.name;
            });
  for (const CatalogLibrary* library : host_ordered) {
    ChosenLibrary chosen;
    chosen.library = library;
    chosen.name = library->manifest.name;
    chosen.layer = LibraryLayer::kMortise;
    chosen.provides = library->manifest.provides;
    chosen.reason = host_why[library];
    composition.mortise_libraries.push_back(std::move(chosen));
  }
  if (!host_ordered.empty()) {
    std::vector<std::string> names;
    for (const CatalogLibrary* library : host_ordered) names.push_back(library->manifest.name);
    explanation.push_back(absl::StrCat(
        "mortise: the device's hypervisor must have [", absl::StrJoin(names, ", "), "]",
        device.mortise_libraries.empty() ? " (the device did not report its libraries; assumed)"
                                         : " (reported by the device)"));
  }

  // ---- Memory plan -----------------------------------------------------------------------------
  Footprint image = program->footprint;
  for (const CatalogLibrary* library : ordered) image += library->footprint;
  const uint64_t heap = app.tasks.size() * task_stack_bytes + app.heap_bytes;
  const bool qemu_engine = std::binary_search(
      device.hypervisor_features.begin(), device.hypervisor_features.end(), std::string("qemu"));
  composition.memory_plan = plan_memory(
      image.text_bound, image.rodata_bound + config_object_rodata_bound(composition.libraries),
      image.data_bound, heap, task_stack_bytes, guest_machine(qemu_engine));
  const MemoryPlan& plan = composition.memory_plan;
  const uint64_t available =
      device.guest_memory_bytes != 0 ? device.guest_memory_bytes : device.memory_bytes;
  const std::string layout = absl::StrFormat(
      "image up to %s, heap %s (%d task stack(s) of %d bytes + %d bytes), guard page, boot "
      "stack %s, page tables %s",
      kib(plan.image_end_bound - tenon::abi::kImageBase), kib(plan.heap_bytes), app.tasks.size(),
      task_stack_bytes, app.heap_bytes, kib(plan.boot_stack_bytes), kib(plan.page_table_bytes));
  if (plan.total_bytes > available || plan.total_bytes > kMaxGuestMemory) {
    return refused(
        "does not fit",
        absl::StrFormat("%s needs %s of guest memory (%s) but device %s offers %s%s", app.name,
                        kib(plan.total_bytes), layout, device.name,
                        kib(std::min(available, kMaxGuestMemory)),
                        plan.total_bytes > kMaxGuestMemory ? " (Mortise's maximum)" : ""));
  }
  explanation.push_back(absl::StrFormat("memory: %s of guest memory: %s; the device offers %s",
                                        kib(plan.total_bytes), layout, kib(available)));
  return composition;
}

}  // namespace tenon::controller
