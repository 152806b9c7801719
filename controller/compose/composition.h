// The composition engine: device profile + app spec + policy -> the smallest set of Tenon
// micro-libraries (with config values) that meets every need, a memory plan that matches
// Mortise's guest layout, a schedulability verdict with its numbers, and one explanation line
// per choice. A pure function of its inputs and the catalog: same inputs, same composition.
//
// Refusals are absl::FailedPreconditionError whose message starts with the kind: "unsatisfiable:",
// "conflict:", "unsupported arch:", "unschedulable:", "does not fit:". Malformed inputs (a
// program or library the catalog does not know, a bad option value) are InvalidArgumentError and
// name file:line:field.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "catalog.h"
#include "device.h"
#include "manifest.h"
#include "schedulability.h"

namespace tenon::controller {

enum class CompositionPolicy { kMinimiseFootprint };

struct ChosenLibrary {
  const CatalogLibrary* library = nullptr;
  std::string name;
  LibraryLayer layer = LibraryLayer::kTenon;
  std::vector<std::pair<std::string, OptionValue>> config;  // every option, in manifest order
  std::vector<std::string> provides;  // capabilities it satisfies in this composition
  Footprint footprint;
  std::string reason;
};

enum class MemoryAccess { kNone, kReadOnly, kReadWrite, kReadExecute };
const char* memory_access_name(MemoryAccess access);

struct MemoryRegion {
  std::string name;
  uint64_t guest_address = 0;
  uint64_t size_bytes = 0;
  MemoryAccess access = MemoryAccess::kNone;
};

struct MemoryPlan {
  uint64_t total_bytes = 0;      // the guest memory size to give Mortise (--memory)
  uint64_t image_end_bound = 0;  // the linked image ends at or below this address
  uint64_t heap_bytes = 0;       // task stacks plus the app's heap
  uint64_t task_stack_bytes = 0;
  uint64_t boot_stack_bytes = 0;
  uint64_t page_table_bytes = 0;
  std::vector<MemoryRegion> regions;  // address order, covering [0, total_bytes)
};

// Mortise gives every guest a boot stack of this size (mortise::InstanceConfig::stack_bytes);
// a test keeps the two equal.
inline constexpr uint64_t kBootStackBytes = 16 << 10;

struct Composition {
  std::string name;  // "<app>-" and the first 12 hex digits of input_digest
  std::string input_digest;
  std::string catalog_digest;
  AppSpec app;  // normalised: program's tasks filled in, needs merged and sorted
  std::string device_name;
  std::string arch;
  CompositionPolicy policy = CompositionPolicy::kMinimiseFootprint;
  const CatalogApp* program = nullptr;
  std::vector<ChosenLibrary> libraries;          // Tenon libraries, in name order (link order)
  std::vector<ChosenLibrary> mortise_libraries;  // what the device's hypervisor must have
  uint64_t footprint_bytes = 0;                  // app + Tenon libraries, measured
  MemoryPlan memory_plan;
  SchedulabilityVerdict schedulability;
  std::vector<std::string> explanation;
};

absl::StatusOr<Composition> compose(
    const Catalog& catalog, const AppSpec& app, const DeviceProfile& device,
    CompositionPolicy policy = CompositionPolicy::kMinimiseFootprint);

// What the machine of the device's engine takes out of guest memory (mirrors
// mortise::MachineConstraints; a test keeps the two equal). Mortise's own engine takes nothing;
// its QEMU engine keeps [960 KiB, 1 MiB) for the PC's firmware copy and maps a device window (the
// local APIC, the boot ROM) with one more page of page tables.
struct GuestMachine {
  uint64_t hole_start = 0;  // [hole_start, hole_end): no part of the layout may land there
  uint64_t hole_end = 0;
  bool device_window = false;
};
// The machine of a device whose hypervisor features include "qemu" (the QEMU engine) or not.
GuestMachine guest_machine(bool qemu_engine);

// The Mortise guest layout for an image whose segments take at most these bytes (before page
// rounding) and `heap_bytes` of heap on `machine`; exposed for the test that compares it with
// mortise::plan_memory_layout.
MemoryPlan plan_memory(uint64_t text_bound, uint64_t rodata_bound, uint64_t data_bound,
                       uint64_t heap_bytes, uint64_t task_stack_bytes,
                       const GuestMachine& machine = {});

// Bytes the generated configuration object adds to .rodata at most (see image_builder).
uint64_t config_object_rodata_bound(const std::vector<ChosenLibrary>& libraries);

// The symbol a library option is published under in the configuration object.
std::string config_symbol(const std::string& library, const std::string& option);

}  // namespace tenon::controller
