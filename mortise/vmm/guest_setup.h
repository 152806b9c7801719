// What every engine does to a guest's memory before its first instruction: read and check the
// image (it is untrusted), plan the layout, load the segments, build page tables that give each
// page exactly its permissions, and write the boot info. What remains is the engine's own part:
// entering the image with the registers tenon/abi.h promises (a KVM vCPU set up directly, or a
// QEMU boot ROM that switches modes and jumps).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "elf_loader.h"
#include "engine.h"
#include "guest_memory.h"
#include "memory_layout.h"
#include "tenon/abi.h"

namespace mortise {

struct GuestSetup {
  EngineKind engine = EngineKind::kKvm;  // the image must be linked for its platform
  uint64_t stack_bytes = 16 << 10;
  uint64_t app_run_ns = 0;
  uint64_t host_start_tsc = 0;
  uint64_t tsc_khz = 0;                              // guest TSC frequency, for the boot info
  std::vector<tenon::abi::IvcChannelInfo> channels;  // in boot info order
};

struct PreparedGuest {
  ElfImage image;
  MemoryLayout layout;
  uint64_t cr3 = 0;
};

// The image file, refused when larger than Mortise accepts.
absl::StatusOr<std::vector<uint8_t>> read_image_file(const std::string& path);

// What the machine of `engine` takes out of guest memory (memory_layout.h).
MachineConstraints machine_constraints(EngineKind engine);

// A fault the guest reported, described with what the layout knows about its address ("stack
// overflow into the guard page", "null pointer access").
std::string describe_guest_fault(const tenon::abi::FaultArgs& fault, const MemoryLayout& layout);

absl::StatusOr<PreparedGuest> prepare_guest(const GuestMemory& memory,
                                            std::span<const uint8_t> file, const GuestSetup& setup);

}  // namespace mortise
