// The catalog: every micro-library manifest of Tenon and Mortise, every example app, and the
// footprints measured from the built per-arch archives. Loading validates the whole set (names,
// references, cycles) so the composition engine can trust it.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "archive.h"
#include "manifest.h"

namespace tenon::controller {

struct CatalogPaths {
  std::string source_root;   // holds tenon/ and mortise/ with their manifests
  std::string archive_root;  // holds lib/<arch>/lib<name>.a and apps/<arch>/lib<name>.a
  std::string arch = "x86_64";
  // Tests that build synthetic catalogs have no archives; their libraries are then unmeasured
  // (footprint 0) and the image builder refuses them. Real catalogs require every archive.
  bool allow_missing_archives = false;
};

struct CatalogLibrary {
  LibraryManifest manifest;
  Footprint footprint;  // zero for Mortise libraries (host code, not linked into images)
  bool measured = false;
  std::string archive_path;  // empty for Mortise libraries
};

struct CatalogApp {
  AppSpec spec;
  Footprint footprint;
  bool measured = false;
  std::string archive_path;
};

class Catalog {
 public:
  static absl::StatusOr<Catalog> load(const CatalogPaths& paths);

  const std::vector<CatalogLibrary>& libraries() const { return libraries_; }
  const std::vector<CatalogApp>& apps() const { return apps_; }
  const CatalogLibrary* find_library(LibraryLayer layer, const std::string& name) const;
  const CatalogApp* find_app(const std::string& name) const;
  // Libraries of `layer` that provide `capability`, in name order.
  std::vector<const CatalogLibrary*> providers(LibraryLayer layer,
                                               const std::string& capability) const;
  // sha256 over every manifest and archive read, in path order: identifies this catalog.
  const std::string& digest() const { return digest_; }
  const CatalogPaths& paths() const { return paths_; }

 private:
  CatalogPaths paths_;
  std::vector<CatalogLibrary> libraries_;  // sorted by layer, then name
  std::vector<CatalogApp> apps_;           // sorted by name
  std::string digest_;
};

// Cross-file checks over already parsed manifests; exposed for tests and the fuzzer.
absl::Status validate_libraries(const std::vector<LibraryManifest>& manifests);

}  // namespace tenon::controller
