// The controller's bridge to the composition engine and the image builder: composes a fleet App
// (tenon.v1.AppSpec) for a device's reported profile and placement, links its image, and puts
// the image into the blob store the agents fetch from. Results are cached by a digest of the
// inputs, so the thousandth device with a known profile costs a map lookup.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "blob_store.h"
#include "catalog.h"
#include "composition.h"
#include "image_builder.h"
#include "tenon/v1/fleet.pb.h"

namespace tenon::controller {

struct FleetComposerConfig {
  CatalogPaths catalog;
  ImageBuilderConfig builder;
  // Scheduler and timer cost charged to every job; the proto's DeviceProfile does not carry it.
  uint64_t scheduling_overhead_ns = 2'000;
};

struct ComposedApp {
  // Image fields set when built. Shared: a fleet's devices share few compositions, and each
  // device's plan refers to its one without copying it.
  std::shared_ptr<const tenon::v1::Composition> composition;
  uint64_t memory_bytes = 0;  // the placement's memory, resolved against the plan
};

class FleetComposer {
 public:
  static absl::StatusOr<std::unique_ptr<FleetComposer>> create(FleetComposerConfig config,
                                                               BlobStore* blobs);

  // FailedPrecondition when the engine refuses (unsatisfiable, unschedulable, does not fit) or the
  // placement asks for less memory than the plan; InvalidArgument for a program the catalog does
  // not know. `app_name` is empty for an inline spec. With `build`, the image is linked (or taken
  // from the cache) and stored in the blob store.
  absl::StatusOr<ComposedApp> compose(const std::string& app_name, const tenon::v1::AppSpec& app,
                                      const tenon::v1::DeviceProfile& profile,
                                      const tenon::v1::Placement& placement, bool build);

  const std::string& catalog_digest() const { return catalog_.digest(); }
  uint64_t cache_hits() const;
  uint64_t cache_misses() const;

 private:
  FleetComposer(FleetComposerConfig config, Catalog catalog, BlobStore* blobs);

  FleetComposerConfig config_;
  Catalog catalog_;
  ImageBuilder builder_;
  BlobStore* blobs_;
  mutable std::mutex mutex_;
  std::map<std::string, ComposedApp> cache_;  // input digest -> result (built ones only)
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
};

// The engine's view of a fleet App and a reported profile.
AppSpec app_spec_from_proto(const std::string& name, const tenon::v1::AppSpec& app);
DeviceProfile device_profile_from_proto(const std::string& name,
                                        const tenon::v1::DeviceProfile& profile,
                                        uint64_t scheduling_overhead_ns);
const char* arch_name(tenon::v1::Arch arch);

}  // namespace tenon::controller
