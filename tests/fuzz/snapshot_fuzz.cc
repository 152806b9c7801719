// libFuzzer target for the snapshot parser (mortise/lib/snapshot): any byte string is refused
// with a status or parsed into sections that all lie inside the input, never overlap, and obey
// their size rules.
//
// Each input is tried three ways: as a file by itself; the same with its checksum made right
// (so that the checks behind the checksum are reached at all); and as edits to a small valid
// snapshot, checksum made right again, which reaches the section table and record checks from
// an empty corpus.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "crypto/sha256.h"
#include "snapshot_format.h"
#include "synthetic_snapshot.h"
#include "tenon/abi.h"

namespace {

using mortise::snapshot::SectionType;

constexpr uint32_t kAbi = tenon::abi::kVersion;
constexpr uint64_t kMemory = 8192;

std::vector<uint8_t> make_template(mortise::snapshot::Engine engine) {
  const tenon::test_support::SyntheticSnapshot snapshot(engine, kMemory);
  absl::StatusOr<std::string> encoded = mortise::snapshot::encode_snapshot(snapshot.contents());
  if (!encoded.ok()) abort();
  return std::vector<uint8_t>(encoded->begin(), encoded->end());
}

void fix_checksum(std::vector<uint8_t>& file) {
  if (file.size() < mortise::snapshot::kChecksumBytes) return;
  const size_t body = file.size() - mortise::snapshot::kChecksumBytes;
  const std::string digest = tenon::crypto::sha256_digest({file.data(), body});
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
  const std::span<const SectionType> expected = mortise::snapshot::sections_of(parsed->engine);
  for (uint32_t type = 1; type <= mortise::snapshot::kSectionTypeCount; ++type) {
    const std::span<const uint8_t> section = parsed->sections[type - 1];
    const bool belongs = std::find(expected.begin(), expected.end(),
                                   static_cast<SectionType>(type)) != expected.end();
    // Exactly the engine's sections, each inside the input.
    if (section.empty() != !belongs) abort();
    if (section.empty()) continue;
    if (section.data() < begin || section.data() + section.size() > end) abort();
    for (uint32_t other = 1; other < type; ++other) {
      const std::span<const uint8_t> before = parsed->sections[other - 1];
      if (before.empty()) continue;
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
  static const std::vector<uint8_t> kTemplates[] = {
      make_template(mortise::snapshot::Engine::kKvm),
      make_template(mortise::snapshot::Engine::kQemu)};
  check({data, size});

  std::vector<uint8_t> fixed(data, data + size);
  fix_checksum(fixed);
  check(fixed);

  // Edits: (offset: 2 bytes little-endian, value: 1 byte) triples applied to each template.
  for (const std::vector<uint8_t>& snapshot_template : kTemplates) {
    std::vector<uint8_t> edited = snapshot_template;
    for (size_t i = 0; i + 3 <= size; i += 3) {
      const size_t offset = (size_t{data[i]} | size_t{data[i + 1]} << 8) % edited.size();
      edited[offset] = data[i + 2];
    }
    if (size % 7 == 1) edited.resize(edited.size() - data[0] % edited.size());  // truncations
    fix_checksum(edited);
    check(edited);
  }
  return 0;
}
