// Tests of the ELF loader: a well-formed image parses and loads, and each kind of malformed image
// is refused with the status and message that name its problem.
#include "elf_loader.h"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tenon/abi.h"

namespace mortise {
namespace {

using ::testing::HasSubstr;

constexpr uint8_t kRead = static_cast<uint8_t>(GuestPermission::kRead);
constexpr uint8_t kWrite = static_cast<uint8_t>(GuestPermission::kWrite);
constexpr uint8_t kExecute = static_cast<uint8_t>(GuestPermission::kExecute);

constexpr ElfLimits kLimits{.lowest_address = 0x8000, .highest_address = 1 << 20};

// Appends one note (header, NUL-terminated name and descriptor, each padded to 4 bytes) to `out`.
void append_note(std::vector<uint8_t>& out, std::string_view name, uint32_t type,
                 const std::vector<uint8_t>& descriptor) {
  Elf64_Nhdr header{};
  header.n_namesz = static_cast<uint32_t>(name.size() + 1);
  header.n_descsz = static_cast<uint32_t>(descriptor.size());
  header.n_type = type;
  const auto* header_bytes = reinterpret_cast<const uint8_t*>(&header);
  out.insert(out.end(), header_bytes, header_bytes + sizeof(header));
  out.insert(out.end(), name.begin(), name.end());
  out.push_back(0);
  out.resize((out.size() + 3) & ~size_t{3}, 0);
  out.insert(out.end(), descriptor.begin(), descriptor.end());
  out.resize((out.size() + 3) & ~size_t{3}, 0);
}

std::vector<uint8_t> abi_descriptor(uint32_t version) {
  std::vector<uint8_t> bytes(sizeof(version));
  std::memcpy(bytes.data(), &version, sizeof(version));
  return bytes;
}

std::vector<uint8_t> tenon_note(uint32_t version) {
  std::vector<uint8_t> note;
  append_note(note, "Tenon", tenon::abi::kNoteTypeAbiVersion, abi_descriptor(version));
  return note;
}

// Builds an ELF file in memory shaped like a linked Tenon image: the ELF header, the program
// header table right after it, the notes at kNoteOffset, and segment contents at page offsets.
// Every byte not covered by a header is a non-zero pattern, so copies can be checked. Tests
// change the public fields to break one thing at a time.
class ElfBuilder {
 public:
  static constexpr uint64_t kNoteOffset = 0x200;
  static constexpr size_t kText = 0, kRodata = 1, kData = 2, kNote = 3;

  ElfBuilder() {
    std::memcpy(header.e_ident, ELFMAG, SELFMAG);
    header.e_ident[EI_CLASS] = ELFCLASS64;
    header.e_ident[EI_DATA] = ELFDATA2LSB;
    header.e_ident[EI_VERSION] = EV_CURRENT;
    header.e_type = ET_EXEC;
    header.e_machine = EM_X86_64;
    header.e_version = EV_CURRENT;
    header.e_entry = 0x8010;
    header.e_phoff = sizeof(Elf64_Ehdr);
    header.e_ehsize = sizeof(Elf64_Ehdr);
    header.e_phentsize = sizeof(Elf64_Phdr);
    phdrs.push_back(load(0x1000, 0x8000, 0x180, 0x180, PF_R | PF_X));
    phdrs.push_back(load(0x2000, 0x9000, 0x80, 0x80, PF_R));
    phdrs.push_back(load(0x3000, 0xa000, 0x40, 0x2000, PF_R | PF_W));  // data + bss
    Elf64_Phdr note_header{};
    note_header.p_type = PT_NOTE;
    note_header.p_flags = PF_R;
    note_header.p_offset = kNoteOffset;
    note_header.p_align = 4;
    phdrs.push_back(note_header);
    set_notes(tenon_note(tenon::abi::kVersion));
  }

  static Elf64_Phdr load(uint64_t offset, uint64_t address, uint64_t file_size,
                         uint64_t memory_size, uint32_t flags) {
    Elf64_Phdr phdr{};
    phdr.p_type = PT_LOAD;
    phdr.p_flags = flags;
    phdr.p_offset = offset;
    phdr.p_vaddr = address;
    phdr.p_paddr = address;
    phdr.p_filesz = file_size;
    phdr.p_memsz = memory_size;
    phdr.p_align = 0x1000;
    return phdr;
  }

