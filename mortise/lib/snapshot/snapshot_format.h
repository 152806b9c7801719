// The snapshot file of one Tenon instance: everything needed to bring a paused instance back,
// on this host or another one. A writer, and a strict parser for files that may be corrupt,
// truncated or hostile: nothing read from a file (sizes, offsets, counts) is used before it was
// checked against the file's real length and the caps below.
//
// Format version 2 (written); version 1 (read) is version 2 with the engine field zero, meaning
// kKvm. All integers little-endian.
//
//   offset 0   header, 64 bytes
//     [0, 8)   magic "TENONSNP"
//     [8, 12)  format version (kFormatVersion)
//     [12, 16) arch (Arch: 1 = x86_64)
//     [16, 20) guest ABI version of the instance (tenon/abi.h kVersion)
//     [20, 24) section count, 1..kMaxSections
//     [24, 32) file size in bytes, checksum included; at most kMaxFileBytes
//     [32, 40) guest memory bytes: a multiple of 4 KiB, 4 KiB..kMaxMemoryBytes
//     [40, 44) header size (64)
//     [44, 48) engine that took the snapshot (Engine: 1 = kvm, 2 = qemu); zero in version 1
//     [48, 64) zero
//   offset 64  section table: `section count` entries of 24 bytes
//     [0, 4)   section type (SectionType), each type at most once; exactly the types the
//              engine's snapshots hold (sections_of), every one of them
//     [4, 8)   zero
//     [8, 16)  offset of the section's bytes from the start of the file
//     [16, 24) size of the section in bytes: exact for fixed records, a whole number of
//              entries up to a cap for lists, `guest memory bytes` for the memory
//   section bytes, anywhere after the table, not overlapping one another
//   last 32 bytes: SHA-256 of every byte before them
//
// What a reader may refuse, and with which code: DATA_LOSS for anything corrupt (bad magic, file
// shorter or longer than its header says, checksum mismatch, a section table or section that
// breaks the rules above, records with impossible values), FAILED_PRECONDITION for a well-formed
// file this build cannot restore (another format version, another arch, another guest ABI
// version). The magic, version and arch are checked before the checksum so that a file from a
// newer Mortise (which may checksum differently) is reported as such, not as corrupt.
//
// Every snapshot holds the two records defined here (Metadata, Machine) and the guest's memory.
// A kvm snapshot adds the vCPU as KVM's own x86_64 structures (kvm_regs, kvm_sregs, kvm_xsave's
// 4 KiB region, kvm_xcrs, kvm_lapic_state, kvm_vcpu_events, kvm_mp_state, kvm_cpuid_entry2 and
// kvm_msr_entry lists), whose layouts are part of the Linux UAPI and never change. A qemu
// snapshot adds QEMU's own migration stream of the machine without its RAM (the vCPU, the LAPIC,
// the clocks, the boot ROM): opaque here, checked by the QEMU that restores it, which must be the
// same QEMU version.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mortise::snapshot {

inline constexpr char kMagic[8] = {'T', 'E', 'N', 'O', 'N', 'S', 'N', 'P'};
inline constexpr uint32_t kFormatVersion = 2;
inline constexpr uint32_t kOldestReadableVersion = 1;

enum class Arch : uint32_t { kX86_64 = 1, kArm64 = 2 };

// Which of Mortise's engines took a snapshot: only that engine can restore it.
enum class Engine : uint32_t { kKvm = 1, kQemu = 2 };
const char* engine_name(Engine engine);  // "kvm", "qemu"

inline constexpr uint64_t kHeaderBytes = 64;
inline constexpr uint64_t kSectionEntryBytes = 24;
inline constexpr uint64_t kChecksumBytes = 32;
inline constexpr uint32_t kMaxSections = 16;
inline constexpr uint64_t kPageBytes = 4096;
inline constexpr uint64_t kMaxMemoryBytes = 1ull << 30;
// QEMU's stream of a microvm without its RAM is ~35 KiB (mostly the 64 KiB boot ROM).
inline constexpr uint64_t kMaxQemuStateBytes = 4ull << 20;
// Memory plus room for the table and every other section at its cap.
inline constexpr uint64_t kMaxFileBytes = kMaxMemoryBytes + kMaxQemuStateBytes + (1ull << 20);

enum class SectionType : uint32_t {
  kMetadata = 1,          // Metadata
  kMachine = 2,           // Machine
  kCpuid = 3,             // kvm_cpuid_entry2[], 1..kMaxCpuidEntries
  kRegisters = 4,         // kvm_regs
  kSpecialRegisters = 5,  // kvm_sregs
  kXsave = 6,             // kvm_xsave region (4 KiB)
  kXcrs = 7,              // kvm_xcrs
  kMsrs = 8,              // kvm_msr_entry[], 1..kMaxMsrEntries
  kLapic = 9,             // kvm_lapic_state
  kVcpuEvents = 10,       // kvm_vcpu_events
  kMpState = 11,          // kvm_mp_state
  kGuestMemory = 12,      // all of guest-physical memory, from address 0
  kQemuState = 13,        // QEMU's migration stream without RAM, 1..kMaxQemuStateBytes
};
inline constexpr uint32_t kSectionTypeCount = 13;
const char* section_name(SectionType type);
// The section types a snapshot of `engine` holds, each exactly once.
std::span<const SectionType> sections_of(Engine engine);

