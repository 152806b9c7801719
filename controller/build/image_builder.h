// The image builder: links a composition's archives, its program and a generated configuration
// object into a Tenon ELF with the real toolchain, content-addressed and cached on disk.
//
// Cache layout: <cache_dir>/<build key>/image.elf and image.sha256, where the build key is the
// sha256 of everything the link reads (catalog digest, program, libraries and config values,
// toolchain, link options, linker script). A second request for the same key is a lookup.
// Entries are written to a temporary directory and renamed into place, so a reader never sees a
// half-written image.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "catalog.h"
#include "composition.h"

namespace tenon::controller {

struct ImageBuilderConfig {
  std::string compiler;                   // the C++ driver that links freestanding images (g++)
  std::vector<std::string> link_options;  // TENON_FREESTANDING_LINK_OPTIONS
  std::string linker_script;              // tenon/plat/image.ld
  std::string cache_dir;
};

struct BuiltImage {
  std::string path;          // inside the cache; copy it out, never write to it
  std::string image_digest;  // "sha256:<hex>" of the ELF bytes
  std::string build_key;
  uint64_t size_bytes = 0;
  uint64_t image_end = 0;  // highest address a PT_LOAD segment reaches
  bool cache_hit = false;
};

// The configuration object's assembly source (deterministic; it names no path).
std::string config_object_source(const Composition& composition);

class ImageBuilder {
 public:
  explicit ImageBuilder(ImageBuilderConfig config);
  absl::StatusOr<BuiltImage> build(const Catalog& catalog, const Composition& composition);

 private:
  ImageBuilderConfig config_;
  std::string linker_script_digest_;  // read once
};

// Reads an ELF64 executable's program headers and returns the end of its last PT_LOAD segment.
absl::StatusOr<uint64_t> loaded_image_end(const std::string& path);

}  // namespace tenon::controller
