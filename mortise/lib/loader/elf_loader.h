// Parses and loads Tenon ELF images. The file is untrusted: every header, count, offset and size
// is validated before use, and a malformed image is refused with an error naming the problem.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "guest_memory.h"
#include "tenon/abi.h"

namespace mortise {

struct ImageSegment {
  uint64_t address = 0;      // guest-physical (== virtual) start, page aligned
  uint64_t memory_size = 0;  // bytes in memory (>= file_size; the rest is zero)
  uint64_t file_offset = 0;
  uint64_t file_size = 0;
  uint8_t permissions = 0;  // GuestPermission bits (guest_memory.h)
};

struct ElfImage {
  uint64_t entry = 0;
  uint32_t abi_version = 0;  // from the Tenon ABI note
  // From the Tenon platform note: which engine can run the image (kMortise without a note).
  tenon::abi::Platform platform = tenon::abi::Platform::kMortise;
  std::vector<ImageSegment> segments;  // PT_LOAD segments with memory_size > 0, sorted by address
  uint64_t end = 0;                    // first byte past the highest segment
};

struct ElfLimits {
  uint64_t lowest_address = 0;   // segments must start at or above this
  uint64_t highest_address = 0;  // and end at or below this
  uint64_t max_file_size = 64ull << 20;
  uint16_t max_program_headers = 64;
};

// Validates `file` as a Tenon x86_64 executable whose segments lie in the limits' window.
// Errors are INVALID_ARGUMENT with a message such as "ELF: segment 2 file range [..] runs past
// the end of the 1234-byte file". A missing ABI note or an ABI version other than
// `expected_abi_version` is FAILED_PRECONDITION naming both versions.
absl::StatusOr<ElfImage> parse_elf(std::span<const uint8_t> file, const ElfLimits& limits,
                                   uint32_t expected_abi_version);

// Copies the segments of a parsed image into guest memory and zeroes their tails.
absl::Status load_elf(const ElfImage& image, std::span<const uint8_t> file,
                      const GuestMemory& memory);

}  // namespace mortise
