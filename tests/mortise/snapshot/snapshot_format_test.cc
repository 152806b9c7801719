// The snapshot file format (mortise/lib/snapshot): a written snapshot reads back unchanged, and
// every malformed file is refused with its reason and the status code MortiseService.Restore
// promises, whatever its sizes and offsets claim.
#include "snapshot_format.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/sha256.h"

namespace mortise::snapshot {
namespace {

using ::testing::HasSubstr;

constexpr uint32_t kAbi = 1;
constexpr uint64_t kMemory = 64 << 10;

// Offsets of the header fields and the table, as documented in snapshot_format.h.
constexpr size_t kVersionAt = 8, kArchAt = 12, kAbiAt = 16, kCountAt = 20, kFileSizeAt = 24,
                 kMemoryAt = 32, kEngineAt = 44, kTableAt = 64;

// Synthetic but valid contents: each section filled with a pattern of its own.
class Fixture {
 public:
  Fixture() {
    std::memset(&metadata_, 0, sizeof(metadata_));
    (void)set_text(metadata_.run_id, "0f0e0d0c-run");
    (void)set_text(metadata_.image_digest, "sha256:00");
    (void)set_text(metadata_.vm_name, "probe");
    machine_ = Machine{};
    machine_.memory_bytes = kMemory;
    machine_.tsc_khz = 2'000'000;
    machine_.image_entry = 0x8000;
    machine_.image_end = 0x9000;
    machine_.heap_start = 0x9000;
    machine_.heap_end = 0xa000;
    machine_.guard_page = 0xa000;
    machine_.stack_bottom = 0xb000;
    machine_.stack_top = 0xc000;
    machine_.page_tables = 0xc000;
    auto fill = [](std::vector<uint8_t>& bytes, size_t size, uint8_t seed) {
      bytes.resize(size);
      for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<uint8_t>(seed + i * 7);
    };
    fill(cpuid_, 3 * kCpuidEntryBytes, 1);
    fill(registers_, kRegistersBytes, 2);
    fill(special_, kSpecialRegistersBytes, 3);
    fill(xsave_, kXsaveBytes, 4);
    fill(xcrs_, kXcrsBytes, 5);
    fill(msrs_, 5 * kMsrEntryBytes, 6);
    fill(lapic_, kLapicBytes, 7);
    fill(events_, kVcpuEventsBytes, 8);
    fill(mp_state_, kMpStateBytes, 9);
    fill(memory_, kMemory, 10);
    fill(qemu_state_, 3000, 11);
  }

  Contents contents() const {
    Contents contents;
    contents.guest_abi_version = kAbi;
    contents.memory_bytes = kMemory;
    auto bytes = [](const auto& object) {
      return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&object), sizeof(object));
    };
    contents.sections = {
        {SectionType::kMetadata, bytes(metadata_)},
        {SectionType::kMachine, bytes(machine_)},
        {SectionType::kCpuid, cpuid_},
        {SectionType::kRegisters, registers_},
        {SectionType::kSpecialRegisters, special_},
        {SectionType::kXsave, xsave_},
        {SectionType::kXcrs, xcrs_},
        {SectionType::kMsrs, msrs_},
        {SectionType::kLapic, lapic_},
        {SectionType::kVcpuEvents, events_},
        {SectionType::kMpState, mp_state_},
        {SectionType::kGuestMemory, memory_},
    };
    return contents;
  }

  // The same instance as the qemu engine's snapshot: QEMU's stream instead of KVM's records.
  Contents qemu_contents() const {
    Contents contents = this->contents();
    contents.engine = Engine::kQemu;
    contents.sections = {contents.sections[0],
                         contents.sections[1],
                         {SectionType::kQemuState, qemu_state_},
                         contents.sections.back()};
    return contents;
  }

  std::string encoded() const {
    absl::StatusOr<std::string> bytes = encode_snapshot(contents());
    EXPECT_TRUE(bytes.ok()) << bytes.status();
    return bytes.value_or("");
  }

  Metadata metadata_;
  Machine machine_;
  std::vector<uint8_t> cpuid_, registers_, special_, xsave_, xcrs_, msrs_, lapic_, events_,
      mp_state_, memory_, qemu_state_;
};

absl::Status parse(const std::string& file) {
  return parse_snapshot({reinterpret_cast<const uint8_t*>(file.data()), file.size()}, kAbi)
      .status();
}

template <typename T>
void put(std::string& file, size_t at, T value) {
  std::memcpy(file.data() + at, &value, sizeof(T));
}
template <typename T>
T get(const std::string& file, size_t at) {
  T value;
  std::memcpy(&value, file.data() + at, sizeof(T));
  return value;
}