  // Replaces the note area and sizes the PT_NOTE header to it.
  void set_notes(std::vector<uint8_t> bytes) {
    notes = std::move(bytes);
    phdrs[kNote].p_filesz = notes.size();
  }

  std::vector<uint8_t> build() const {
    std::vector<uint8_t> file(file_size);
    for (size_t i = 0; i < file.size(); ++i) file[i] = static_cast<uint8_t>(i % 251 + 1);
    Elf64_Ehdr written = header;
    if (!keep_phnum) written.e_phnum = static_cast<uint16_t>(phdrs.size());
    put(file, 0, &written, sizeof(written));
    for (size_t i = 0; i < phdrs.size(); ++i) {
      uint64_t offset = 0;  // a table placed at a wrapping offset must not land on the header
      if (__builtin_add_overflow(header.e_phoff, i * sizeof(Elf64_Phdr), &offset)) break;
      put(file, offset, &phdrs[i], sizeof(Elf64_Phdr));
    }
    put(file, kNoteOffset, notes.data(), notes.size());
    return file;
  }

  Elf64_Ehdr header{};
  std::vector<Elf64_Phdr> phdrs;
  std::vector<uint8_t> notes;
  uint64_t file_size = 0x3040;  // ends with the data segment's file bytes
  bool keep_phnum = false;      // write header.e_phnum as set instead of phdrs.size()

