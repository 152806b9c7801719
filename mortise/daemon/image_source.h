// Where a VM's image comes from: a file inside mortised's image directory or bytes in the
// request. Either way it ends up, checked against its digest, in a sealed memfd that the
// mortise-vmm child reads, so that nothing can change the image between check and load.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "engine.h"
#include "kvm.h"
#include "tenon/v1/mortise.pb.h"

namespace mortise {

// Mortise loads nothing larger (see Instance).
inline constexpr uint64_t kMaxImageBytes = 64ull << 20;
// CreateVmRequest.stack_bytes 0 means this.
inline constexpr uint64_t kDefaultStackBytes = 16 << 10;

struct ResolvedImage {
  FileDescriptor memfd;
  std::string digest;  // "sha256:<hex>"
};

// Reads the image the request names, checks its digest, validates it as a Tenon ELF that fits
// the requested memory, and seals it into a memfd. `image_directory` must be a resolved absolute
// path (no symlinks). The image must be linked for `engine`'s platform and fit that engine's
// machine. Status codes as promised by MortiseService.Create: INVALID_ARGUMENT, NOT_FOUND,
// PERMISSION_DENIED, FAILED_PRECONDITION (guest ABI version, an image for another engine).
absl::StatusOr<ResolvedImage> resolve_image(const tenon::v1::CreateVmRequest& request,
                                            const std::string& image_directory, EngineKind engine);

}  // namespace mortise