// Sizes of the KVM records (the Linux x86_64 UAPI); the VMM static_asserts them against the
// kernel headers where C++ sees the same size as C.
inline constexpr uint64_t kCpuidEntryBytes = 40;
inline constexpr uint64_t kMaxCpuidEntries = 256;
inline constexpr uint64_t kRegistersBytes = 144;
inline constexpr uint64_t kSpecialRegistersBytes = 312;
inline constexpr uint64_t kXsaveBytes = 4096;
inline constexpr uint64_t kXcrsBytes = 392;
inline constexpr uint64_t kMsrEntryBytes = 16;
inline constexpr uint64_t kMaxMsrEntries = 64;
inline constexpr uint64_t kLapicBytes = 1024;
inline constexpr uint64_t kVcpuEventsBytes = 64;
inline constexpr uint64_t kMpStateBytes = 4;

// Who the instance is, for the supervisor. Strings are printable ASCII, NUL-padded, with at
// least one NUL.
struct Metadata {
  char run_id[64];        // telemetry run id; a restored instance keeps it
  char image_digest[80];  // "sha256:<hex>" of the image it was created from, or empty
  char vm_name[64];       // the name it had when the snapshot was taken
};
static_assert(sizeof(Metadata) == 208);

// The machine around the vCPU: configuration, layout, and where the guest's clocks stood.
struct Machine {
  uint64_t memory_bytes;  // equals the header's
  uint64_t stack_bytes;
  uint64_t app_run_ns;
  uint64_t tsc_khz;         // guest TSC frequency
  uint64_t guest_tsc;       // guest TSC when the state was captured (kvm; 0 for qemu, whose
                            // stream holds its clocks)
  uint64_t console_offset;  // console bytes the guest had written (ConsoleChunk.offset)
  uint64_t vcpu_exits;
  uint64_t image_entry;
  // The memory layout (mortise/vmm/memory_layout.h), page aligned, in this order, inside memory.
  uint64_t image_end;
  uint64_t heap_start;
  uint64_t heap_end;
  uint64_t guard_page;
  uint64_t stack_bottom;
  uint64_t stack_top;
  uint64_t page_tables;
};
static_assert(sizeof(Machine) == 15 * 8);

struct SectionData {
  SectionType type;
  std::span<const uint8_t> bytes;
};

struct Contents {
  uint32_t guest_abi_version = 0;
  uint64_t memory_bytes = 0;
  Arch arch = Arch::kX86_64;
  Engine engine = Engine::kKvm;
  std::vector<SectionData> sections;  // written in this order
};

struct Written {
  uint64_t size_bytes = 0;
  std::string digest;  // "sha256:<hex>" of the whole file, as MortiseService reports it
};

// Receives the file's bytes in order; any error stops the writing.
using Sink = std::function<absl::Status(std::span<const uint8_t>)>;

// Writes a snapshot through `sink`. Refuses (INVALID_ARGUMENT) contents that parse_snapshot
// would refuse, so whatever is written can be read back.
absl::StatusOr<Written> write_snapshot(const Contents& contents, const Sink& sink);
// The same into a string (tests, small tools).
absl::StatusOr<std::string> encode_snapshot(const Contents& contents);

// A parsed snapshot; the spans point into the bytes given to parse_snapshot.
struct Snapshot {
  uint32_t guest_abi_version = 0;
  uint64_t memory_bytes = 0;
  Engine engine = Engine::kKvm;
  Metadata metadata{};
  Machine machine{};
  std::array<std::span<const uint8_t>, kSectionTypeCount> sections{};
  std::span<const uint8_t> section(SectionType type) const {
    return sections[static_cast<uint32_t>(type) - 1];
  }
};

// Checks everything described at the top of this file, in that order, and the records'
// values; a section of another engine's snapshot, or a missing one, is DATA_LOSS.
// `expected_guest_abi_version` is the ABI this build speaks.
absl::StatusOr<Snapshot> parse_snapshot(std::span<const uint8_t> file,
                                        uint32_t expected_guest_abi_version);

// A NUL-padded copy of `text` for a Metadata field; INVALID_ARGUMENT when it does not fit or is
// not printable ASCII.
absl::Status set_text(std::span<char> field, const std::string& text);
// The text of a Metadata field (up to its first NUL).
std::string text_of(std::span<const char> field);

}  // namespace mortise::snapshot