 private:
  // Writes what fits; a table deliberately placed past the end is simply cut off.
  static void put(std::vector<uint8_t>& file, uint64_t offset, const void* data, size_t size) {
    if (offset >= file.size()) return;
    std::memcpy(file.data() + offset, data, std::min<uint64_t>(size, file.size() - offset));
  }
};

absl::StatusOr<ElfImage> parse(const ElfBuilder& builder, const ElfLimits& limits = kLimits) {
  const std::vector<uint8_t> file = builder.build();
  return parse_elf(file, limits, tenon::abi::kVersion);
}

// Asserts that `result` failed with `code` and a message containing `substring`.
void expect_error(const absl::StatusOr<ElfImage>& result, absl::StatusCode code,
                  const std::string& substring) {
  ASSERT_FALSE(result.ok()) << "parsed although the image is malformed";
  EXPECT_EQ(result.status().code(), code) << result.status();
  EXPECT_THAT(std::string(result.status().message()), HasSubstr(substring));
}

void expect_invalid(const ElfBuilder& builder, const std::string& substring) {
  expect_error(parse(builder), absl::StatusCode::kInvalidArgument, substring);
}

TEST(ElfLoaderTest, ValidImageParses) {
  ElfBuilder builder;
  absl::StatusOr<ElfImage> image = parse(builder);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->entry, 0x8010u);
  EXPECT_EQ(image->abi_version, tenon::abi::kVersion);
  ASSERT_EQ(image->segments.size(), 3u);
  EXPECT_EQ(image->segments[0].address, 0x8000u);
  EXPECT_EQ(image->segments[0].file_offset, 0x1000u);
  EXPECT_EQ(image->segments[0].file_size, 0x180u);
  EXPECT_EQ(image->segments[0].memory_size, 0x180u);
  EXPECT_EQ(image->segments[0].permissions, kRead | kExecute);
  EXPECT_EQ(image->segments[1].address, 0x9000u);
  EXPECT_EQ(image->segments[1].permissions, kRead);
  EXPECT_EQ(image->segments[2].address, 0xa000u);
  EXPECT_EQ(image->segments[2].file_size, 0x40u);
  EXPECT_EQ(image->segments[2].memory_size, 0x2000u);
  EXPECT_EQ(image->segments[2].permissions, kRead | kWrite);
  EXPECT_EQ(image->end, 0xc000u);
}

TEST(ElfLoaderTest, SegmentsAreSortedByAddress) {
  ElfBuilder builder;
  std::swap(builder.phdrs[ElfBuilder::kText], builder.phdrs[ElfBuilder::kData]);
  absl::StatusOr<ElfImage> image = parse(builder);
  ASSERT_TRUE(image.ok()) << image.status();
  ASSERT_EQ(image->segments.size(), 3u);
  EXPECT_EQ(image->segments[0].address, 0x8000u);
  EXPECT_EQ(image->segments[1].address, 0x9000u);
  EXPECT_EQ(image->segments[2].address, 0xa000u);
}

TEST(ElfLoaderTest, ValidImageLoadsIntoGuestMemory) {
  ElfBuilder builder;
  const std::vector<uint8_t> file = builder.build();
  absl::StatusOr<ElfImage> image = parse_elf(file, kLimits, tenon::abi::kVersion);
  ASSERT_TRUE(image.ok()) << image.status();
  absl::StatusOr<GuestMemory> memory = GuestMemory::create(1 << 20);
  ASSERT_TRUE(memory.ok()) << memory.status();
  // Fresh memory is already zero; dirty it so the test sees whether the loader zeroes the bss.
  std::memset(memory->host_base(), 0xaa, memory->size());

  ASSERT_TRUE(load_elf(*image, file, *memory).ok());

  const uint8_t* guest = memory->host_base();
  EXPECT_EQ(std::memcmp(guest + 0x8000, file.data() + 0x1000, 0x180), 0) << "text not copied";
  EXPECT_EQ(std::memcmp(guest + 0x9000, file.data() + 0x2000, 0x80), 0) << "rodata not copied";
  EXPECT_EQ(std::memcmp(guest + 0xa000, file.data() + 0x3000, 0x40), 0) << "data not copied";
  const std::vector<uint8_t> zeros(0x2000 - 0x40, 0);
  EXPECT_EQ(std::memcmp(guest + 0xa040, zeros.data(), zeros.size()), 0) << "bss not zeroed";
  // Nothing outside the segments is touched.
  EXPECT_EQ(guest[0x7fff], 0xaa);
  EXPECT_EQ(guest[0x8180], 0xaa);
  EXPECT_EQ(guest[0xc000], 0xaa);
}

TEST(ElfLoaderTest, LoadRefusesSegmentOutsideGuestMemory) {
  ElfBuilder builder;
  const std::vector<uint8_t> file = builder.build();
  absl::StatusOr<ElfImage> image = parse_elf(file, kLimits, tenon::abi::kVersion);
  ASSERT_TRUE(image.ok()) << image.status();
  absl::StatusOr<GuestMemory> memory = GuestMemory::create(0xb000);  // data+bss ends at 0xc000
  ASSERT_TRUE(memory.ok()) << memory.status();
  absl::Status status = load_elf(*image, file, *memory);
  EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("does not fit in guest memory"));
}

TEST(ElfLoaderTest, LoadRefusesFileRangeOutsideTheFile) {
  ElfBuilder builder;
  const std::vector<uint8_t> file = builder.build();
  absl::StatusOr<ElfImage> image = parse_elf(file, kLimits, tenon::abi::kVersion);
  ASSERT_TRUE(image.ok()) << image.status();
  absl::StatusOr<GuestMemory> memory = GuestMemory::create(1 << 20);
  ASSERT_TRUE(memory.ok()) << memory.status();
  const std::vector<uint8_t> truncated(file.begin(), file.begin() + 0x3000);
  absl::Status status = load_elf(*image, truncated, *memory);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("does not fit the 12288-byte file"));
}

TEST(ElfLoaderTest, ZeroSizedLoadSegmentIsSkipped) {
  ElfBuilder builder;
  builder.phdrs.push_back(ElfBuilder::load(0, 0x12345, 0, 0, PF_R));  // unaligned, but empty
  absl::StatusOr<ElfImage> image = parse(builder);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->segments.size(), 3u);
}

// ---- Rejections: file and ELF header ----------------------------------------------------------