// Changes the file, then makes its checksum right again: what a hostile writer would do, so
// that the checks behind the checksum are what refuses it.
std::string rewritten(std::string file, const std::function<void(std::string&)>& change) {
  change(file);
  const size_t body = file.size() - kChecksumBytes;
  tenon::crypto::Sha256 hash;
  hash.add(std::string_view(file).substr(0, body));
  const tenon::crypto::Sha256Hash checksum = hash.finish();
  std::memcpy(file.data() + body, checksum.data(), kChecksumBytes);
  return file;
}

size_t entry_at(size_t index) { return kTableAt + index * kSectionEntryBytes; }

// The table index of a section type in the Fixture's order.
size_t index_of(SectionType type) { return static_cast<size_t>(type) - 1; }

TEST(SnapshotFormat, RoundTripKeepsEveryByte) {
  Fixture fixture;
  std::string file;
  absl::StatusOr<Written> written =
      write_snapshot(fixture.contents(), [&](std::span<const uint8_t> part) {
        file.append(reinterpret_cast<const char*>(part.data()), part.size());
        return absl::OkStatus();
      });
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(written->size_bytes, file.size());
  EXPECT_EQ(written->digest, tenon::crypto::sha256_digest(file));

  absl::StatusOr<Snapshot> parsed =
      parse_snapshot({reinterpret_cast<const uint8_t*>(file.data()), file.size()}, kAbi);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->guest_abi_version, kAbi);
  EXPECT_EQ(parsed->memory_bytes, kMemory);
  EXPECT_EQ(text_of(parsed->metadata.run_id), "0f0e0d0c-run");
  EXPECT_EQ(text_of(parsed->metadata.vm_name), "probe");
  EXPECT_EQ(parsed->machine.stack_top, 0xc000u);
  for (const SectionData& section : fixture.contents().sections) {
    const std::span<const uint8_t> read = parsed->section(section.type);
    ASSERT_EQ(read.size(), section.bytes.size()) << section_name(section.type);
    EXPECT_EQ(std::memcmp(read.data(), section.bytes.data(), read.size()), 0)
        << section_name(section.type);
  }
}

TEST(SnapshotFormat, BadMagicIsDataLoss) {
  std::string file = Fixture().encoded();
  file[0] = 'X';
  const absl::Status status = parse(file);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("bad magic"));
}

TEST(SnapshotFormat, OtherFormatVersionIsRefusedAsUnsupportedNotCorrupt) {
  std::string file = Fixture().encoded();
  put<uint32_t>(file, kVersionAt, kFormatVersion + 1);
  const absl::Status status = parse(file);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("format version 3 is not supported"));
}

TEST(SnapshotFormat, VersionOneFilesReadAsTheKvmEngines) {
  // Version 1 is version 2 without the engine field: a kvm snapshot with that field zero.
  const std::string file = rewritten(Fixture().encoded(), [](std::string& f) {
    put<uint32_t>(f, kVersionAt, 1);
    put<uint32_t>(f, kEngineAt, 0);
  });
  absl::StatusOr<Snapshot> parsed =
      parse_snapshot({reinterpret_cast<const uint8_t*>(file.data()), file.size()}, kAbi);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->engine, Engine::kKvm);

  const std::string qemu_as_v1 = rewritten(encode_snapshot(Fixture().qemu_contents()).value(),
                                           [](std::string& f) { put<uint32_t>(f, kVersionAt, 1); });
  EXPECT_EQ(parse(qemu_as_v1).code(), absl::StatusCode::kDataLoss);
}

TEST(SnapshotFormat, QemuSnapshotRoundTripsWithItsEngineAndStream) {
  Fixture fixture;
  absl::StatusOr<std::string> file = encode_snapshot(fixture.qemu_contents());
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(get<uint32_t>(*file, kEngineAt), static_cast<uint32_t>(Engine::kQemu));
  absl::StatusOr<Snapshot> parsed =
      parse_snapshot({reinterpret_cast<const uint8_t*>(file->data()), file->size()}, kAbi);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->engine, Engine::kQemu);
  const std::span<const uint8_t> stream = parsed->section(SectionType::kQemuState);
  ASSERT_EQ(stream.size(), fixture.qemu_state_.size());
  EXPECT_EQ(std::memcmp(stream.data(), fixture.qemu_state_.data(), stream.size()), 0);
  EXPECT_TRUE(parsed->section(SectionType::kRegisters).empty());
}

