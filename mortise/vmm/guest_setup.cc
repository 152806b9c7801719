// Guest memory preparation shared by the engines; see guest_setup.h.
#include "guest_setup.h"

#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "hypercall_dispatch.h"
#include "page_tables.h"
#include "qemu_machine.h"

namespace mortise {
namespace {

constexpr uint64_t kMaxImageFile = 64ull << 20;
constexpr uint64_t kPage = tenon::abi::kPageSize;
constexpr auto kRead = static_cast<uint8_t>(GuestPermission::kRead);
constexpr auto kReadWrite = kRead | static_cast<uint8_t>(GuestPermission::kWrite);
constexpr auto kReadExecute = kRead | static_cast<uint8_t>(GuestPermission::kExecute);

uint64_t round_up(uint64_t value) { return (value + kPage - 1) / kPage * kPage; }

}  // namespace

absl::StatusOr<std::vector<uint8_t>> read_image_file(const std::string& path) {
  std::ifstream stream(path, std::ios::binary | std::ios::ate);
  if (!stream) return absl::NotFoundError(absl::StrCat("cannot open image ", path));
  const std::streamoff size = stream.tellg();
  if (size < 0 || static_cast<uint64_t>(size) > kMaxImageFile) {
    return absl::InvalidArgumentError(
        absl::StrCat("image ", path, " is larger than the ", kMaxImageFile >> 20, " MiB limit"));
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  stream.seekg(0);
  if (!stream.read(reinterpret_cast<char*>(bytes.data()), size)) {
    return absl::DataLossError(absl::StrCat("cannot read image ", path));
  }
  return bytes;
}

MachineConstraints machine_constraints(EngineKind engine) {
  if (engine == EngineKind::kKvm) return {};
  return {qemu_machine::kBiosAliasStart, qemu_machine::kBiosAliasEnd, DeviceWindow::kPresent};
}

std::string describe_guest_fault(const tenon::abi::FaultArgs& fault, const MemoryLayout& layout) {
  const std::string message = describe_fault(fault);
  constexpr uint64_t kPageFault = 14;
  if (fault.vector != kPageFault) return message;
  if (fault.cr2 >= layout.guard_page && fault.cr2 < layout.guard_page + kPage) {
    return absl::StrCat(message, ": stack overflow into the guard page");
  }
  if (fault.cr2 < kPage) return absl::StrCat(message, ": null pointer access");
  return message;
}

absl::StatusOr<PreparedGuest> prepare_guest(const GuestMemory& memory,
                                            std::span<const uint8_t> file,
                                            const GuestSetup& setup) {
  const MachineConstraints machine = machine_constraints(setup.engine);
  // The image may use everything from kImageBase up to where the fixed tail of the layout
  // (guard page, stack, page tables) or the machine's hole starts; plan_memory_layout re-checks
  // with the real end.
  ElfLimits limits;
  limits.lowest_address = tenon::abi::kImageBase;
  limits.highest_address = memory.size();
  if (machine.hole_end > machine.hole_start && machine.hole_start < memory.size()) {
    limits.highest_address = machine.hole_start;
  }
  PreparedGuest guest;
  absl::StatusOr<ElfImage> image = parse_elf(file, limits, tenon::abi::kVersion);
  if (!image.ok()) return image.status();
  guest.image = std::move(*image);
  if (engine_for(guest.image.platform) != setup.engine) {
    return absl::FailedPreconditionError(
        absl::StrCat("the image is linked with ", platform_library(guest.image.platform),
                     ", which runs on the ", engine_name(engine_for(guest.image.platform)),
                     " engine; the ", engine_name(setup.engine), " engine runs images linked with ",
                     setup.engine == EngineKind::kKvm ? "plat-mortise" : "plat-qemu"));
  }
  absl::StatusOr<MemoryLayout> layout =
      plan_memory_layout(memory.size(), guest.image.end, setup.stack_bytes, machine);
  if (!layout.ok()) return layout.status();
  guest.layout = *layout;
  if (absl::Status status = load_elf(guest.image, file, memory); !status.ok()) return status;

  // Page tables: each image segment with its own permissions, the ABI pages, heap and stack.
  std::vector<PageMapping> mappings;
  mappings.push_back({tenon::abi::kBootInfoAddress, kPage, kRead});
  mappings.push_back({tenon::abi::kTelemetryAddress, kPage, kReadWrite});
  if (guest.image.platform == tenon::abi::Platform::kQemu) {
    mappings.push_back({tenon::abi::kExitRecordAddress, kPage, kReadWrite});
  }
  for (const ImageSegment& segment : guest.image.segments) {
    mappings.push_back({segment.address, round_up(segment.memory_size), segment.permissions});
  }
  const MemoryLayout& plan = guest.layout;
  if (plan.heap_end > plan.heap_start) {
    mappings.push_back({plan.heap_start, plan.heap_end - plan.heap_start, kReadWrite});
  }
  mappings.push_back({plan.stack_bottom, plan.stack_top - plan.stack_bottom, kReadWrite});
  absl::StatusOr<uint64_t> cr3 =
      build_page_tables(memory, plan.page_tables, mappings, machine.device_window);
  if (!cr3.ok()) return cr3.status();
  guest.cr3 = *cr3;
  if (!setup.channels.empty()) {
    if (absl::Status status =
            map_large_page(memory, plan.page_tables, tenon::abi::kIvcWindowBase, kReadWrite);
        !status.ok()) {
      return status;
    }
  }
  if (machine.device_window == DeviceWindow::kPresent) {
    // The local APIC's registers, and the boot ROM that runs before the image (its last
    // instructions execute with these tables already in force).
    if (absl::Status status =
            map_large_page(memory, plan.page_tables, qemu_machine::kLocalApicLargePage, kReadWrite,
                           MemoryType::kUncached);
        !status.ok()) {
      return status;
    }
    if (absl::Status status =
            map_large_page(memory, plan.page_tables, qemu_machine::kBootRomLargePage, kReadExecute);
        !status.ok()) {
      return status;
    }
  }

  tenon::abi::BootInfo boot_info{};
  boot_info.magic = tenon::abi::kBootInfoMagic;
  boot_info.abi_version = tenon::abi::kVersion;
  boot_info.memory_size = memory.size();
  boot_info.tsc_khz = setup.tsc_khz;
  boot_info.heap_start = plan.heap_start;
  boot_info.heap_end = plan.heap_end;
  boot_info.stack_top = plan.stack_top;
  boot_info.stack_size = plan.stack_top - plan.stack_bottom;
  boot_info.telemetry_address = tenon::abi::kTelemetryAddress;
  boot_info.host_start_tsc = setup.host_start_tsc;
  boot_info.app_run_ns = setup.app_run_ns;
  if (setup.channels.size() > tenon::abi::kIvcMaxChannels) {
    return absl::InvalidArgumentError("too many inter-VM channels");
  }
  boot_info.ivc_channel_count = static_cast<uint32_t>(setup.channels.size());
  for (size_t i = 0; i < setup.channels.size(); ++i) boot_info.ivc_channels[i] = setup.channels[i];
  if (absl::Status status = memory.write(tenon::abi::kBootInfoAddress, boot_info); !status.ok()) {
    return status;
  }
  return guest;
}

}  // namespace mortise
