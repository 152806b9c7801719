// See file_bytes.h.
#include "file_bytes.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace mortise {

absl::StatusOr<std::string> read_regular_file(int fd, uint64_t max_bytes) {
  struct stat status {};
  if (fstat(fd, &status) != 0 || !S_ISREG(status.st_mode)) {
    return absl::InvalidArgumentError("not a regular file");
  }
  std::string bytes(
      static_cast<size_t>(std::min<uint64_t>(static_cast<uint64_t>(status.st_size), max_bytes + 1)),
      '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t count =
        pread(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (count < 0 && errno == EINTR) continue;
    if (count < 0) return absl::DataLossError(absl::StrCat("read: ", std::strerror(errno)));
    if (count == 0) break;
    done += static_cast<size_t>(count);
  }
  bytes.resize(done);
  if (bytes.size() > max_bytes) {
    return absl::OutOfRangeError(absl::StrCat("more than ", max_bytes, " bytes"));
  }
  return bytes;
}

absl::StatusOr<FileDescriptor> memfd_with(const char* name, std::string_view bytes, bool seal) {
  FileDescriptor memfd(memfd_create(name, MFD_CLOEXEC | (seal ? MFD_ALLOW_SEALING : 0)));
  if (!memfd.valid()) {
    return absl::ResourceExhaustedError(absl::StrCat("memfd_create: ", std::strerror(errno)));
  }
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t count = ::write(memfd.get(), bytes.data() + done, bytes.size() - done);
    if (count < 0 && errno == EINTR) continue;
    if (count <= 0) {
      return absl::ResourceExhaustedError(
          absl::StrCat("writing ", name, ": ", std::strerror(errno)));
    }
    done += static_cast<size_t>(count);
  }
  if (lseek(memfd.get(), 0, SEEK_SET) != 0) {
    return absl::InternalError(absl::StrCat("lseek ", name, ": ", std::strerror(errno)));
  }
  if (seal && fcntl(memfd.get(), F_ADD_SEALS,
                    F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    return absl::InternalError(absl::StrCat("sealing ", name, ": ", std::strerror(errno)));
  }
  return memfd;
}

}  // namespace mortise