TEST(ElfLoaderTest, RejectsFileLargerThanLimit) {
  ElfLimits limits = kLimits;
  limits.max_file_size = 0x1000;
  expect_error(parse(ElfBuilder(), limits), absl::StatusCode::kInvalidArgument,
               "file is 12352 bytes, larger than the limit of 4096 bytes");
}

TEST(ElfLoaderTest, RejectsFileSmallerThanElfHeader) {
  const std::vector<uint8_t> file = ElfBuilder().build();
  expect_error(parse_elf(std::span(file).first(63), kLimits, tenon::abi::kVersion),
               absl::StatusCode::kInvalidArgument, "smaller than the 64-byte ELF header");
  expect_error(parse_elf({}, kLimits, tenon::abi::kVersion), absl::StatusCode::kInvalidArgument,
               "file is 0 bytes");
}

TEST(ElfLoaderTest, RejectsBadMagic) {
  ElfBuilder builder;
  builder.header.e_ident[EI_MAG1] = 'X';
  expect_invalid(builder, "bad magic");
}

TEST(ElfLoaderTest, RejectsClassOtherThan64Bit) {
  ElfBuilder builder;
  builder.header.e_ident[EI_CLASS] = ELFCLASS32;
  expect_invalid(builder, "is not ELFCLASS64");
}

TEST(ElfLoaderTest, RejectsBigEndian) {
  ElfBuilder builder;
  builder.header.e_ident[EI_DATA] = ELFDATA2MSB;
  expect_invalid(builder, "is not little-endian");
}

TEST(ElfLoaderTest, RejectsBadElfVersion) {
  ElfBuilder builder;
  builder.header.e_ident[EI_VERSION] = 2;
  expect_invalid(builder, "is not EV_CURRENT");
  ElfBuilder header_version;
  header_version.header.e_version = 0;
  expect_invalid(header_version, "is not EV_CURRENT");
}

TEST(ElfLoaderTest, RejectsTypeOtherThanExecutable) {
  ElfBuilder builder;
  builder.header.e_type = ET_DYN;
  expect_invalid(builder, "type 3 is not ET_EXEC");
}

TEST(ElfLoaderTest, RejectsMachineOtherThanX86_64) {
  ElfBuilder builder;
  builder.header.e_machine = EM_AARCH64;
  expect_invalid(builder, "machine 183 is not EM_X86_64");
}

TEST(ElfLoaderTest, RejectsWrongElfHeaderSize) {
  ElfBuilder builder;
  builder.header.e_ehsize = 52;
  expect_invalid(builder, "e_ehsize is 52, expected 64");
}

TEST(ElfLoaderTest, RejectsWrongProgramHeaderEntrySize) {
  ElfBuilder builder;
  builder.header.e_phentsize = 32;
  expect_invalid(builder, "e_phentsize is 32, expected 56");
}

TEST(ElfLoaderTest, RejectsZeroProgramHeaders) {
  ElfBuilder builder;
  builder.keep_phnum = true;
  builder.header.e_phnum = 0;
  expect_invalid(builder, "no program headers");
}

TEST(ElfLoaderTest, RejectsTooManyProgramHeaders) {
  ElfBuilder builder;
  builder.keep_phnum = true;
  builder.header.e_phnum = 65;
  expect_invalid(builder, "65 program headers, more than the 64 allowed");
}

TEST(ElfLoaderTest, RejectsExtendedProgramHeaderNumbering) {
  ElfBuilder builder;
  builder.keep_phnum = true;
  builder.header.e_phnum = PN_XNUM;
  ElfLimits limits = kLimits;
  limits.max_program_headers = 0xffff;
  expect_error(parse(builder, limits), absl::StatusCode::kInvalidArgument, "65535 program headers");
}

TEST(ElfLoaderTest, RejectsProgramHeaderTablePastEndOfFile) {
  ElfBuilder builder;
  builder.header.e_phoff = 0x3040 - 3 * sizeof(Elf64_Phdr);  // 4 entries, room for 3
  expect_invalid(builder, "program header table at offset 0x2f98 (224 bytes) runs past the end");
}

