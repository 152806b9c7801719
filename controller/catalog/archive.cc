// The ar and ELF64 section-header reader behind archive footprints; see archive.h. Only what the
// footprint needs is decoded: member headers, ELF headers and section headers.
#include "archive.h"

#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tenon::controller {
namespace {

constexpr char kArchiveMagic[] = "!<arch>\n";
constexpr size_t kArchiveMagicSize = 8;
constexpr size_t kMemberHeaderSize = 60;
constexpr size_t kElfHeaderSize = 64;
constexpr size_t kSectionHeaderSize = 64;
constexpr uint32_t kShtNobits = 8;
constexpr uint64_t kShfWrite = 0x1;
constexpr uint64_t kShfAlloc = 0x2;
constexpr uint64_t kShfExecinstr = 0x4;
constexpr uint16_t kEtRel = 1;
constexpr uint16_t kEmX86_64 = 62;
// A section alignment beyond a page would mean a hostile or broken object.
constexpr uint64_t kMaxAlignment = 4096;

template <typename T>
T load(std::span<const uint8_t> bytes, size_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

bool add_overflows(uint64_t a, uint64_t b, uint64_t* sum) {
  return __builtin_add_overflow(a, b, sum);
}

absl::Status measure_object(std::span<const uint8_t> object, const std::string& label,
                            Footprint* footprint) {
  if (object.size() < kElfHeaderSize || std::memcmp(object.data(),
                                                    "\x7f"
                                                    "ELF",
                                                    4) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(label, ": not an ELF object"));
  }
  if (object[4] != 2 || object[5] != 1) {
    return absl::InvalidArgumentError(absl::StrCat(label, ": not a little-endian ELF64 object"));
  }
  if (load<uint16_t>(object, 16) != kEtRel || load<uint16_t>(object, 18) != kEmX86_64) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": not an x86_64 relocatable object (e_type/e_machine)"));
  }
  const uint64_t section_offset = load<uint64_t>(object, 40);
  const uint16_t section_entry_size = load<uint16_t>(object, 58);
  const uint16_t section_count = load<uint16_t>(object, 60);
  if (section_count == 0) {
    // e_shnum 0 with a table present is ELF's extended numbering, which no compiler here emits.
    if (section_offset != 0) {
      return absl::InvalidArgumentError(absl::StrCat(label, ": extended section numbering"));
    }
    return absl::OkStatus();
  }
  if (section_entry_size != kSectionHeaderSize) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: section header size %d, expected 64", label, section_entry_size));
  }
  uint64_t table_end = 0;
  if (add_overflows(section_offset, uint64_t{section_count} * kSectionHeaderSize, &table_end) ||
      table_end > object.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": section header table lies outside the object"));
  }
  for (uint16_t i = 0; i < section_count; ++i) {
    const size_t header = section_offset + size_t{i} * kSectionHeaderSize;
    const uint32_t type = load<uint32_t>(object, header + 4);
    const uint64_t flags = load<uint64_t>(object, header + 8);
    const uint64_t offset = load<uint64_t>(object, header + 24);
    const uint64_t size = load<uint64_t>(object, header + 32);
    uint64_t alignment = load<uint64_t>(object, header + 48);
    if ((flags & kShfAlloc) == 0 || size == 0) continue;
    if (alignment == 0) alignment = 1;
    if (alignment > kMaxAlignment || (alignment & (alignment - 1)) != 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: section %d has alignment %d (a power of two up to 4096 expected)",
                          label, i, alignment));
    }
    uint64_t end = 0;
    if (type != kShtNobits && (add_overflows(offset, size, &end) || end > object.size())) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: section %d's contents lie outside the object", label, i));
    }
    // Contents are bounded by the object; bss sizes are not, so cap them at 1 GiB (the largest
    // guest Mortise builds) to keep every sum below far from overflow.
    if (size > (1ull << 30)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: section %d is larger than 1 GiB", label, i));
    }
    const uint64_t padded = size + alignment - 1;
    if (type == kShtNobits) {
      footprint->bss_bytes += size;
      footprint->data_bound += padded;
    } else if (flags & kShfExecinstr) {
      footprint->text_bytes += size;
      footprint->text_bound += padded;
    } else if (flags & kShfWrite) {
      footprint->data_bytes += size;
      footprint->data_bound += padded;
    } else {
      footprint->rodata_bytes += size;
      footprint->rodata_bound += padded;
    }
  }
  return absl::OkStatus();
}

}  // namespace

Footprint& Footprint::operator+=(const Footprint& other) {
  text_bytes += other.text_bytes;
  rodata_bytes += other.rodata_bytes;
  data_bytes += other.data_bytes;
  bss_bytes += other.bss_bytes;
  text_bound += other.text_bound;
  rodata_bound += other.rodata_bound;
  data_bound += other.data_bound;
  members += other.members;
  return *this;
}

absl::StatusOr<Footprint> measure_archive(std::span<const uint8_t> bytes, const std::string& name) {
  if (bytes.size() < kArchiveMagicSize ||
      std::memcmp(bytes.data(), kArchiveMagic, kArchiveMagicSize) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": not an ar archive (bad magic)"));
  }
  Footprint footprint;
  size_t position = kArchiveMagicSize;
  while (position < bytes.size()) {
    if (bytes.size() - position < kMemberHeaderSize) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: truncated member header at offset %d", name, position));
    }
    const uint8_t* header = bytes.data() + position;
    if (header[58] != '`' || header[59] != '\n') {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: bad member header terminator at offset %d", name, position));
    }
    uint64_t size = 0;
    bool digits = false;
    for (size_t i = 48; i < 58 && header[i] != ' '; ++i) {
      if (header[i] < '0' || header[i] > '9') {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s: bad member size at offset %d", name, position));
      }
      size = size * 10 + (header[i] - '0');  // ten digits cannot overflow 64 bits
      digits = true;
    }
    const size_t data = position + kMemberHeaderSize;
    if (!digits || size > bytes.size() - data) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: member at offset %d runs past the end of the archive", name, position));
    }
    const std::string_view member_name(reinterpret_cast<const char*>(header), 16);
    // "/" is the symbol table, "//" the long-name table, "/SYM64/" the 64-bit symbol table.
    const bool special = member_name.starts_with("/ ") || member_name.starts_with("// ") ||
                         member_name.starts_with("/SYM64/");
    if (!special) {
      const std::string label = absl::StrCat(
          name, "(", std::string(member_name.substr(0, member_name.find_first_of("/ "))), ")");
      if (absl::Status status = measure_object(bytes.subspan(data, size), label, &footprint);
          !status.ok()) {
        return status;
      }
      footprint.members++;
    }
    position = data + size + (size & 1);  // members are padded to even offsets
  }
  if (footprint.members == 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": the archive holds no object"));
  }
  return footprint;
}

absl::StatusOr<Footprint> measure_archive_file(const std::string& path) {
  std::ifstream stream(path, std::ios::binary);
  if (!stream) return absl::NotFoundError(absl::StrCat(path, ": cannot open archive"));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(stream)),
                             std::istreambuf_iterator<char>());
  return measure_archive(bytes, path);
}

}  // namespace tenon::controller
