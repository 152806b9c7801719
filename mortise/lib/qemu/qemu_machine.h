// The machine the QEMU engine asks QEMU for (`-M microvm` without firmware of its own): where its
// boot ROM, the ROM's copy below 1 MiB and the local APIC sit in guest-physical space.
#pragma once

#include <cstdint>

#include "tenon/abi.h"

namespace mortise::qemu_machine {

inline constexpr uint64_t kLargePageBytes = 2ull << 20;
// Mortise's boot ROM (boot_rom.S) is QEMU's "BIOS": 64 KiB at the top of the fourth GiB, where
// the CPU starts after reset.
inline constexpr uint64_t kBootRomBytes = 64ull << 10;
inline constexpr uint64_t kBootRomBase = (4ull << 30) - kBootRomBytes;
inline constexpr uint64_t kBootRomLargePage = kBootRomBase & ~(kLargePageBytes - 1);
// QEMU also shows the ROM's last 128 KiB (all of ours) just below 1 MiB, over any RAM there.
inline constexpr uint64_t kBiosAliasEnd = 1ull << 20;
inline constexpr uint64_t kBiosAliasStart = kBiosAliasEnd - kBootRomBytes;
inline constexpr uint64_t kLocalApicLargePage =
    tenon::abi::kLocalApicAddress & ~(kLargePageBytes - 1);

}  // namespace mortise::qemu_machine