TEST(SnapshotFormat, SectionsOfAnotherEngineAreRefused) {
  Fixture fixture;
  // A kvm snapshot relabelled as qemu: its KVM records do not belong there.
  const std::string relabelled = rewritten(fixture.encoded(), [](std::string& f) {
    put<uint32_t>(f, kEngineAt, static_cast<uint32_t>(Engine::kQemu));
  });
  absl::Status status = parse(relabelled);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("does not belong in a snapshot of the qemu engine"));

  // A qemu snapshot relabelled as kvm: the QEMU stream does not belong, the KVM records miss.
  const std::string qemu_file = encode_snapshot(fixture.qemu_contents()).value();
  status = parse(rewritten(qemu_file, [](std::string& f) {
    put<uint32_t>(f, kEngineAt, static_cast<uint32_t>(Engine::kKvm));
  }));
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("qemu-state does not belong"));

  // An engine this build does not know is a file it cannot restore, not a corrupt one.
  status = parse(rewritten(qemu_file, [](std::string& f) { put<uint32_t>(f, kEngineAt, 9); }));
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("unknown engine 9"));

  // QEMU's stream obeys its cap, and the writer refuses a mix.
  const size_t stream_entry = entry_at(2);
  status = parse(rewritten(qemu_file, [&](std::string& f) {
    put<uint64_t>(f, stream_entry + 16, kMaxQemuStateBytes + 1);
  }));
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  Contents mixed = fixture.qemu_contents();
  mixed.sections[2] = fixture.contents().sections[index_of(SectionType::kRegisters)];
  EXPECT_EQ(encode_snapshot(mixed).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SnapshotFormat, OtherArchIsRefused) {
  std::string file = Fixture().encoded();
  put<uint32_t>(file, kArchAt, static_cast<uint32_t>(Arch::kArm64));
  const absl::Status status = parse(file);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("arm64"));
}

TEST(SnapshotFormat, OtherGuestAbiIsRefusedWithBothVersions) {
  const std::string file =
      rewritten(Fixture().encoded(), [](std::string& f) { put<uint32_t>(f, kAbiAt, 7); });
  const absl::Status status = parse(file);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("ABI version 7"));
  EXPECT_THAT(status.message(), HasSubstr("speaks version 1"));
}

TEST(SnapshotFormat, AnyFlippedByteIsCaught) {
  const std::string good = Fixture().encoded();
  // A byte in the memory, in a small section, in the table, in the checksum itself.
  for (size_t at : {good.size() / 2, size_t{kTableAt + 3 * kSectionEntryBytes + 9}, good.size() - 1,
                    size_t{kMemoryAt + 1}}) {
    std::string file = good;
    file[at] = static_cast<char>(file[at] ^ 0x20);
    const absl::Status status = parse(file);
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << "byte " << at;
  }
  std::string file = good;
  file[good.size() / 2] ^= 1;
  EXPECT_THAT(parse(file).message(), HasSubstr("checksum mismatch"));
}

TEST(SnapshotFormat, TruncatedAnywhereIsDataLoss) {
  const std::string good = Fixture().encoded();
  std::vector<size_t> lengths;
  for (size_t length = 0; length < 200; ++length) lengths.push_back(length);
  for (size_t length = 200; length < good.size(); length += 997) lengths.push_back(length);
  lengths.push_back(good.size() - kChecksumBytes);
  lengths.push_back(good.size() - 1);
  for (size_t length : lengths) {
    const absl::Status status = parse(good.substr(0, length));
    ASSERT_EQ(status.code(), absl::StatusCode::kDataLoss) << "length " << length;
    ASSERT_THAT(status.message(), HasSubstr("truncated")) << "length " << length;
  }
}

TEST(SnapshotFormat, TrailingBytesAreRefused) {
  const absl::Status status = parse(Fixture().encoded() + "x");
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("beyond"));
}

TEST(SnapshotFormat, FileSizeBeyondTheCapIsRefusedBeforeAnythingIsRead) {
  std::string file = Fixture().encoded();
  put<uint64_t>(file, kFileSizeAt, kMaxFileBytes + 1);
  const absl::Status status = parse(file);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("cap"));
}

struct Malformation {
  const char* name;
  std::function<void(std::string&)> change;
  const char* reason;
};

