// Validation and loading of Tenon ELF images (see elf_loader.h). Every value read from the file is
// treated as hostile: sizes and offsets are checked with overflow-checked arithmetic before use.
#include "elf_loader.h"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "tenon/abi.h"

namespace mortise {
namespace {

constexpr uint64_t kPageSize = tenon::abi::kPageSize;
static_assert(kPageSize == 4096);

absl::Status invalid(absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat("ELF: ", message));
}

// Reads a trivially copyable header out of the file; the caller has checked the bounds. The file
// has no alignment guarantee, so headers are copied rather than cast.
template <typename T>
T read_at(std::span<const uint8_t> file, uint64_t offset) {
  T value;
  std::memcpy(&value, file.data() + offset, sizeof(T));
  return value;
}

// True when [offset, offset + size) lies inside a file of `file_size` bytes, without wrapping.
bool range_in_file(uint64_t offset, uint64_t size, uint64_t file_size) {
  return offset <= file_size && size <= file_size - offset;
}

uint8_t permissions_from_flags(uint32_t flags) {
  uint8_t permissions = 0;
  if (flags & PF_R) permissions |= static_cast<uint8_t>(GuestPermission::kRead);
  if (flags & PF_W) permissions |= static_cast<uint8_t>(GuestPermission::kWrite);
  if (flags & PF_X) permissions |= static_cast<uint8_t>(GuestPermission::kExecute);
  return permissions;
}

absl::Status check_header(const Elf64_Ehdr& header, uint64_t file_size, const ElfLimits& limits) {
  if (std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0) {
    return invalid("bad magic: not an ELF file");
  }
  if (header.e_ident[EI_CLASS] != ELFCLASS64) {
    return invalid(absl::StrCat("class ", header.e_ident[EI_CLASS], " is not ELFCLASS64"));
  }
  if (header.e_ident[EI_DATA] != ELFDATA2LSB) {
    return invalid(
        absl::StrCat("data encoding ", header.e_ident[EI_DATA], " is not little-endian"));
  }
  if (header.e_ident[EI_VERSION] != EV_CURRENT || header.e_version != EV_CURRENT) {
    return invalid(absl::StrCat("ELF version ", header.e_ident[EI_VERSION], "/", header.e_version,
                                " is not EV_CURRENT"));
  }
  if (header.e_type != ET_EXEC) {
    return invalid(absl::StrCat("type ", header.e_type, " is not ET_EXEC (a static executable)"));
  }
  if (header.e_machine != EM_X86_64) {
    return invalid(absl::StrCat("machine ", header.e_machine, " is not EM_X86_64"));
  }
  if (header.e_ehsize != sizeof(Elf64_Ehdr)) {
    return invalid(
        absl::StrCat("e_ehsize is ", header.e_ehsize, ", expected ", sizeof(Elf64_Ehdr)));
  }
  if (header.e_phentsize != sizeof(Elf64_Phdr)) {
    return invalid(
        absl::StrCat("e_phentsize is ", header.e_phentsize, ", expected ", sizeof(Elf64_Phdr)));
  }
  if (header.e_phnum == 0) {
    return invalid("image has no program headers");
  }
  // PN_XNUM means the real count lives in section 0; a Tenon image never needs that many.
  if (header.e_phnum == PN_XNUM || header.e_phnum > limits.max_program_headers) {
    return invalid(absl::StrCat("image has ", header.e_phnum, " program headers, more than the ",
                                limits.max_program_headers, " allowed"));
  }
  const uint64_t table_size = uint64_t{header.e_phnum} * sizeof(Elf64_Phdr);  // < 2^22
  if (!range_in_file(header.e_phoff, table_size, file_size)) {
    return invalid(absl::StrFormat(
        "program header table at offset %#x (%d bytes) runs past the end of the %d-byte file",
        header.e_phoff, table_size, file_size));
  }
  return absl::OkStatus();
}

// Walks the notes of one PT_NOTE segment. Each note is a 12-byte header (namesz, descsz, type)
// followed by the name and the descriptor, each padded to 4 bytes.
struct TenonNotes {
  std::optional<uint32_t> abi_version;
  std::optional<uint32_t> platform;
};

absl::Status scan_notes(std::span<const uint8_t> file, const Elf64_Phdr& note_header,
                        size_t segment_index, TenonNotes& notes) {
  if (!range_in_file(note_header.p_offset, note_header.p_filesz, file.size())) {
    return invalid(absl::StrFormat(
        "note segment %d file range [%#x, +%#x) runs past the end of the %d-byte file",
        segment_index, note_header.p_offset, note_header.p_filesz, file.size()));
  }
  const uint64_t area_end = note_header.p_offset + note_header.p_filesz;  // checked above
  uint64_t offset = note_header.p_offset;
  while (offset < area_end) {
    if (area_end - offset < sizeof(Elf64_Nhdr)) {
      return invalid(absl::StrFormat(
          "note at file offset %#x in segment %d: header runs past the end of the note area",
          offset, segment_index));
    }
    const auto note = read_at<Elf64_Nhdr>(file, offset);
    const uint64_t name_offset = offset + sizeof(Elf64_Nhdr);
    // namesz and descsz are 32-bit, so padding them cannot overflow 64 bits.
    const uint64_t name_padded = (uint64_t{note.n_namesz} + 3) & ~uint64_t{3};
    const uint64_t desc_padded = (uint64_t{note.n_descsz} + 3) & ~uint64_t{3};
    uint64_t desc_offset = 0;
    uint64_t next_offset = 0;
    if (note.n_namesz > area_end - name_offset ||
        __builtin_add_overflow(name_offset, name_padded, &desc_offset)) {
      return invalid(absl::StrFormat(
          "note at file offset %#x in segment %d: %d-byte name runs past the end of the note "
          "area",
          offset, segment_index, note.n_namesz));
    }
    // The name fits, but its padding may not; that only matters when a descriptor follows.
    if ((note.n_descsz > 0 && (desc_offset > area_end || note.n_descsz > area_end - desc_offset)) ||
        __builtin_add_overflow(desc_offset, desc_padded, &next_offset)) {
      return invalid(absl::StrFormat(
          "note at file offset %#x in segment %d: %d-byte descriptor runs past the end of the "
          "note area",
          offset, segment_index, note.n_descsz));
    }
    const bool is_tenon_note = note.n_namesz == sizeof(tenon::abi::kNoteName) &&
                               std::memcmp(file.data() + name_offset, tenon::abi::kNoteName,
                                           sizeof(tenon::abi::kNoteName)) == 0;
    std::optional<uint32_t>* field = nullptr;
    const char* what = "";
    if (is_tenon_note && note.n_type == tenon::abi::kNoteTypeAbiVersion) {
      field = &notes.abi_version;
      what = "ABI";
    } else if (is_tenon_note && note.n_type == tenon::abi::kNoteTypePlatform) {
      field = &notes.platform;
      what = "platform";
    }
    if (field != nullptr) {
      if (note.n_descsz != sizeof(uint32_t)) {
        return invalid(absl::StrCat("Tenon ", what, " note has a ", note.n_descsz,
                                    "-byte descriptor, expected ", sizeof(uint32_t)));
      }
      if (field->has_value()) {
        return invalid(absl::StrCat("image carries more than one Tenon ", what, " note"));
      }
      *field = read_at<uint32_t>(file, desc_offset);
    }
    offset = next_offset;  // may pass area_end when the last note's padding is cut off
  }
  return absl::OkStatus();
}

// A PT_LOAD segment being validated, remembering its program header index for messages.
struct LoadSegment {
  ImageSegment segment;
  size_t index = 0;
  uint64_t page_end = 0;  // end rounded up to the page: the pages this segment's permissions own
};

absl::StatusOr<std::optional<LoadSegment>> check_load_segment(const Elf64_Phdr& header,
                                                              size_t index, uint64_t file_size,
                                                              const ElfLimits& limits) {
  if (header.p_filesz > header.p_memsz) {
    return invalid(absl::StrFormat("segment %d has p_filesz %#x larger than p_memsz %#x", index,
                                   header.p_filesz, header.p_memsz));
  }
  if (!range_in_file(header.p_offset, header.p_filesz, file_size)) {
    return invalid(
        absl::StrFormat("segment %d file range [%#x, +%#x) runs past the end of the %d-byte file",
                        index, header.p_offset, header.p_filesz, file_size));
  }
  if (header.p_memsz == 0) return std::optional<LoadSegment>();  // occupies no memory
  if (header.p_vaddr % kPageSize != 0) {
    return invalid(absl::StrFormat("segment %d address %#x is not aligned to %d bytes", index,
                                   header.p_vaddr, kPageSize));
  }
  uint64_t end = 0;
  uint64_t page_end = 0;
  if (__builtin_add_overflow(header.p_vaddr, header.p_memsz, &end) ||
      __builtin_add_overflow(end, kPageSize - 1, &page_end)) {
    return invalid(absl::StrFormat("segment %d [%#x, +%#x) wraps around the address space", index,
                                   header.p_vaddr, header.p_memsz));
  }
  page_end &= ~(kPageSize - 1);
  if (header.p_paddr != header.p_vaddr) {
    return invalid(absl::StrFormat(
        "segment %d physical address %#x differs from its virtual address %#x (guest memory is "
        "identity-mapped)",
        index, header.p_paddr, header.p_vaddr));
  }
  const uint64_t window_size = limits.highest_address > limits.lowest_address
                                   ? limits.highest_address - limits.lowest_address
                                   : 0;
  if (header.p_memsz > window_size) {
    return invalid(absl::StrFormat(
        "segment %d memory size %#x is larger than the whole image window of %#x bytes", index,
        header.p_memsz, window_size));
  }
  if (header.p_vaddr < limits.lowest_address || page_end > limits.highest_address) {
    return invalid(absl::StrFormat(
        "segment %d pages [%#x, %#x) lie outside the image window [%#x, %#x)", index,
        header.p_vaddr, page_end, limits.lowest_address, limits.highest_address));
  }
  LoadSegment load;
  load.segment.address = header.p_vaddr;
  load.segment.memory_size = header.p_memsz;
  load.segment.file_offset = header.p_offset;
  load.segment.file_size = header.p_filesz;
  load.segment.permissions = permissions_from_flags(header.p_flags);
  load.index = index;
  load.page_end = page_end;
  return std::optional<LoadSegment>(load);
}

}  // namespace

