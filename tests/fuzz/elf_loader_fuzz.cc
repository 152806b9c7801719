// libFuzzer target for the ELF loader: any byte string is either refused with a status or parsed
// into an image that then loads into guest memory without touching anything outside it.
//
// Each input is tried twice: as a file by itself, and XORed over a small valid Tenon image (the
// input's bytes past the template's end are appended). The second form lets the fuzzer reach
// segment, note and ABI checks from an empty corpus instead of first having to guess a whole
// consistent ELF header; the first keeps every byte string reachable.
#include <elf.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "elf_loader.h"
#include "guest_memory.h"
#include "tenon/abi.h"

namespace {

constexpr uint64_t kGuestMemorySize = 1 << 20;
constexpr mortise::ElfLimits kLimits{.lowest_address = 0x8000, .highest_address = kGuestMemorySize};

// ELF header, three program headers (text, bss, note), the ABI note, 16 bytes of text.
std::vector<uint8_t> make_template() {
  constexpr uint64_t kPhdrOffset = sizeof(Elf64_Ehdr);
  constexpr uint64_t kNoteOffset = kPhdrOffset + 3 * sizeof(Elf64_Phdr);
  constexpr uint64_t kNoteSize = sizeof(Elf64_Nhdr) + 8 + 4;
  constexpr uint64_t kTextOffset = kNoteOffset + kNoteSize;
  constexpr uint64_t kTextSize = 16;
  std::vector<uint8_t> file(kTextOffset + kTextSize, 0x90);

  Elf64_Ehdr header{};
  std::memcpy(header.e_ident, ELFMAG, SELFMAG);
  header.e_ident[EI_CLASS] = ELFCLASS64;
  header.e_ident[EI_DATA] = ELFDATA2LSB;
  header.e_ident[EI_VERSION] = EV_CURRENT;
  header.e_type = ET_EXEC;
  header.e_machine = EM_X86_64;
  header.e_version = EV_CURRENT;
  header.e_entry = 0x8000;
  header.e_phoff = kPhdrOffset;
  header.e_ehsize = sizeof(Elf64_Ehdr);
  header.e_phentsize = sizeof(Elf64_Phdr);
  header.e_phnum = 3;
  std::memcpy(file.data(), &header, sizeof(header));

  Elf64_Phdr phdrs[3] = {};
  phdrs[0] = {.p_type = PT_LOAD,
              .p_flags = PF_R | PF_X,
              .p_offset = kTextOffset,
              .p_vaddr = 0x8000,
              .p_paddr = 0x8000,
              .p_filesz = kTextSize,
              .p_memsz = kTextSize,
              .p_align = 0x1000};
  phdrs[1] = {.p_type = PT_LOAD,
              .p_flags = PF_R | PF_W,
              .p_offset = 0,
              .p_vaddr = 0x9000,
              .p_paddr = 0x9000,
              .p_filesz = 0,
              .p_memsz = 0x1000,
              .p_align = 0x1000};
  phdrs[2] = {.p_type = PT_NOTE,
              .p_flags = PF_R,
              .p_offset = kNoteOffset,
              .p_vaddr = 0,
              .p_paddr = 0,
              .p_filesz = kNoteSize,
              .p_memsz = 0,
              .p_align = 4};
  std::memcpy(file.data() + kPhdrOffset, phdrs, sizeof(phdrs));

  const Elf64_Nhdr note{.n_namesz = sizeof(tenon::abi::kNoteName),
                        .n_descsz = 4,
                        .n_type = tenon::abi::kNoteTypeAbiVersion};
  uint8_t* note_bytes = file.data() + kNoteOffset;
  std::memcpy(note_bytes, &note, sizeof(note));
  std::memset(note_bytes + sizeof(note), 0, 8);
  std::memcpy(note_bytes + sizeof(note), tenon::abi::kNoteName, sizeof(tenon::abi::kNoteName));
  std::memcpy(note_bytes + sizeof(note) + 8, &tenon::abi::kVersion, 4);
  return file;
}

// Checks what parse_elf promises about an image it accepts; a broken promise is a crash.
void check_parsed_image(const mortise::ElfImage& image) {
  if (image.segments.empty() || image.abi_version != tenon::abi::kVersion) std::abort();
  uint64_t previous_end = 0;
  bool entry_executable = false;
  for (const mortise::ImageSegment& segment : image.segments) {
    if (segment.address % tenon::abi::kPageSize != 0 || segment.address < previous_end ||
        segment.address < kLimits.lowest_address || segment.memory_size == 0 ||
        segment.file_size > segment.memory_size ||
        segment.memory_size > kLimits.highest_address - segment.address) {
      std::abort();
    }
    if ((segment.permissions & static_cast<uint8_t>(mortise::GuestPermission::kExecute)) &&
        image.entry >= segment.address && image.entry - segment.address < segment.memory_size) {
      entry_executable = true;
    }
    previous_end = segment.address + segment.memory_size;
  }
  if (image.end != previous_end || !entry_executable) std::abort();
}

void parse_and_load(std::span<const uint8_t> file) {
  absl::StatusOr<mortise::ElfImage> image = mortise::parse_elf(file, kLimits, tenon::abi::kVersion);
  if (!image.ok()) return;
  check_parsed_image(*image);
  // A fresh mapping per accepted input keeps runs independent; most inputs are refused.
  absl::StatusOr<mortise::GuestMemory> memory = mortise::GuestMemory::create(kGuestMemorySize);
  if (!memory.ok()) std::abort();
  // Every accepted segment lies inside [0x8000, 1 MiB), so loading must succeed.
  if (!mortise::load_elf(*image, file, *memory).ok()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  parse_and_load(std::span<const uint8_t>(data, size));

  static const std::vector<uint8_t> kTemplate = make_template();
  std::vector<uint8_t> patched = kTemplate;
  if (size > patched.size()) patched.resize(size, 0);
  for (size_t i = 0; i < size; ++i) patched[i] ^= data[i];
  parse_and_load(patched);
  return 0;
}