TEST(SnapshotFormat, MalformedTablesAndRecordsAreRefusedBehindAGoodChecksum) {
  const size_t memory_entry = entry_at(index_of(SectionType::kGuestMemory));
  const size_t msrs_entry = entry_at(index_of(SectionType::kMsrs));
  const size_t regs_entry = entry_at(index_of(SectionType::kRegisters));
  const size_t lapic_entry = entry_at(index_of(SectionType::kLapic));
  const size_t machine_entry = entry_at(index_of(SectionType::kMachine));
  const std::vector<Malformation> cases = {
      {"msr list beyond its cap",
       [&](std::string& f) { put<uint64_t>(f, msrs_entry + 16, (kMaxMsrEntries + 1) * 16); },
       "entries"},
      {"msr list not whole entries", [&](std::string& f) { put<uint64_t>(f, msrs_entry + 16, 17); },
       "entries"},
      {"fixed record of the wrong size",
       [&](std::string& f) { put<uint64_t>(f, regs_entry + 16, kRegistersBytes - 8); },
       "instead of"},
      {"section beyond the file",
       [&](std::string& f) { put<uint64_t>(f, lapic_entry + 8, f.size()); }, "outside"},
      {"section whose end wraps around",
       [&](std::string& f) { put<uint64_t>(f, lapic_entry + 8, ~uint64_t{0} - 16); }, "outside"},
      {"section inside the header", [&](std::string& f) { put<uint64_t>(f, lapic_entry + 8, 8); },
       "outside"},
      {"section reaching into the checksum",
       [&](std::string& f) {
         put<uint64_t>(f, lapic_entry + 8, f.size() - kChecksumBytes - kLapicBytes + 1);
       },
       "outside"},
      {"overlapping sections",
       [&](std::string& f) {
         put<uint64_t>(f, lapic_entry + 8, get<uint64_t>(f, memory_entry + 8) + 4096);
       },
       "overlap"},
      {"duplicate section",
       [&](std::string& f) {
         put<uint32_t>(f, regs_entry, static_cast<uint32_t>(SectionType::kMachine));
       },
       "twice"},
      {"unknown section type", [&](std::string& f) { put<uint32_t>(f, regs_entry, 99); },
       "unknown type 99"},
      {"reserved table bytes", [&](std::string& f) { put<uint32_t>(f, regs_entry + 4, 1); },
       "reserved"},
      {"missing section",
       [&](std::string& f) {
         put<uint32_t>(f, kCountAt, static_cast<uint32_t>(sections_of(Engine::kKvm).size() - 1));
       },
       "missing"},
      {"no sections", [&](std::string& f) { put<uint32_t>(f, kCountAt, 0); }, "section count"},
      {"too many sections", [&](std::string& f) { put<uint32_t>(f, kCountAt, kMaxSections + 1); },
       "section count"},
      {"memory section not matching the header",
       [&](std::string& f) { put<uint64_t>(f, memory_entry + 16, kMemory - 4096); },
       "guest memory section"},
      {"header memory not matching the machine record",
       [&](std::string& f) {
         put<uint64_t>(f, kMemoryAt, kMemory - 4096);
         put<uint64_t>(f, memory_entry + 16, kMemory - 4096);
       },
       "machine record says"},
      {"memory not a multiple of a page",
       [&](std::string& f) { put<uint64_t>(f, kMemoryAt, kMemory + 1); }, "multiple of 4 KiB"},
      {"memory beyond the cap",
       [&](std::string& f) { put<uint64_t>(f, kMemoryAt, kMaxMemoryBytes * 2); },
       "multiple of 4 KiB"},
      {"layout outside memory",
       [&](std::string& f) {
         const uint64_t machine = get<uint64_t>(f, machine_entry + 8);
         put<uint64_t>(f, machine + offsetof(Machine, page_tables), kMemory + 4096);
       },
       "layout"},
      {"metadata without a terminating NUL",
       [&](std::string& f) {
         const uint64_t metadata = get<uint64_t>(f, entry_at(0) + 8);
         std::memset(f.data() + metadata, 'a', sizeof(Metadata::run_id));
       },
       "NUL"},
  };
  const std::string good = Fixture().encoded();
  for (const Malformation& malformation : cases) {
    const absl::Status status = parse(rewritten(good, malformation.change));
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << malformation.name << ": " << status;
    EXPECT_THAT(status.message(), HasSubstr(malformation.reason)) << malformation.name;
  }
}

TEST(SnapshotFormat, WriterRefusesWhatTheParserWouldRefuse) {
  Fixture fixture;
  Contents contents = fixture.contents();
  contents.sections.pop_back();  // no memory
  EXPECT_EQ(encode_snapshot(contents).status().code(), absl::StatusCode::kInvalidArgument);

  contents = fixture.contents();
  contents.sections[index_of(SectionType::kRegisters)].bytes =
      contents.sections[index_of(SectionType::kRegisters)].bytes.first(8);
  EXPECT_EQ(encode_snapshot(contents).status().code(), absl::StatusCode::kInvalidArgument);

  fixture.machine_.memory_bytes = kMemory * 2;
  EXPECT_EQ(encode_snapshot(fixture.contents()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SnapshotFormat, MetadataTextMustFitAndBePrintable) {
  Metadata metadata{};
  EXPECT_TRUE(set_text(metadata.vm_name, std::string(63, 'a')).ok());
  EXPECT_FALSE(set_text(metadata.vm_name, std::string(64, 'a')).ok());
  EXPECT_FALSE(set_text(metadata.vm_name, "bad\n").ok());
}

TEST(SnapshotFormat, SinkErrorsStopTheWriting) {
  int calls = 0;
  absl::StatusOr<Written> written =
      write_snapshot(Fixture().contents(), [&](std::span<const uint8_t>) {
        ++calls;
        return absl::ResourceExhaustedError("disk full");
      });
  EXPECT_EQ(written.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace mortise::snapshot
