// What every engine's snapshot shares (instance.h): the capture's common part, its sections in
// the file format, and the layout a snapshot's machine record describes.
#include <cstring>

#include "instance.h"
#include "tenon/abi.h"

namespace mortise {
namespace {

template <typename T>
std::span<const uint8_t> bytes_of(const T& object) {
  return {reinterpret_cast<const uint8_t*>(&object), sizeof(T)};
}

template <typename T>
std::span<const uint8_t> bytes_of(const std::vector<T>& objects) {
  return {reinterpret_cast<const uint8_t*>(objects.data()), objects.size() * sizeof(T)};
}

std::span<const uint8_t> bytes_of(const std::string& text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

}  // namespace

absl::StatusOr<std::unique_ptr<SnapshotCapture>> begin_capture(
    snapshot::Engine engine, const SnapshotLabels& labels, const GuestMemory& memory,
    const MemoryLayout& layout, const ElfImage& image, uint64_t tsc_khz) {
  auto captured = std::make_unique<SnapshotCapture>();
  SnapshotCapture& state = *captured;
  state.engine = engine;
  for (const auto& [field, text] :
       {std::pair<std::span<char>, const std::string&>{state.metadata.run_id, labels.run_id},
        {state.metadata.image_digest, labels.image_digest},
        {state.metadata.vm_name, labels.vm_name}}) {
    if (absl::Status status = snapshot::set_text(field, text); !status.ok()) return status;
  }
  absl::StatusOr<tenon::abi::BootInfo> boot_info =
      memory.read<tenon::abi::BootInfo>(tenon::abi::kBootInfoAddress);
  if (!boot_info.ok()) return boot_info.status();

  snapshot::Machine& machine = state.machine;
  machine.memory_bytes = memory.size();
  machine.stack_bytes = layout.stack_top - layout.stack_bottom;
  machine.app_run_ns = boot_info->app_run_ns;
  machine.tsc_khz = tsc_khz;
  machine.console_offset = labels.console_offset;
  machine.image_entry = image.entry;
  machine.image_end = layout.image_end;
  machine.heap_start = layout.heap_start;
  machine.heap_end = layout.heap_end;
  machine.guard_page = layout.guard_page;
  machine.stack_bottom = layout.stack_bottom;
  machine.stack_top = layout.stack_top;
  machine.page_tables = layout.page_tables;

  state.memory_bytes = memory.size();
  state.memory.reset(new uint8_t[state.memory_bytes]);
  std::memcpy(state.memory.get(), memory.host_base(), state.memory_bytes);
  return captured;
}

snapshot::Contents SnapshotCapture::contents() const {
  using snapshot::SectionType;
  snapshot::Contents contents;
  contents.guest_abi_version = tenon::abi::kVersion;
  contents.memory_bytes = memory_bytes;
  contents.engine = engine;
  contents.sections = {{SectionType::kMetadata, bytes_of(metadata)},
                       {SectionType::kMachine, bytes_of(machine)}};
  if (engine == snapshot::Engine::kQemu) {
    contents.sections.push_back({SectionType::kQemuState, bytes_of(qemu_state)});
  } else {
    contents.sections.insert(contents.sections.end(),
                             {
                                 {SectionType::kCpuid, bytes_of(kvm.cpuid)},
                                 {SectionType::kRegisters, bytes_of(kvm.regs)},
                                 {SectionType::kSpecialRegisters, bytes_of(kvm.sregs)},
                                 {SectionType::kXsave, bytes_of(kvm.xsave)},
                                 {SectionType::kXcrs, bytes_of(kvm.xcrs)},
                                 {SectionType::kMsrs, bytes_of(kvm.msrs)},
                                 {SectionType::kLapic, bytes_of(kvm.lapic)},
                                 {SectionType::kVcpuEvents, bytes_of(kvm.events)},
                                 {SectionType::kMpState, bytes_of(kvm.mp_state)},
                             });
  }
  contents.sections.push_back({SectionType::kGuestMemory, {memory.get(), memory_bytes}});
  return contents;
}

MemoryLayout layout_of(const snapshot::Machine& machine) {
  MemoryLayout layout;
  layout.memory_size = machine.memory_bytes;
  layout.image_end = machine.image_end;
  layout.heap_start = machine.heap_start;
  layout.heap_end = machine.heap_end;
  layout.guard_page = machine.guard_page;
  layout.stack_bottom = machine.stack_bottom;
  layout.stack_top = machine.stack_top;
  layout.page_tables = machine.page_tables;
  return layout;
}

ElfImage image_of(const snapshot::Machine& machine) {
  ElfImage image;
  image.entry = machine.image_entry;
  image.end = machine.image_end;
  return image;
}

}  // namespace mortise
