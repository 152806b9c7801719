// The QEMU engine's boot ROM (boot_rom.S): the bytes QEMU is given as its firmware, with the
// parameter block at their start filled in for one instance.
#pragma once

#include <cstdint>
#include <vector>

namespace mortise {

inline constexpr uint32_t kBootRomMagic = 0x4d4f5254;  // "TROM"

// Layout of the ROM's first bytes (boot_rom.S, `parameters`).
struct BootRomParameters {
  uint32_t magic = kBootRomMagic;
  uint32_t reserved = 0;
  uint64_t entry = 0;      // the image's entry point
  uint64_t cr3 = 0;        // page tables Mortise built in guest memory
  uint64_t stack_top = 0;  // RSP
  uint64_t boot_info = 0;  // RDI
};

// The 64 KiB ROM image with `parameters` written into it.
std::vector<uint8_t> make_boot_rom(const BootRomParameters& parameters);

}  // namespace mortise
