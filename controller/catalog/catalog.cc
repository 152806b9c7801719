// Catalog loading and whole-catalog validation; see catalog.h.
#include "catalog.h"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "crypto/sha256.h"

namespace tenon::controller {
namespace {

namespace fs = std::filesystem;

absl::Status located(const LibraryManifest& manifest, const std::string& field,
                     const std::string& message) {
  std::string top = field.substr(0, field.find('['));
  return absl::InvalidArgumentError(absl::StrFormat("%s:%d: %s: %s", manifest.location.file,
                                                    manifest.line_of(top), field, message));
}

// Every file called `file_name` below `directory`, sorted so loading order (and the digest)
// never depends on the file system's order.
std::vector<std::string> find_files(const fs::path& directory, const std::string& file_name) {
  std::vector<std::string> found;
  std::error_code error;
  if (!fs::is_directory(directory, error)) return found;
  for (auto it = fs::recursive_directory_iterator(
           directory, fs::directory_options::skip_permission_denied, error);
       !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
    if (it->is_regular_file(error) && it->path().filename() == file_name) {
      found.push_back(it->path().string());
    }
  }
  std::sort(found.begin(), found.end());
  return found;
}

std::string relative_to(const std::string& path, const std::string& root) {
  std::error_code error;
  fs::path relative = fs::relative(path, root, error);
  return error ? path : relative.string();
}

}  // namespace

absl::Status validate_libraries(const std::vector<LibraryManifest>& manifests) {
  std::map<std::pair<LibraryLayer, std::string>, const LibraryManifest*> by_name;
  std::map<std::pair<LibraryLayer, std::string>, std::vector<const LibraryManifest*>> providers;
  for (const LibraryManifest& manifest : manifests) {
    auto [it, inserted] = by_name.emplace(std::pair{manifest.layer, manifest.name}, &manifest);
    if (!inserted) {
      return located(manifest, "name",
                     absl::StrCat("library '", manifest.name, "' is already declared by ",
                                  it->second->location.file));
    }
    for (const std::string& capability : manifest.provides) {
      providers[{manifest.layer, capability}].push_back(&manifest);
    }
  }
  for (const LibraryManifest& manifest : manifests) {
    for (const char* field : {"requires", "uses"}) {
      const auto& list =
          std::string_view(field) == "uses" ? manifest.uses : manifest.requires_capabilities;
      for (size_t i = 0; i < list.size(); ++i) {
        if (!providers.contains({manifest.layer, list[i]})) {
          return located(
              manifest, absl::StrCat(field, "[", i, "]"),
              absl::StrCat("no ", layer_name(manifest.layer), " library provides '", list[i], "'"));
        }
      }
    }
    for (size_t i = 0; i < manifest.host_requires.size(); ++i) {
      if (!providers.contains({LibraryLayer::kMortise, manifest.host_requires[i]})) {
        return located(
            manifest, absl::StrCat("host_requires[", i, "]"),
            absl::StrCat("no mortise library provides '", manifest.host_requires[i], "'"));
      }
    }
    for (size_t i = 0; i < manifest.conflicts.size(); ++i) {
      if (!by_name.contains({manifest.layer, manifest.conflicts[i]})) {
        return located(manifest, absl::StrCat("conflicts[", i, "]"),
                       absl::StrCat("conflicts with '", manifest.conflicts[i], "', which is not a ",
                                    layer_name(manifest.layer), " library in the catalog"));
      }
    }
    if (manifest.scheduling != SchedulerKind::kNone &&
        std::find(manifest.provides.begin(), manifest.provides.end(), "sched-policy") ==
            manifest.provides.end()) {
      return located(manifest, "scheduling", "only a sched-policy provider names a scheduling");
    }
  }

  // `requires` must be acyclic (it is the initialisation order); `uses` may be mutual. An edge
  // goes from a library to every provider of what it requires.
  enum class Mark { kNew, kOnPath, kDone };
  std::map<const LibraryManifest*, Mark> marks;
  std::vector<const LibraryManifest*> path;
  std::function<absl::Status(const LibraryManifest*)> visit =
      [&](const LibraryManifest* library) -> absl::Status {
    marks[library] = Mark::kOnPath;
    path.push_back(library);
    for (const std::string& capability : library->requires_capabilities) {
      for (const LibraryManifest* provider : providers[{library->layer, capability}]) {
        if (marks[provider] == Mark::kOnPath) {
          std::vector<std::string> names;
          auto start = std::find(path.begin(), path.end(), provider);
          for (auto it = start; it != path.end(); ++it) names.push_back((*it)->name);
          names.push_back(provider->name);
          return located(*provider, "requires",
                         absl::StrCat("dependency cycle: ", absl::StrJoin(names, " -> "),
                                      " (use `uses` for a mutual link-time dependency)"));
        }
        if (marks[provider] == Mark::kNew) {
          if (absl::Status status = visit(provider); !status.ok()) return status;
        }
      }
    }
    path.pop_back();
    marks[library] = Mark::kDone;
    return absl::OkStatus();
  };
  for (const LibraryManifest& manifest : manifests) {
    if (marks[&manifest] == Mark::kNew) {
      if (absl::Status status = visit(&manifest); !status.ok()) return status;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Catalog> Catalog::load(const CatalogPaths& paths) {
  Catalog catalog;
  catalog.paths_ = paths;
  crypto::Sha256 digest;
  digest.add_field(paths.arch);

  std::vector<LibraryManifest> manifests;
  for (const char* layer_root : {"tenon", "mortise"}) {
    for (const std::string& file :
         find_files(fs::path(paths.source_root) / layer_root, "library.yaml")) {
      absl::StatusOr<std::string> text = read_text_file(file);
      if (!text.ok()) return text.status();
      const std::string name = relative_to(file, paths.source_root);
      absl::StatusOr<LibraryManifest> manifest = parse_library_manifest(*text, name);
      if (!manifest.ok()) return manifest.status();
      const bool expected_layer =
          (std::string_view(layer_root) == "tenon") == (manifest->layer == LibraryLayer::kTenon);
      if (!expected_layer) {
        return located(
            *manifest, "layer",
            absl::StrCat("a manifest under ", layer_root, "/ must say layer: ", layer_root));
      }
      digest.add_field(name);
      digest.add_field(*text);
      manifests.push_back(std::move(*manifest));
    }
  }
  if (manifests.empty()) {
    return absl::NotFoundError(
        absl::StrCat(paths.source_root, ": no library.yaml under tenon/ or mortise/"));
  }
  if (absl::Status status = validate_libraries(manifests); !status.ok()) return status;

  std::set<std::string> tenon_capabilities;
  for (LibraryManifest& manifest : manifests) {
    CatalogLibrary library;
    if (manifest.layer == LibraryLayer::kTenon) {
      for (const std::string& capability : manifest.provides) tenon_capabilities.insert(capability);
      const bool supports_arch = std::find(manifest.archs.begin(), manifest.archs.end(),
                                           paths.arch) != manifest.archs.end();
      if (supports_arch) {
        library.archive_path = (fs::path(paths.archive_root) / "lib" / paths.arch /
                                absl::StrCat("lib", manifest.name, ".a"))
                                   .string();
        absl::StatusOr<Footprint> footprint = measure_archive_file(library.archive_path);
        if (footprint.ok()) {
          library.footprint = *footprint;
          library.measured = true;
          absl::StatusOr<std::string> archive_digest =
              crypto::sha256_file_hex(library.archive_path);
          if (!archive_digest.ok()) return archive_digest.status();
          digest.add_field(library.archive_path.substr(paths.archive_root.size()));
          digest.add_field(*archive_digest);
        } else if (!(paths.allow_missing_archives && absl::IsNotFound(footprint.status()))) {
          return absl::Status(footprint.status().code(),
                              absl::StrCat("library ", manifest.name, " (", manifest.location.file,
                                           "): ", footprint.status().message()));
        }
      }
    }
    library.manifest = std::move(manifest);
    catalog.libraries_.push_back(std::move(library));
  }
  std::sort(catalog.libraries_.begin(), catalog.libraries_.end(),
            [](const CatalogLibrary& a, const CatalogLibrary& b) {
              return std::pair{a.manifest.layer, a.manifest.name} <
                     std::pair{b.manifest.layer, b.manifest.name};
            });

  for (const std::string& file :
       find_files(fs::path(paths.source_root) / "tenon" / "apps", "app.yaml")) {
    absl::StatusOr<std::string> text = read_text_file(file);
    if (!text.ok()) return text.status();
    const std::string name = relative_to(file, paths.source_root);
    absl::StatusOr<AppSpec> spec = parse_app_spec(*text, name);
    if (!spec.ok()) return spec.status();
    for (size_t i = 0; i < spec->needs.size(); ++i) {
      if (!tenon_capabilities.contains(spec->needs[i])) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s:%d: needs[%d]: no tenon library provides '%s'", name,
                            spec->line_of("needs"), i, spec->needs[i]));
      }
    }
    if (catalog.find_app(spec->name) != nullptr) {
      return absl::InvalidArgumentError(absl::StrFormat("%s:%d: name: app '%s' is declared twice",
                                                        name, spec->line_of("name"), spec->name));
    }
    digest.add_field(name);
    digest.add_field(*text);
    CatalogApp app;
    app.archive_path =
        (fs::path(paths.archive_root) / "apps" / paths.arch / absl::StrCat("lib", spec->name, ".a"))
            .string();
    absl::StatusOr<Footprint> footprint = measure_archive_file(app.archive_path);
    if (footprint.ok()) {
      app.footprint = *footprint;
      app.measured = true;
      absl::StatusOr<std::string> archive_digest = crypto::sha256_file_hex(app.archive_path);
      if (!archive_digest.ok()) return archive_digest.status();
      digest.add_field(app.archive_path.substr(paths.archive_root.size()));
      digest.add_field(*archive_digest);
    } else if (!(paths.allow_missing_archives && absl::IsNotFound(footprint.status()))) {
      return absl::Status(
          footprint.status().code(),
          absl::StrCat("app ", spec->name, " (", name, "): ", footprint.status().message()));
    }
    app.spec = std::move(*spec);
    catalog.apps_.push_back(std::move(app));
    std::sort(catalog.apps_.begin(), catalog.apps_.end(),
              [](const CatalogApp& a, const CatalogApp& b) { return a.spec.name < b.spec.name; });
  }
  catalog.digest_ = digest.hex_digest();
  return catalog;
}

const CatalogLibrary* Catalog::find_library(LibraryLayer layer, const std::string& name) const {
  for (const CatalogLibrary& library : libraries_) {
    if (library.manifest.layer == layer && library.manifest.name == name) return &library;
  }
  return nullptr;
}

const CatalogApp* Catalog::find_app(const std::string& name) const {
  for (const CatalogApp& app : apps_) {
    if (app.spec.name == name) return &app;
  }
  return nullptr;
}

std::vector<const CatalogLibrary*> Catalog::providers(LibraryLayer layer,
                                                      const std::string& capability) const {
  std::vector<const CatalogLibrary*> found;
  for (const CatalogLibrary& library : libraries_) {
    if (library.manifest.layer != layer) continue;
    const auto& provides = library.manifest.provides;
    if (std::find(provides.begin(), provides.end(), capability) != provides.end()) {
      found.push_back(&library);
    }
  }
  return found;
}

}  // namespace tenon::controller