TEST(ElfLoaderTest, RejectsProgramHeaderTableOffsetThatWraps) {
  ElfBuilder builder;
  builder.header.e_phoff = ~uint64_t{0} - 0x10;  // offset + size overflows 64 bits
  expect_invalid(builder, "runs past the end of the 12352-byte file");
}

// ---- Rejections: loadable segments --------------------------------------------------------------

TEST(ElfLoaderTest, RejectsFileSizeLargerThanMemorySize) {
  ElfBuilder builder;
  builder.phdrs[ElfBuilder::kRodata].p_filesz = 0x100;
  expect_invalid(builder, "segment 1 has p_filesz 0x100 larger than p_memsz 0x80");
}

TEST(ElfLoaderTest, RejectsSegmentFileRangePastEndOfFile) {
  ElfBuilder builder;
  builder.phdrs[ElfBuilder::kData].p_filesz = 0x41;
  expect_invalid(builder,
                 "segment 2 file range [0x3000, +0x41) runs past the end of the 12352-byte file");
}

TEST(ElfLoaderTest, RejectsSegmentFileOffsetThatWraps) {
  ElfBuilder builder;
  builder.phdrs[ElfBuilder::kRodata].p_offset = ~uint64_t{0} - 0x10;
  expect_invalid(builder, "segment 1 file range");
}

TEST(ElfLoaderTest, RejectsUnalignedSegmentAddress) {
  ElfBuilder builder;
  builder.phdrs[ElfBuilder::kRodata].p_vaddr = 0x9010;
  builder.phdrs[ElfBuilder::kRodata].p_paddr = 0x9010;
  expect_invalid(builder, "segment 1 address 0x9010 is not aligned to 4096 bytes");
}

TEST(ElfLoaderTest, RejectsSegmentWrappingAddressSpace) {
  ElfBuilder builder;
  builder.phdrs[ElfBuilder::kRodata].p_vaddr = 0xfffffffffffff000;
  builder.phdrs[ElfBuilder::kRodata].p_paddr = 0xfffffffffffff000;
  builder.phdrs[ElfBuilder::kRodata].p_memsz = 0x2000;
  expect_invalid(builder, "segment 1 [0xfffffffffffff000, +0x2000) wraps around");
}

TEST(ElfLoaderTest, RejectsSegmentWhosePageRoundedEndWraps) {
  ElfBuilder builder;
  builder.phdrs[ElfBuilder::kRodata].p_vaddr = 0xfffffffffffff000;
  builder.phdrs[ElfBuilder::kRodata].p_paddr = 0xfffffffffffff000;
  builder.phdrs[ElfBuilder::kRodata].p_memsz = 0xfff;  // ends at 2^64 - 1; its page end wraps
  expect_invalid(builder, "wraps around the address space");
}

TEST(ElfLoaderTest, RejectsSegmentBelowWindow) {
  ElfBuilder builder;
  builder.phdrs[ElfBuilder::kRodata].p_vaddr = 0x3000;
  builder.phdrs[ElfBuilder::kRodata].p_paddr = 0x3000;
  expect_invalid(builder,
                 "segment 1 pages [0x3000, 0x4000) lie outside the image window "
                 "[0x8000, 0x100000)");
}

TEST(ElfLoaderTest, RejectsSegmentAboveWindow) {
  ElfBuilder builder;
  builder.phdrs[ElfBuilder::kData].p_vaddr = 0xff000;
  builder.phdrs[ElfBuilder::kData].p_paddr = 0xff000;
  expect_invalid(builder, "segment 2 pages [0xff000, 0x101000) lie outside the image window");
}

TEST(ElfLoaderTest, RejectsSegmentsOverlappingByOneByte) {
  ElfBuilder builder;
  builder.phdrs[ElfBuilder::kText].p_memsz = 0x1001;  // text 0x8000..0x9001 reaches into rodata
  expect_invalid(builder,
                 "segment 0 pages [0x8000, 0xa000) overlap segment 1 pages "
                 "[0x9000, 0xa000)");
}

TEST(ElfLoaderTest, RejectsOverlappingSegments) {
  ElfBuilder builder;
  builder.phdrs[ElfBuilder::kData].p_vaddr = 0x8000;
  builder.phdrs[ElfBuilder::kData].p_paddr = 0x8000;
  expect_invalid(builder, "overlap segment");
}

