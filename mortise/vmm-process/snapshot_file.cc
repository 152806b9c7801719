// Snapshot files of mortise-vmm; see snapshot_file.h.
#include "snapshot_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "file_bytes.h"

namespace mortise {
namespace {

absl::Status write_error(const std::string& path, int error) {
  const std::string message =
      absl::StrCat("cannot write snapshot ", path, ": ", std::strerror(error));
  if (error == ENOSPC || error == EDQUOT) return absl::ResourceExhaustedError(message);
  if (error == EACCES || error == EPERM || error == EROFS) {
    return absl::PermissionDeniedError(message);
  }
  return absl::InternalError(message);
}

}  // namespace

absl::StatusOr<snapshot::Written> write_snapshot_file(
    const std::string& path,
    const std::function<absl::StatusOr<snapshot::Written>(const snapshot::Sink&)>& produce) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash + 1 == path.size()) {
    return absl::InvalidArgumentError(absl::StrCat("snapshot path '", path, "' names no file"));
  }
  static std::atomic<uint64_t> counter{0};
  const std::string temporary = absl::StrCat(path.substr(0, slash + 1), ".", path.substr(slash + 1),
                                             ".partial-", getpid(), "-", counter.fetch_add(1));
  const int fd =
      open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return write_error(path, errno);
  auto sink = [&](std::span<const uint8_t> bytes) -> absl::Status {
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t count = ::write(fd, bytes.data() + done, bytes.size() - done);
      if (count < 0 && errno == EINTR) continue;
      if (count <= 0) return write_error(path, count < 0 ? errno : ENOSPC);
      done += static_cast<size_t>(count);
    }
    return absl::OkStatus();
  };
  absl::StatusOr<snapshot::Written> written = produce(sink);
  const int closed = close(fd);
  const int close_error = errno;
  if (written.ok() && closed != 0) written = write_error(path, close_error);
  if (written.ok() && link(temporary.c_str(), path.c_str()) != 0) {
    written = errno == EEXIST ? absl::AlreadyExistsError(absl::StrCat(
                                    "snapshot ", path, " exists; snapshots are never overwritten"))
                              : write_error(path, errno);
  }
  unlink(temporary.c_str());
  return written;
}

absl::StatusOr<std::string> read_snapshot_fd(int fd) {
  absl::StatusOr<std::string> bytes = read_regular_file(fd, snapshot::kMaxFileBytes);
  if (bytes.ok() || absl::IsInvalidArgument(bytes.status())) return bytes;
  return absl::DataLossError(absl::StrCat("the snapshot: ", bytes.status().message()));
}

}  // namespace mortise
