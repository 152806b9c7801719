// Fuzzes the catalog's parsers of untrusted files: library.yaml, app specs, device profiles
// (yaml-cpp plus our strict field readers) and the archive footprint reader. Each must return a
// Status for any input; none may crash, hang or throw.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "archive.h"
#include "device.h"
#include "manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)tenon::controller::parse_library_manifest(text, "fuzz/library.yaml");
  (void)tenon::controller::parse_app_spec(text, "fuzz/app.yaml");
  (void)tenon::controller::parse_device_profile(text, "fuzz/device.yaml");
  (void)tenon::controller::measure_archive(std::span<const uint8_t>(data, size), "fuzz.a");
  return 0;
}