TEST(ElfLoaderTest, RejectsPhysicalAddressDifferentFromVirtual) {
  ElfBuilder builder;
  builder.phdrs[ElfBuilder::kRodata].p_paddr = 0x19000;
  expect_invalid(builder,
                 "segment 1 physical address 0x19000 differs from its virtual address 0x9000");
}

TEST(ElfLoaderTest, RejectsAbsurdMemorySize) {
  ElfBuilder builder;
  builder.phdrs[ElfBuilder::kData].p_memsz = uint64_t{1} << 40;
  expect_invalid(builder,
                 "segment 2 memory size 0x10000000000 is larger than the whole image "
                 "window of 0xf8000 bytes");
}

TEST(ElfLoaderTest, RejectsImageWithoutLoadableSegment) {
  ElfBuilder builder;
  builder.phdrs.erase(builder.phdrs.begin(), builder.phdrs.begin() + ElfBuilder::kNote);
  expect_invalid(builder, "image has no loadable segment");
}

TEST(ElfLoaderTest, RejectsImageWhoseOnlyLoadSegmentIsEmpty) {
  ElfBuilder builder;
  builder.phdrs.erase(builder.phdrs.begin(), builder.phdrs.begin() + ElfBuilder::kNote);
  builder.phdrs.push_back(ElfBuilder::load(0x1000, 0x8000, 0, 0, PF_R | PF_X));
  expect_invalid(builder, "image has no loadable segment");
}

TEST(ElfLoaderTest, RejectsEntryOutsideAnySegment) {
  ElfBuilder builder;
  builder.header.e_entry = 0x8180;  // one past the end of text
  expect_invalid(builder, "entry point 0x8180 is not inside an executable segment");
}

TEST(ElfLoaderTest, RejectsEntryInNonExecutableSegment) {
  ElfBuilder builder;
  builder.header.e_entry = 0xa000;  // data
  expect_invalid(builder, "entry point 0xa000 is not inside an executable segment");
}

// ---- Rejections: notes and the ABI version ----------------------------------------------------

TEST(ElfLoaderTest, RejectsNoteAreaPastEndOfFile) {
  ElfBuilder builder;
  builder.phdrs[ElfBuilder::kNote].p_offset = 0x3030;
  expect_invalid(builder, "note segment 3 file range [0x3030, +0x18) runs past the end");
}

TEST(ElfLoaderTest, RejectsTruncatedNoteHeader) {
  ElfBuilder builder;
  std::vector<uint8_t> notes = tenon_note(tenon::abi::kVersion);
  notes.resize(notes.size() + 8, 0);  // a second note with only 8 of its 12 header bytes
  builder.set_notes(notes);
  expect_invalid(builder, "note at file offset 0x218 in segment 3: header runs past the end");
}

TEST(ElfLoaderTest, RejectsNoteNameRunningPastNoteArea) {
  ElfBuilder builder;
  std::vector<uint8_t> notes = tenon_note(tenon::abi::kVersion);
  const uint32_t huge_name = 0xffffffff;
  std::memcpy(notes.data(), &huge_name, sizeof(huge_name));
  builder.set_notes(notes);
  expect_invalid(builder, "4294967295-byte name runs past the end of the note area");
}

TEST(ElfLoaderTest, RejectsNoteDescriptorRunningPastNoteArea) {
  ElfBuilder builder;
  std::vector<uint8_t> notes = tenon_note(tenon::abi::kVersion);
  const uint32_t huge_descriptor = 0xfffffffd;  // padding it up must not wrap either
  std::memcpy(notes.data() + 4, &huge_descriptor, sizeof(huge_descriptor));
  builder.set_notes(notes);
  expect_invalid(builder, "4294967293-byte descriptor runs past the end of the note area");
}

TEST(ElfLoaderTest, RejectsTenonNoteWithWrongDescriptorSize) {
  ElfBuilder builder;
  std::vector<uint8_t> notes;
  append_note(notes, "Tenon", tenon::abi::kNoteTypeAbiVersion, {1, 0, 0, 0, 0, 0, 0, 0});
  builder.set_notes(notes);
  expect_invalid(builder, "Tenon ABI note has a 8-byte descriptor, expected 4");
}

