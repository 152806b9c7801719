// A well-formed snapshot file of either engine whose records are zeros: for the parser's fuzzer,
// and for refusals that must come before anything runs a snapshot (another engine's, say).
// Header-only, so that the fuzz target can build it with its own flags.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "snapshot_format.h"
#include "tenon/abi.h"

namespace tenon::test_support {

class SyntheticSnapshot {
 public:
  // `memory_bytes`: a multiple of 4 KiB, at least 8 KiB (the layout's two pages).
  SyntheticSnapshot(mortise::snapshot::Engine engine, uint64_t memory_bytes)
      : engine_(engine), memory_(memory_bytes) {
    (void)mortise::snapshot::set_text(metadata_.run_id, "run");
    (void)mortise::snapshot::set_text(metadata_.vm_name, "synthetic");
    machine_.memory_bytes = memory_bytes;
    machine_.tsc_khz = 1'000'000;
    machine_.image_end = machine_.heap_start = machine_.heap_end = machine_.guard_page = 4096;
    machine_.stack_bottom = machine_.stack_top = machine_.page_tables = 8192;
  }

  mortise::snapshot::Contents contents() const {
    using mortise::snapshot::SectionType;
    mortise::snapshot::Contents contents;
    contents.guest_abi_version = tenon::abi::kVersion;
    contents.memory_bytes = memory_.size();
    contents.engine = engine_;
    contents.sections = {{SectionType::kMetadata, bytes(metadata_)},
                         {SectionType::kMachine, bytes(machine_)}};
    if (engine_ == mortise::snapshot::Engine::kQemu) {
      contents.sections.push_back({SectionType::kQemuState, qemu_state_});
    } else {
      contents.sections.insert(contents.sections.end(), {{SectionType::kCpuid, cpuid_},
                                                         {SectionType::kRegisters, regs_},
                                                         {SectionType::kSpecialRegisters, sregs_},
                                                         {SectionType::kXsave, xsave_},
                                                         {SectionType::kXcrs, xcrs_},
                                                         {SectionType::kMsrs, msrs_},
                                                         {SectionType::kLapic, lapic_},
                                                         {SectionType::kVcpuEvents, events_},
                                                         {SectionType::kMpState, mp_state_}});
    }
    contents.sections.push_back({SectionType::kGuestMemory, memory_});
    return contents;
  }

 private:
  template <typename T>
  static std::span<const uint8_t> bytes(const T& object) {
    return {reinterpret_cast<const uint8_t*>(&object), sizeof(object)};
  }

  mortise::snapshot::Engine engine_;
  mortise::snapshot::Metadata metadata_{};
  mortise::snapshot::Machine machine_{};
  std::vector<uint8_t> memory_;
  std::vector<uint8_t> cpuid_ = std::vector<uint8_t>(mortise::snapshot::kCpuidEntryBytes);
  std::vector<uint8_t> regs_ = std::vector<uint8_t>(mortise::snapshot::kRegistersBytes);
  std::vector<uint8_t> sregs_ = std::vector<uint8_t>(mortise::snapshot::kSpecialRegistersBytes);
  std::vector<uint8_t> xsave_ = std::vector<uint8_t>(mortise::snapshot::kXsaveBytes);
  std::vector<uint8_t> xcrs_ = std::vector<uint8_t>(mortise::snapshot::kXcrsBytes);
  std::vector<uint8_t> msrs_ = std::vector<uint8_t>(2 * mortise::snapshot::kMsrEntryBytes);
  std::vector<uint8_t> lapic_ = std::vector<uint8_t>(mortise::snapshot::kLapicBytes);
  std::vector<uint8_t> events_ = std::vector<uint8_t>(mortise::snapshot::kVcpuEventsBytes);
  std::vector<uint8_t> mp_state_ = std::vector<uint8_t>(mortise::snapshot::kMpStateBytes);
  std::vector<uint8_t> qemu_state_ = std::vector<uint8_t>(100, 0x51);
};

}  // namespace tenon::test_support
