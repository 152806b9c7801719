// Snapshot paths and files of mortised; see snapshot_source.h.
#include "snapshot_source.h"

#include <fcntl.h>
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
#include "file_bytes.h"
#include "snapshot_format.h"
#include "tenon/abi.h"

namespace mortise {
namespace {

bool inside(const std::string& resolved, const std::string& directory) {
  return resolved == directory || absl::StartsWith(resolved, directory + "/");
}

}  // namespace

absl::StatusOr<std::string> resolve_snapshot_target(const std::string& path,
                                                    const std::string& snapshot_directory) {
  if (path.empty() || path.front() != '/') {
    return absl::InvalidArgumentError(absl::StrCat("path '", path, "' is not an absolute path"));
  }
  const size_t slash = path.rfind('/');
  const std::string name = path.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") {
    return absl::InvalidArgumentError(absl::StrCat("path ", path, " names no file"));
  }
  const std::string directory = slash == 0 ? "/" : path.substr(0, slash);
  char resolved[PATH_MAX];
  if (realpath(directory.c_str(), resolved) == nullptr || !inside(resolved, snapshot_directory)) {
    // A directory that does not exist is outside the snapshot directory as far as a caller may
    // learn: mortised does not probe paths for it.
    return absl::PermissionDeniedError(
        absl::StrCat("path ", path, " lies outside the snapshot directory ", snapshot_directory));
  }
  const std::string target = absl::StrCat(resolved, "/", name);
  struct stat status {};
  if (lstat(target.c_str(), &status) == 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("snapshot ", path, " exists; snapshots are never overwritten"));
  }
  return target;
}

absl::StatusOr<ResolvedSnapshot> read_snapshot(const tenon::v1::RestoreVmRequest& request,
                                               const std::string& snapshot_directory) {
  const std::string& path = request.path();
  if (!request.expected_digest().empty() &&
      !tenon::crypto::digest_hex(request.expected_digest()).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected_digest '", request.expected_digest(),
                     "' is not \"sha256:\" and 64 lowercase hex digits"));
  }
  if (path.empty() || path.front() != '/') {
    return absl::InvalidArgumentError(absl::StrCat("path '", path, "' is not an absolute path"));
  }
  char resolved[PATH_MAX];
  if (realpath(path.c_str(), resolved) == nullptr) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return absl::NotFoundError(absl::StrCat("snapshot ", path, " does not exist"));
    }
    return absl::InvalidArgumentError(absl::StrCat("snapshot ", path, ": ", std::strerror(errno)));
  }
  if (!absl::StartsWith(resolved, snapshot_directory + "/")) {
    return absl::PermissionDeniedError(
        absl::StrCat("path ", path, " lies outside the snapshot directory ", snapshot_directory));
  }
  FileDescriptor file(open(resolved, O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!file.valid()) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat("snapshot ", path, " does not exist"));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("cannot open snapshot ", path, ": ", std::strerror(errno)));
  }
  absl::StatusOr<std::string> read = read_regular_file(file.get(), snapshot::kMaxFileBytes);
  if (!read.ok()) {
    const absl::StatusCode code = absl::IsInvalidArgument(read.status())
                                      ? absl::StatusCode::kInvalidArgument
                                      : absl::StatusCode::kDataLoss;
    return absl::Status(code, absl::StrCat("snapshot ", path, ": ",
                                           absl::IsOutOfRange(read.status())
                                               ? absl::StrCat("larger than the cap of ",
                                                              snapshot::kMaxFileBytes, " bytes")
                                               : std::string(read.status().message())));
  }
  const std::string& bytes = *read;
  ResolvedSnapshot result;
  result.digest = tenon::crypto::sha256_digest(bytes);
  if (!request.expected_digest().empty() && request.expected_digest() != result.digest) {
    return absl::DataLossError(absl::StrCat("snapshot ", path, " does not hash to expected_digest ",
                                            request.expected_digest(), " but to ", result.digest));
  }
  const std::span<const uint8_t> view(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  absl::StatusOr<snapshot::Snapshot> parsed = snapshot::parse_snapshot(view, tenon::abi::kVersion);
  if (!parsed.ok()) {
    return absl::Status(parsed.status().code(),
                        absl::StrCat("snapshot ", path, ": ", parsed.status().message()));
  }
  result.memory_bytes = parsed->memory_bytes;
  result.engine = parsed->engine;
  result.run_id = snapshot::text_of(parsed->metadata.run_id);
  result.image_digest = snapshot::text_of(parsed->metadata.image_digest);
  absl::StatusOr<FileDescriptor> memfd = memfd_with("tenon-snapshot", bytes, /*seal=*/true);
  if (!memfd.ok()) return memfd.status();
  result.memfd = std::move(*memfd);
  return result;
}

}  // namespace mortise