TEST(ElfLoaderTest, RejectsTwoTenonNotes) {
  ElfBuilder builder;
  std::vector<uint8_t> notes = tenon_note(tenon::abi::kVersion);
  std::vector<uint8_t> second = tenon_note(7);
  notes.insert(notes.end(), second.begin(), second.end());
  builder.set_notes(notes);
  expect_invalid(builder, "more than one Tenon ABI note");
}

TEST(ElfLoaderTest, FindsTenonNoteAmongOtherNotes) {
  ElfBuilder builder;
  std::vector<uint8_t> notes;
  append_note(notes, "GNU", NT_GNU_BUILD_ID, {1, 2, 3, 4, 5, 6, 7});
  append_note(notes, "Tenon", 99, abi_descriptor(7));  // another Tenon type
  append_note(notes, "Tenon", tenon::abi::kNoteTypeAbiVersion,
              abi_descriptor(tenon::abi::kVersion));
  builder.set_notes(notes);
  absl::StatusOr<ElfImage> image = parse(builder);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->abi_version, tenon::abi::kVersion);
}

TEST(ElfLoaderTest, RejectsImageWithoutTenonNote) {
  ElfBuilder builder;
  std::vector<uint8_t> notes;
  append_note(notes, "GNU", NT_GNU_BUILD_ID, {1, 2, 3, 4});
  builder.set_notes(notes);
  expect_error(parse(builder), absl::StatusCode::kFailedPrecondition,
               "image carries no Tenon ABI note");
}

TEST(ElfLoaderTest, RejectsImageWithoutNoteSegment) {
  ElfBuilder builder;
  builder.phdrs.pop_back();
  expect_error(parse(builder), absl::StatusCode::kFailedPrecondition,
               "image carries no Tenon ABI note");
}

TEST(ElfLoaderTest, RejectsAbiVersionMismatch) {
  ElfBuilder builder;
  builder.set_notes(tenon_note(7));
  expect_error(parse(builder), absl::StatusCode::kFailedPrecondition,
               "image was built for Tenon ABI version 7, this Mortise supports version 1");
}

// ---- A real image, linked by the real toolchain with tenon/plat/image.ld --------------

#ifdef TENON_HELLO_IMAGE_KVM
// hello as linked for each engine: the same loadable shape, and the platform note naming it.
TEST(ElfLoaderTest, RealHelloImagesParseAndLoadWithTheirPlatform) {
  for (const auto& [path, platform] :
       {std::pair{TENON_HELLO_IMAGE_KVM, tenon::abi::Platform::kMortise},
        std::pair{TENON_HELLO_IMAGE_QEMU, tenon::abi::Platform::kQemu}}) {
    SCOPED_TRACE(path);
    std::ifstream stream(path, std::ios::binary);
    ASSERT_TRUE(stream) << "cannot open " << path;
    const std::vector<uint8_t> file{std::istreambuf_iterator<char>(stream),
                                    std::istreambuf_iterator<char>()};
    const ElfLimits limits{.lowest_address = tenon::abi::kImageBase,
                           .highest_address = 64ull << 20};
    absl::StatusOr<ElfImage> image = parse_elf(file, limits, tenon::abi::kVersion);
    ASSERT_TRUE(image.ok()) << image.status();
    EXPECT_EQ(image->abi_version, tenon::abi::kVersion);
    EXPECT_EQ(image->platform, platform);
    ASSERT_FALSE(image->segments.empty());
    EXPECT_EQ(image->segments.front().address, tenon::abi::kImageBase);
    EXPECT_EQ(image->segments.front().permissions, kRead | kExecute);
    absl::StatusOr<GuestMemory> memory = GuestMemory::create(64ull << 20);
    ASSERT_TRUE(memory.ok()) << memory.status();
    ASSERT_TRUE(load_elf(*image, file, *memory).ok());
  }
}
#endif

}  // namespace
}  // namespace mortise