absl::StatusOr<ElfImage> parse_elf(std::span<const uint8_t> file, const ElfLimits& limits,
                                   uint32_t expected_abi_version) {
  if (file.size() > limits.max_file_size) {
    return invalid(absl::StrCat("file is ", file.size(), " bytes, larger than the limit of ",
                                limits.max_file_size, " bytes"));
  }
  if (file.size() < sizeof(Elf64_Ehdr)) {
    return invalid(absl::StrCat("file is ", file.size(), " bytes, smaller than the ",
                                sizeof(Elf64_Ehdr), "-byte ELF header"));
  }
  const auto header = read_at<Elf64_Ehdr>(file, 0);
  if (absl::Status status = check_header(header, file.size(), limits); !status.ok()) {
    return status;
  }

  std::vector<LoadSegment> loads;
  TenonNotes notes;
  for (size_t index = 0; index < header.e_phnum; ++index) {
    const auto program_header =
        read_at<Elf64_Phdr>(file, header.e_phoff + index * sizeof(Elf64_Phdr));
    if (program_header.p_type == PT_LOAD) {
      absl::StatusOr<std::optional<LoadSegment>> load =
          check_load_segment(program_header, index, file.size(), limits);
      if (!load.ok()) return load.status();
      if (load->has_value()) loads.push_back(**load);
    } else if (program_header.p_type == PT_NOTE) {
      if (absl::Status status = scan_notes(file, program_header, index, notes); !status.ok()) {
        return status;
      }
    }
  }
  if (loads.empty()) return invalid("image has no loadable segment");

  std::sort(loads.begin(), loads.end(), [](const LoadSegment& a, const LoadSegment& b) {
    return a.segment.address < b.segment.address;
  });
  // Each page is mapped with exactly one segment's permissions, so segments may not share one.
  for (size_t i = 1; i < loads.size(); ++i) {
    const LoadSegment& previous = loads[i - 1];
    const LoadSegment& current = loads[i];
    if (previous.page_end > current.segment.address) {
      return invalid(
          absl::StrFormat("segment %d pages [%#x, %#x) overlap segment %d pages [%#x, %#x)",
                          previous.index, previous.segment.address, previous.page_end,
                          current.index, current.segment.address, current.page_end));
    }
  }

  const bool entry_executable = std::any_of(loads.begin(), loads.end(), [&](const LoadSegment& l) {
    return (l.segment.permissions & static_cast<uint8_t>(GuestPermission::kExecute)) != 0 &&
           header.e_entry >= l.segment.address &&
           header.e_entry - l.segment.address < l.segment.memory_size;
  });
  if (!entry_executable) {
    return invalid(
        absl::StrFormat("entry point %#x is not inside an executable segment", header.e_entry));
  }

  if (!notes.abi_version.has_value()) {
    return absl::FailedPreconditionError("ELF: image carries no Tenon ABI note");
  }
  const uint32_t abi_version = *notes.abi_version;
  if (abi_version != expected_abi_version) {
    return absl::FailedPreconditionError(
        absl::StrCat("ELF: image was built for Tenon ABI version ", abi_version,
                     ", this Mortise supports version ", expected_abi_version));
  }
  // Images from before the platform note were all linked for the native engine.
  const uint32_t platform =
      notes.platform.value_or(static_cast<uint32_t>(tenon::abi::Platform::kMortise));
  if (platform != static_cast<uint32_t>(tenon::abi::Platform::kMortise) &&
      platform != static_cast<uint32_t>(tenon::abi::Platform::kQemu)) {
    return invalid(absl::StrCat("Tenon platform note names unknown platform ", platform));
  }

  ElfImage image;
  image.entry = header.e_entry;
  image.abi_version = abi_version;
  image.platform = static_cast<tenon::abi::Platform>(platform);
  image.segments.reserve(loads.size());
  for (const LoadSegment& load : loads) image.segments.push_back(load.segment);
  image.end = loads.back().segment.address + loads.back().segment.memory_size;
  return image;
}

absl::Status load_elf(const ElfImage& image, std::span<const uint8_t> file,
                      const GuestMemory& memory) {
  for (const ImageSegment& segment : image.segments) {
    // The image normally comes from parse_elf on this file; re-check the little that guards
    // host memory in case it does not.
    if (segment.file_size > segment.memory_size ||
        !range_in_file(segment.file_offset, segment.file_size, file.size())) {
      return invalid(absl::StrFormat(
          "segment at %#x: file range [%#x, +%#x) does not fit the %d-byte file or its memory "
          "size %#x",
          segment.address, segment.file_offset, segment.file_size, file.size(),
          segment.memory_size));
    }
    absl::StatusOr<std::span<uint8_t>> destination =
        memory.checked(segment.address, segment.memory_size);
    if (!destination.ok()) {
      return absl::Status(destination.status().code(),
                          absl::StrFormat("ELF: segment at %#x does not fit in guest memory: %s",
                                          segment.address, destination.status().message()));
    }
    if (segment.file_size > 0) {
      std::memcpy(destination->data(), file.data() + segment.file_offset, segment.file_size);
    }
    std::memset(destination->data() + segment.file_size, 0,
                segment.memory_size - segment.file_size);
  }
  return absl::OkStatus();
}

}  // namespace mortise
