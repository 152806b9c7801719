// Image resolution; see image_source.h.
#include "image_source.h"

#include "guest_setup.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <span>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "crypto/sha256.h"
#include "elf_loader.h"
#include "file_bytes.h"
#include "memory_layout.h"
#include "tenon/abi.h"

namespace mortise {
namespace {

absl::StatusOr<std::string> read_image_file(const std::string& requested,
                                            const std::string& image_directory) {
  if (requested.empty() || requested.front() != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("image_path '", requested, "' is not an absolute path"));
  }
  char resolved[PATH_MAX];
  if (realpath(requested.c_str(), resolved) == nullptr) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return absl::NotFoundError(absl::StrCat("image_path ", requested, " does not exist"));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("image_path ", requested, ": ", std::strerror(errno)));
  }
  // Checked after symlinks are resolved: mortised is privileged, its callers need not be.
  if (!absl::StartsWith(resolved, image_directory + "/")) {
    return absl::PermissionDeniedError(absl::StrCat(
        "image_path ", requested, " lies outside the image directory ", image_directory));
  }
  FileDescriptor file(open(resolved, O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!file.valid()) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat("image_path ", requested, " does not exist"));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("cannot open image ", requested, ": ", std::strerror(errno)));
  }
  absl::StatusOr<std::string> bytes = read_regular_file(file.get(), kMaxImageBytes);
  if (!bytes.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("image ", requested, ": ",
                     absl::IsOutOfRange(bytes.status())
                         ? absl::StrCat("larger than the ", kMaxImageBytes >> 20, " MiB limit")
                         : std::string(bytes.status().message())));
  }
  return bytes;
}

}  // namespace

absl::StatusOr<ResolvedImage> resolve_image(const tenon::v1::CreateVmRequest& request,
                                            const std::string& image_directory, EngineKind engine) {
  if (!request.image_digest().empty() && !tenon::crypto::digest_hex(request.image_digest()).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("image_digest '", request.image_digest(),
                     "' is not \"sha256:\" and 64 lowercase hex digits"));
  }
  std::string bytes;
  switch (request.image_case()) {
    case tenon::v1::CreateVmRequest::kImagePath: {
      absl::StatusOr<std::string> file = read_image_file(request.image_path(), image_directory);
      if (!file.ok()) return file.status();
      bytes = std::move(*file);
      break;
    }
    case tenon::v1::CreateVmRequest::kImageBytes:
      if (request.image_digest().empty()) {
        return absl::InvalidArgumentError("image_bytes needs image_digest");
      }
      if (request.image_bytes().size() > kMaxImageBytes) {
        return absl::InvalidArgumentError(
            absl::StrCat("image_bytes exceed the ", kMaxImageBytes >> 20, " MiB limit"));
      }
      bytes = request.image_bytes();
      break;
    case tenon::v1::CreateVmRequest::IMAGE_NOT_SET:
      return absl::InvalidArgumentError("neither image_path nor image_bytes is given");
  }
  ResolvedImage image;
  image.digest = tenon::crypto::sha256_digest(bytes);
  if (!request.image_digest().empty() && request.image_digest() != image.digest) {
    return absl::InvalidArgumentError(absl::StrCat("the image does not hash to image_digest ",
                                                   request.image_digest(), " but to ",
                                                   image.digest));
  }
  // Checked here as well as in mortise-vmm (which trusts nobody either), so that a bad image is
  // refused with the status the API promises before any process is started.
  const std::span<const uint8_t> file(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  ElfLimits limits;
  limits.lowest_address = tenon::abi::kImageBase;
  limits.highest_address = request.memory_bytes();
  absl::StatusOr<ElfImage> elf = parse_elf(file, limits, tenon::abi::kVersion);
  if (!elf.ok()) return elf.status();
  if (engine_for(elf->platform) != engine) {
    return absl::FailedPreconditionError(
        absl::StrCat("the image is linked with ", platform_library(elf->platform), " for the ",
                     engine_name(engine_for(elf->platform)), " engine; this mortised runs the ",
                     engine_name(engine), " engine"));
  }
  const uint64_t stack_bytes =
      request.stack_bytes() != 0 ? request.stack_bytes() : kDefaultStackBytes;
  absl::StatusOr<MemoryLayout> layout = plan_memory_layout(
      request.memory_bytes(), elf->end, stack_bytes, machine_constraints(engine));
  if (!layout.ok()) {
    // "Too small for the image" is the caller's mistake, not a host shortage.
    return absl::InvalidArgumentError(layout.status().message());
  }
  absl::StatusOr<FileDescriptor> memfd = memfd_with("tenon-image", bytes, /*seal=*/true);
  if (!memfd.ok()) return memfd.status();
  image.memfd = std::move(*memfd);
  return image;
}

}  // namespace mortise
