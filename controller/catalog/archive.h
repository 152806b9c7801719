// Footprints measured from built micro-library archives: an `ar` archive of ELF64 relocatable
// objects, read from bytes that are treated as untrusted (every offset and size is checked).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "absl/status/statusor.h"

namespace tenon::controller {

// Bytes of allocated sections by kind, summed over every member of an archive. `*_bound` adds
// each section's worst-case alignment padding, an upper bound on what the sections can occupy
// once linked (the linker pads each input section to its alignment).
struct Footprint {
  uint64_t text_bytes = 0;    // SHF_EXECINSTR
  uint64_t rodata_bytes = 0;  // allocated, neither writable nor executable
  uint64_t data_bytes = 0;    // SHF_WRITE, with contents
  uint64_t bss_bytes = 0;     // SHT_NOBITS
  uint64_t text_bound = 0;
  uint64_t rodata_bound = 0;
  uint64_t data_bound = 0;  // data and bss together: they share one segment
  uint64_t members = 0;

  uint64_t total_bytes() const { return text_bytes + rodata_bytes + data_bytes + bss_bytes; }
  Footprint& operator+=(const Footprint& other);
};

// Parses an archive's bytes; `name` only labels errors.
absl::StatusOr<Footprint> measure_archive(std::span<const uint8_t> bytes, const std::string& name);
// Reads the file at `path` and measures it.
absl::StatusOr<Footprint> measure_archive_file(const std::string& path);

}  // namespace tenon::controller
