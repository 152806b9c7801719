// Shared helpers for the controller tests: the real catalog of this tree, example files, and
// temporary directories.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/status/statusor.h"
#include "catalog.h"
#include "composition.h"
#include "device.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "manifest.h"

namespace tenon::controller::testing {

inline CatalogPaths real_catalog_paths() {
  CatalogPaths paths;
  paths.source_root = TENON_SOURCE_DIR;
  paths.archive_root = TENON_ARCHIVE_ROOT;
  return paths;
}

inline const Catalog& real_catalog() {
  static const Catalog* catalog = [] {
    absl::StatusOr<Catalog> loaded = Catalog::load(real_catalog_paths());
    if (!loaded.ok()) {
      ADD_FAILURE() << loaded.status();
      std::abort();
    }
    return new Catalog(std::move(*loaded));
  }();
  return *catalog;
}

inline std::string example(const std::string& name) {
  return std::string(EXAMPLES_DIR) + "/" + name;
}

inline AppSpec load_app(const std::string& name) {
  absl::StatusOr<std::string> text = read_text_file(example(name));
  EXPECT_TRUE(text.ok()) << text.status();
  absl::StatusOr<AppSpec> spec = parse_app_spec(*text, "deploy/examples/" + name);
  EXPECT_TRUE(spec.ok()) << spec.status();
  return *spec;
}

inline DeviceProfile load_device(const std::string& name) {
  absl::StatusOr<std::string> text = read_text_file(example(name));
  EXPECT_TRUE(text.ok()) << text.status();
  absl::StatusOr<DeviceProfile> device = parse_device_profile(*text, "deploy/examples/" + name);
  EXPECT_TRUE(device.ok()) << device.status();
  return *device;
}

// A fresh directory under the test's temporary area, removed on destruction.
class TemporaryDirectory {
 public:
  TemporaryDirectory() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base ? base : "/tmp") + "/tenon-controller-XXXXXX";
    path_ = mkdtemp(pattern.data()) ? pattern : "";
  }
  ~TemporaryDirectory() {
    std::error_code error;
    std::filesystem::remove_all(path_, error);
  }
  const std::string& path() const { return path_; }
  std::string write(const std::string& relative, const std::string& contents) const {
    std::filesystem::path file = std::filesystem::path(path_) / relative;
    std::filesystem::create_directories(file.parent_path());
    std::ofstream(file) << contents;
    return file.string();
  }

 private:
  std::string path_;
};

}  // namespace tenon::controller::testing
