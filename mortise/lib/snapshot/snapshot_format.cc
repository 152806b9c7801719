// The snapshot file format: writer and strict parser. The format itself (magic, version, arch,
// section table, caps, checksum) is documented at the top of snapshot_format.h.
#include "snapshot_format.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "crypto/sha256.h"

namespace mortise::snapshot {
namespace {

static_assert(std::endian::native == std::endian::little,
              "the snapshot format is little-endian and so are the hosts that write it");

// Header field offsets.
constexpr size_t kVersionAt = 8;
constexpr size_t kArchAt = 12;
constexpr size_t kAbiAt = 16;
constexpr size_t kCountAt = 20;
constexpr size_t kFileSizeAt = 24;
constexpr size_t kMemoryAt = 32;
constexpr size_t kHeaderSizeAt = 40;
constexpr size_t kEngineAt = 44;
constexpr size_t kReservedAt = 48;

constexpr SectionType kKvmSections[] = {
    SectionType::kMetadata,
    SectionType::kMachine,
    SectionType::kCpuid,
    SectionType::kRegisters,
    SectionType::kSpecialRegisters,
    SectionType::kXsave,
    SectionType::kXcrs,
    SectionType::kMsrs,
    SectionType::kLapic,
    SectionType::kVcpuEvents,
    SectionType::kMpState,
    SectionType::kGuestMemory,
};
constexpr SectionType kQemuSections[] = {
    SectionType::kMetadata,
    SectionType::kMachine,
    SectionType::kQemuState,
    SectionType::kGuestMemory,
};

bool known_engine(uint32_t engine) {
  return engine == static_cast<uint32_t>(Engine::kKvm) ||
         engine == static_cast<uint32_t>(Engine::kQemu);
}

bool belongs_to(Engine engine, SectionType type) {
  const std::span<const SectionType> sections = sections_of(engine);
  return std::find(sections.begin(), sections.end(), type) != sections.end();
}

template <typename T>
T load(std::span<const uint8_t> bytes, size_t at) {
  T value;
  std::memcpy(&value, bytes.data() + at, sizeof(T));
  return value;
}

template <typename T>
void store(std::string& bytes, size_t at, T value) {
  std::memcpy(bytes.data() + at, &value, sizeof(T));
}

const char* arch_name(uint32_t arch) {
  switch (static_cast<Arch>(arch)) {
    case Arch::kX86_64:
      return "x86_64";
    case Arch::kArm64:
      return "arm64";
  }
  return "unknown";
}

static_assert(kChecksumBytes == tenon::crypto::kSha256Bytes, "the checksum is a SHA-256");

bool known_type(uint32_t type) { return type >= 1 && type <= kSectionTypeCount; }

// The size rule of each section type; the empty status when `size` obeys it.
absl::Status check_section_size(SectionType type, uint64_t size, uint64_t memory_bytes) {
  auto exact = [&](uint64_t expected) -> absl::Status {
    if (size == expected) return absl::OkStatus();
    return absl::DataLossError(absl::StrCat("section ", section_name(type), " has ", size,
                                            " bytes instead of ", expected));
  };
  auto list = [&](uint64_t entry, uint64_t cap) -> absl::Status {
    if (size != 0 && size % entry == 0 && size / entry <= cap) return absl::OkStatus();
    return absl::DataLossError(absl::StrCat("section ", section_name(type), " has ", size,
                                            " bytes: not 1 to ", cap, " entries of ", entry,
                                            " bytes"));
  };
  switch (type) {
    case SectionType::kMetadata:
      return exact(sizeof(Metadata));
    case SectionType::kMachine:
      return exact(sizeof(Machine));
    case SectionType::kCpuid:
      return list(kCpuidEntryBytes, kMaxCpuidEntries);
    case SectionType::kRegisters:
      return exact(kRegistersBytes);
    case SectionType::kSpecialRegisters:
      return exact(kSpecialRegistersBytes);
    case SectionType::kXsave:
      return exact(kXsaveBytes);
    case SectionType::kXcrs:
      return exact(kXcrsBytes);
    case SectionType::kMsrs:
      return list(kMsrEntryBytes, kMaxMsrEntries);
    case SectionType::kLapic:
      return exact(kLapicBytes);
    case SectionType::kVcpuEvents:
      return exact(kVcpuEventsBytes);
    case SectionType::kMpState:
      return exact(kMpStateBytes);
    case SectionType::kGuestMemory:
      if (size == memory_bytes) return absl::OkStatus();
      return absl::DataLossError(absl::StrCat("guest memory section has ", size,
                                              " bytes but the header says the guest has ",
                                              memory_bytes));
    case SectionType::kQemuState:
      if (size != 0 && size <= kMaxQemuStateBytes) return absl::OkStatus();
      return absl::DataLossError(absl::StrCat("section ", section_name(type), " has ", size,
                                              " bytes: not 1 to ", kMaxQemuStateBytes));
  }
  return absl::DataLossError(absl::StrCat("unknown section type ", static_cast<uint32_t>(type)));
}

absl::Status check_memory_bytes(uint64_t memory_bytes) {
  if (memory_bytes == 0 || memory_bytes % kPageBytes != 0 || memory_bytes > kMaxMemoryBytes) {
    return absl::DataLossError(absl::StrCat("guest memory of ", memory_bytes,
                                            " bytes is not a multiple of 4 KiB between 4 KiB and ",
                                            kMaxMemoryBytes >> 20, " MiB"));
  }
  return absl::OkStatus();
}

absl::Status check_text(std::span<const char> field, const char* what) {
  const auto end = std::find(field.begin(), field.end(), '\0');
  if (end == field.end()) {
    return absl::DataLossError(absl::StrCat("metadata ", what, " is not NUL-terminated"));
  }
  for (auto c = field.begin(); c != end; ++c) {
    if (*c < 0x20 || *c > 0x7e) {
      return absl::DataLossError(absl::StrCat("metadata ", what, " is not printable ASCII"));
    }
  }
  return absl::OkStatus();
}

absl::Status check_metadata(const Metadata& metadata) {
  if (absl::Status status = check_text(metadata.run_id, "run_id"); !status.ok()) return status;
  if (absl::Status status = check_text(metadata.image_digest, "image_digest"); !status.ok()) {
    return status;
  }
  return check_text(metadata.vm_name, "vm_name");
}

absl::Status check_machine(const Machine& machine, uint64_t memory_bytes) {
  if (machine.memory_bytes != memory_bytes) {
    return absl::DataLossError(absl::StrCat("machine record says ", machine.memory_bytes,
                                            " bytes of memory, the header ", memory_bytes));
  }
  if (machine.tsc_khz == 0) return absl::DataLossError("machine record has no TSC frequency");
  const uint64_t layout[] = {machine.image_end,  machine.heap_start,   machine.heap_end,
                             machine.guard_page, machine.stack_bottom, machine.stack_top,
                             machine.page_tables};
  uint64_t previous = 0;
  for (uint64_t boundary : layout) {
    if (boundary % kPageBytes != 0 || boundary < previous || boundary > memory_bytes) {
      return absl::DataLossError(
          "machine record's memory layout is not page aligned, ordered and inside memory");
    }
    previous = boundary;
  }
  if (machine.image_entry >= machine.image_end) {
    return absl::DataLossError("machine record's image entry lies outside the image");
  }
  return absl::OkStatus();
}

absl::Status check_contents(const Contents& contents) {
  if (absl::Status status = check_memory_bytes(contents.memory_bytes); !status.ok()) {
    return absl::InvalidArgumentError(status.message());
  }
  if (!known_engine(static_cast<uint32_t>(contents.engine))) {
    return absl::InvalidArgumentError("unknown engine");
  }
  const size_t expected = sections_of(contents.engine).size();
  if (contents.sections.size() != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat("a snapshot of the ", engine_name(contents.engine), " engine has ", expected,
                     " sections, got ", contents.sections.size()));
  }
  std::array<bool, kSectionTypeCount> seen{};
  for (const SectionData& section : contents.sections) {
    const uint32_t type = static_cast<uint32_t>(section.type);
    if (!known_type(type) || seen[type - 1] || !belongs_to(contents.engine, section.type)) {
      return absl::InvalidArgumentError(absl::StrCat("section type ", type,
                                                     " unknown, twice, or not of the ",
                                                     engine_name(contents.engine), " engine"));
    }
    seen[type - 1] = true;
    if (absl::Status status =
            check_section_size(section.type, section.bytes.size(), contents.memory_bytes);
        !status.ok()) {
      return absl::InvalidArgumentError(status.message());
    }
    if (section.type == SectionType::kMetadata) {
      Metadata metadata;
      std::memcpy(&metadata, section.bytes.data(), sizeof(metadata));
      if (absl::Status status = check_metadata(metadata); !status.ok()) {
        return absl::InvalidArgumentError(status.message());
      }
    }
    if (section.type == SectionType::kMachine) {
      Machine machine;
      std::memcpy(&machine, section.bytes.data(), sizeof(machine));
      if (absl::Status status = check_machine(machine, contents.memory_bytes); !status.ok()) {
        return absl::InvalidArgumentError(status.message());
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

const char* engine_name(Engine engine) {
  switch (engine) {
    case Engine::kKvm:
      return "kvm";
    case Engine::kQemu:
      return "qemu";
  }
  return "unknown";
}

std::span<const SectionType> sections_of(Engine engine) {
  if (engine == Engine::kQemu) return kQemuSections;
  return kKvmSections;
}

const char* section_name(SectionType type) {
  switch (type) {
    case SectionType::kMetadata:
      return "metadata";
    case SectionType::kMachine:
      return "machine";
    case SectionType::kCpuid:
      return "cpuid";
    case SectionType::kRegisters:
      return "registers";
    case SectionType::kSpecialRegisters:
      return "special-registers";
    case SectionType::kXsave:
      return "xsave";
    case SectionType::kXcrs:
      return "xcrs";
    case SectionType::kMsrs:
      return "msrs";
    case SectionType::kLapic:
      return "lapic";
    case SectionType::kVcpuEvents:
      return "vcpu-events";
    case SectionType::kMpState:
      return "mp-state";
    case SectionType::kGuestMemory:
      return "guest-memory";
    case SectionType::kQemuState:
      return "qemu-state";
  }
  return "unknown";
}

absl::Status set_text(std::span<char> field, const std::string& text) {
  if (text.size() >= field.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' does not fit a field of ", field.size() - 1, " characters"));
  }
  for (char c : text) {
    if (c < 0x20 || c > 0x7e) {
      return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not printable ASCII"));
    }
  }
  std::fill(field.begin(), field.end(), '\0');
  std::copy(text.begin(), text.end(), field.begin());
  return absl::OkStatus();
}

std::string text_of(std::span<const char> field) {
  return std::string(field.begin(), std::find(field.begin(), field.end(), '\0'));
}

absl::StatusOr<Written> write_snapshot(const Contents& contents, const Sink& sink) {
  if (absl::Status status = check_contents(contents); !status.ok()) return status;
  const uint64_t count = contents.sections.size();
  const uint64_t table_end = kHeaderBytes + count * kSectionEntryBytes;
  uint64_t size = table_end;
  for (const SectionData& section : contents.sections) size += section.bytes.size();
  size += kChecksumBytes;
  if (size > kMaxFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("a snapshot of ", size, " bytes exceeds the ", kMaxFileBytes, "-byte cap"));
  }

  std::string head(table_end, '\0');
  std::memcpy(head.data(), kMagic, sizeof(kMagic));
  store<uint32_t>(head, kVersionAt, kFormatVersion);
  store<uint32_t>(head, kArchAt, static_cast<uint32_t>(contents.arch));
  store<uint32_t>(head, kAbiAt, contents.guest_abi_version);
  store<uint32_t>(head, kCountAt, static_cast<uint32_t>(count));
  store<uint64_t>(head, kFileSizeAt, size);
  store<uint64_t>(head, kMemoryAt, contents.memory_bytes);
  store<uint32_t>(head, kHeaderSizeAt, static_cast<uint32_t>(kHeaderBytes));
  store<uint32_t>(head, kEngineAt, static_cast<uint32_t>(contents.engine));
  uint64_t offset = table_end;
  for (uint64_t i = 0; i < count; ++i) {
    const SectionData& section = contents.sections[i];
    const size_t entry = kHeaderBytes + i * kSectionEntryBytes;
    store<uint32_t>(head, entry, static_cast<uint32_t>(section.type));
    store<uint64_t>(head, entry + 8, offset);
    store<uint64_t>(head, entry + 16, section.bytes.size());
    offset += section.bytes.size();
  }

  // The small sections join the header in one write; the memory goes out as it is.
  tenon::crypto::Sha256 hash;
  auto emit = [&](std::span<const uint8_t> bytes) -> absl::Status {
    hash.add(bytes);
    return sink(bytes);
  };
  for (const SectionData& section : contents.sections) {
    if (section.type == SectionType::kGuestMemory) break;
    head.append(reinterpret_cast<const char*>(section.bytes.data()), section.bytes.size());
  }
  bool head_written = false;
  for (const SectionData& section : contents.sections) {
    if (!head_written && section.type != SectionType::kGuestMemory) continue;
    if (!head_written) {
      if (absl::Status status = emit({reinterpret_cast<const uint8_t*>(head.data()), head.size()});
          !status.ok()) {
        return status;
      }
      head_written = true;
    }
    if (absl::Status status = emit(section.bytes); !status.ok()) return status;
  }
  if (!head_written) {
    // Unreachable: check_contents requires the memory section.
    return absl::InternalError("snapshot without guest memory");
  }
  // The checksum ends the file, and the whole-file digest goes on to hash it too.
  const tenon::crypto::Sha256Hash checksum = hash.peek();
  hash.add(checksum);
  if (absl::Status status = sink(checksum); !status.ok()) return status;
  Written written;
  written.size_bytes = size;
  written.digest = hash.digest();
  return written;
}

absl::StatusOr<std::string> encode_snapshot(const Contents& contents) {
  std::string bytes;
  absl::StatusOr<Written> written = write_snapshot(contents, [&](std::span<const uint8_t> part) {
    bytes.append(reinterpret_cast<const char*>(part.data()), part.size());
    return absl::OkStatus();
  });
  if (!written.ok()) return written.status();
  return bytes;
}

absl::StatusOr<Snapshot> parse_snapshot(std::span<const uint8_t> file,
                                        uint32_t expected_guest_abi_version) {
  const uint64_t length = file.size();
  if (length < kHeaderBytes + kChecksumBytes) {
    return absl::DataLossError(absl::StrCat("truncated: the file has ", length,
                                            " bytes, fewer than a snapshot header and checksum (",
                                            kHeaderBytes + kChecksumBytes, ")"));
  }
  if (std::memcmp(file.data(), kMagic, sizeof(kMagic)) != 0) {
    return absl::DataLossError("bad magic: not a Tenon snapshot file");
  }
  const uint32_t version = load<uint32_t>(file, kVersionAt);
  if (version < kOldestReadableVersion || version > kFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "snapshot format version ", version, " is not supported (this Mortise reads versions ",
        kOldestReadableVersion, " to ", kFormatVersion, ")"));
  }
  const uint32_t arch = load<uint32_t>(file, kArchAt);
  if (arch != static_cast<uint32_t>(Arch::kX86_64)) {
    return absl::FailedPreconditionError(absl::StrCat("snapshot is for arch ", arch, " (",
                                                      arch_name(arch), "), this host is x86_64"));
  }
  const uint64_t file_size = load<uint64_t>(file, kFileSizeAt);
  if (file_size > kMaxFileBytes) {
    return absl::DataLossError(absl::StrCat("header claims ", file_size,
                                            " bytes, beyond the snapshot cap of ", kMaxFileBytes));
  }
  if (length < file_size) {
    return absl::DataLossError(
        absl::StrCat("truncated: the header says ", file_size, " bytes, the file has ", length));
  }
  if (length > file_size) {
    return absl::DataLossError(absl::StrCat("the file has ", length - file_size,
                                            " bytes beyond the ", file_size, " its header says"));
  }
  {
    tenon::crypto::Sha256 hash;
    hash.add(file.first(length - kChecksumBytes));
    const tenon::crypto::Sha256Hash expected = hash.finish();
    if (std::memcmp(expected.data(), file.data() + length - kChecksumBytes, kChecksumBytes) != 0) {
      return absl::DataLossError("checksum mismatch: the file is corrupt");
    }
  }
  Snapshot snapshot;
  snapshot.guest_abi_version = load<uint32_t>(file, kAbiAt);
  if (snapshot.guest_abi_version != expected_guest_abi_version) {
    return absl::FailedPreconditionError(
        absl::StrCat("snapshot of a guest built for ABI version ", snapshot.guest_abi_version,
                     ", this Mortise speaks version ", expected_guest_abi_version));
  }
  if (load<uint32_t>(file, kHeaderSizeAt) != kHeaderBytes) {
    return absl::DataLossError(absl::StrCat("header size ", load<uint32_t>(file, kHeaderSizeAt),
                                            " is not ", kHeaderBytes));
  }
  // Version 1 predates the engine field: its snapshots are all of the kvm engine.
  const uint32_t engine =
      version == 1 ? static_cast<uint32_t>(Engine::kKvm) : load<uint32_t>(file, kEngineAt);
  if (version == 1 && load<uint32_t>(file, kEngineAt) != 0) {
    return absl::DataLossError("reserved header bytes are not zero");
  }
  if (!known_engine(engine)) {
    return absl::FailedPreconditionError(
        absl::StrCat("snapshot of unknown engine ", engine, " (this Mortise knows kvm and qemu)"));
  }
  snapshot.engine = static_cast<Engine>(engine);
  for (size_t at = kReservedAt; at < kHeaderBytes; ++at) {
    if (file[at] != 0) return absl::DataLossError("reserved header bytes are not zero");
  }
  snapshot.memory_bytes = load<uint64_t>(file, kMemoryAt);
  if (absl::Status status = check_memory_bytes(snapshot.memory_bytes); !status.ok()) {
    return status;
  }
  const uint32_t count = load<uint32_t>(file, kCountAt);
  if (count == 0 || count > kMaxSections) {
    return absl::DataLossError(
        absl::StrCat("section count ", count, " is not between 1 and ", kMaxSections));
  }
  // Both operands are small (count <= kMaxSections), and file_size >= header + checksum.
  const uint64_t table_end = kHeaderBytes + uint64_t{count} * kSectionEntryBytes;
  const uint64_t data_end = file_size - kChecksumBytes;
  if (table_end > data_end) {
    return absl::DataLossError(
        absl::StrCat("the section table (", count, " entries) runs past the end of the file"));
  }
  struct Range {
    uint64_t begin, end;
    SectionType type;
  };
  std::vector<Range> ranges;
  for (uint32_t i = 0; i < count; ++i) {
    const size_t entry = kHeaderBytes + size_t{i} * kSectionEntryBytes;
    const uint32_t type = load<uint32_t>(file, entry);
    if (!known_type(type)) {
      return absl::DataLossError(absl::StrCat("section ", i, " has unknown type ", type));
    }
    const auto section_type = static_cast<SectionType>(type);
    if (!belongs_to(snapshot.engine, section_type)) {
      return absl::DataLossError(absl::StrCat("section ", section_name(section_type),
                                              " does not belong in a snapshot of the ",
                                              engine_name(snapshot.engine), " engine"));
    }
    if (load<uint32_t>(file, entry + 4) != 0) {
      return absl::DataLossError(absl::StrCat("section ", i, " has non-zero reserved bytes"));
    }
    if (!snapshot.section(section_type).empty()) {
      return absl::DataLossError(
          absl::StrCat("section ", section_name(section_type), " appears twice"));
    }
    const uint64_t offset = load<uint64_t>(file, entry + 8);
    const uint64_t size = load<uint64_t>(file, entry + 16);
    if (absl::Status status = check_section_size(section_type, size, snapshot.memory_bytes);
        !status.ok()) {
      return status;
    }
    // offset + size cannot wrap: both are checked against data_end first.
    if (offset < table_end || offset > data_end || size > data_end - offset) {
      return absl::DataLossError(absl::StrCat(
          "section ", section_name(section_type), " at ", offset, " (", size,
          " bytes) lies outside the file's data area [", table_end, ", ", data_end, ")"));
    }
    snapshot.sections[type - 1] = file.subspan(offset, size);
    ranges.push_back({offset, offset + size, section_type});
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].begin < ranges[i - 1].end) {
      return absl::DataLossError(absl::StrCat("sections ", section_name(ranges[i - 1].type),
                                              " and ", section_name(ranges[i].type), " overlap"));
    }
  }
  for (SectionType type : sections_of(snapshot.engine)) {
    if (snapshot.section(type).empty()) {
      return absl::DataLossError(absl::StrCat("section ", section_name(type), " is missing"));
    }
  }
  std::memcpy(&snapshot.metadata, snapshot.section(SectionType::kMetadata).data(),
              sizeof(Metadata));
  if (absl::Status status = check_metadata(snapshot.metadata); !status.ok()) return status;
  std::memcpy(&snapshot.machine, snapshot.section(SectionType::kMachine).data(), sizeof(Machine));
  if (absl::Status status = check_machine(snapshot.machine, snapshot.memory_bytes); !status.ok()) {
    return status;
  }
  return snapshot;
}

}  // namespace mortise::snapshot
