// libFuzzer target for the snapshot parser (mortise/lib/snapshot): any byte string is refused
// with a status or parsed into sections that all lie inside the input, never overlap, and obey
// their size rules.
//
// Each input is tried three ways: as a file by itself; the same with its checksum made right
// (so that the checks behind the checksum are reached at all); and as edits to a small valid
// snapshot, checksum made right again, which reaches the section table and record checks from
// an empty corpus.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "snapshot_format.h"

namespace {

using mortise::snapshot::SectionType;

constexpr uint32_t kAbi = 1;
constexpr uint64_t kMemory = 8192;

std::vector<uint8_t> make_template() {
  mortise::snapshot::Metadata metadata{};
  (void)mortise::snapshot::set_text(metadata.run_id, "run");
  mortise::snapshot::Machine machine{};
  machine.memory_bytes = kMemory;
  machine.tsc_khz = 1000;
  machine.image_end = machine.heap_start = machine.heap_end = machine.guard_page = 4096;
  machine.stack_bottom = machine.stack_top = machine.page_tables = 8192;
  static std::vector<uint8_t> cpuid(40), regs(144), sregs(312), xsave(4096), xcrs(392), msrs(32),
      lapic(1024), events(64), mp(4), memory(kMemory);
  mortise::snapshot::Contents contents;
  contents.guest_abi_version = kAbi;
  contents.memory_bytes = kMemory;
  auto bytes = [](const auto& object) {
    return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&object), sizeof(object));
  };
  contents.sections = {{SectionType::kMetadata, bytes(metadata)},
                       {SectionType::kMachine, bytes(machine)},
                       {SectionType::kCpuid, cpuid},
                       {SectionType::kRegisters, regs},
                       {SectionType::kSpecialRegisters, sregs},
                       {SectionType::kXsave, xsave},
                       {SectionType::kXcrs, xcrs},
                       {SectionType::kMsrs, msrs},
                       {SectionType::kLapic, lapic},
                       {SectionType::kVcpuEvents, events},
                       {SectionType::kMpState, mp},
                       {SectionType::kGuestMemory, memory}};
  absl::StatusOr<std::string> encoded = mortise::snapshot::encode_snapshot(contents);
  if (!encoded.ok()) abort();
  return std::vector<uint8_t>(encoded->begin(), encoded->end());
}

void fix_checksum(std::vector<uint8_t>& file) {
  if (file.size() < mortise::snapshot::kChecksumBytes) return;
  const size_t body = file.size() - mortise::snapshot::kChecksumBytes;
  const std::string digest = mortise::snapshot::sha256_digest({file.data(), body});
  for (size_t i = 0; i < mortise::snapshot::kChecksumBytes; ++i) {
    file[body + i] =
        static_cast<uint8_t>(std::strtoul(digest.substr(7 + 2 * i, 2).c_str(), nullptr, 16));
  }
}

void check(std::span<const uint8_t> file) {
  absl::StatusOr<mortise::snapshot::Snapshot> parsed =
      mortise::snapshot::parse_snapshot(file, kAbi);
  if (!parsed.ok()) return;
  const uint8_t* begin = file.data();
  const uint8_t* end = file.data() + file.size();
  for (uint32_t type = 1; type <= mortise::snapshot::kSectionTypeCount; ++type) {
    const std::span<const uint8_t> section = parsed->sections[type - 1];
    if (section.empty() || section.data() < begin || section.data() + section.size() > end) {
      abort();
    }
    for (uint32_t other = 1; other < type; ++other) {
      const std::span<const uint8_t> before = parsed->sections[other - 1];
      if (section.data() < before.data() + before.size() &&
          before.data() < section.data() + section.size()) {
        abort();
      }
    }
  }
  if (parsed->section(SectionType::kGuestMemory).size() != parsed->memory_bytes) abort();
  if (parsed->machine.memory_bytes != parsed->memory_bytes) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<uint8_t> kTemplate = make_template();
  check({data, size});

  std::vector<uint8_t> fixed(data, data + size);
  fix_checksum(fixed);
  check(fixed);

  // Edits: (offset: 2 bytes little-endian, value: 1 byte) triples applied to the template.
  std::vector<uint8_t> edited = kTemplate;
  for (size_t i = 0; i + 3 <= size; i += 3) {
    const size_t offset = (size_t{data[i]} | size_t{data[i + 1]} << 8) % edited.size();
    edited[offset] = data[i + 2];
  }
  if (size % 7 == 1) edited.resize(edited.size() - data[0] % edited.size());  // truncations too
  fix_checksum(edited);
  check(edited);
  return 0;
}
