// BlobStore: content-addressed files written with temp file + fsync + rename; see blob_store.h.
#include "blob_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "crypto/sha256.h"

namespace tenon::controller {
namespace {

constexpr std::string_view kFilePrefix = "sha256-";
constexpr std::string_view kIncomingPrefix = ".incoming-";

std::string errno_text(int error) { return std::strerror(error); }

// Closes a descriptor when it goes out of scope.
struct FileDescriptor {
  int fd = -1;
  ~FileDescriptor() {
    if (fd >= 0) ::close(fd);
  }
};

absl::Status fsync_directory(const std::string& directory) {
  FileDescriptor dir{::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (dir.fd < 0 || ::fsync(dir.fd) != 0) {
    return absl::InternalError(
        absl::StrCat(directory, ": fsync of the directory: ", errno_text(errno)));
  }
  return absl::OkStatus();
}

}  // namespace

BlobStore::BlobStore(std::string directory) : directory_(std::move(directory)) {}

absl::Status BlobStore::check_digest(std::string_view digest) {
  if (absl::StatusOr<std::string> hex = crypto::digest_hex(digest); !hex.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("malformed blob ", hex.status().message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<BlobStore> BlobStore::open(const std::string& directory) {
  if (directory.empty()) return absl::InvalidArgumentError("blob store: empty directory");
  std::error_code error;
  std::filesystem::create_directories(directory, error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat(directory, ": cannot create the blob directory: ", error.message()));
  }
  if (!std::filesystem::is_directory(directory, error)) {
    return absl::FailedPreconditionError(absl::StrCat(directory, ": not a directory"));
  }
  // Temporaries left by a crash in the middle of a put.
  for (const auto& entry : std::filesystem::directory_iterator(directory, error)) {
    if (entry.path().filename().string().starts_with(kIncomingPrefix)) {
      std::error_code ignored;
      std::filesystem::remove(entry.path(), ignored);
    }
  }
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat(directory, ": cannot list the blob directory: ", error.message()));
  }
  return BlobStore(directory);
}

std::string BlobStore::path(std::string_view digest) const {
  absl::StatusOr<std::string> hex = crypto::digest_hex(digest);
  if (!hex.ok()) return std::string();
  return absl::StrCat(directory_, "/", std::string(kFilePrefix), *hex);
}

absl::StatusOr<std::string> BlobStore::put(std::string_view bytes) {
  const std::string digest = crypto::sha256_digest(bytes);
  if (absl::Status status = write_atomically(path(digest), bytes); !status.ok()) return status;
  return digest;
}

absl::Status BlobStore::put_verified(std::string_view digest, std::string_view bytes) {
  if (absl::Status status = check_digest(digest); !status.ok()) return status;
  const std::string actual = crypto::sha256_digest(bytes);
  if (actual != digest) {
    return absl::InvalidArgumentError(absl::StrCat(
        "blob digest mismatch: expected ", std::string(digest), ", the bytes are ", actual));
  }
  return write_atomically(path(digest), bytes);
}

absl::Status BlobStore::write_atomically(const std::string& final_path,
                                         std::string_view bytes) const {
  // Same name, same bytes: a blob already in place is never rewritten.
  struct stat existing;
  if (::stat(final_path.c_str(), &existing) == 0 && S_ISREG(existing.st_mode) &&
      static_cast<uint64_t>(existing.st_size) == bytes.size()) {
    return absl::OkStatus();
  }
  std::string temporary = absl::StrCat(directory_, "/", std::string(kIncomingPrefix), "XXXXXX");
  FileDescriptor file{::mkostemp(temporary.data(), O_CLOEXEC)};
  if (file.fd < 0) {
    return absl::InternalError(
        absl::StrCat(directory_, ": cannot create a temporary blob file: ", errno_text(errno)));
  }
  auto fail = [&](std::string_view step) {
    const int error = errno;
    ::unlink(temporary.c_str());
    return absl::InternalError(absl::StrCat(temporary, ": ", std::string(step), " (for ",
                                            final_path, "): ", errno_text(error)));
  };
  size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t count = ::write(file.fd, bytes.data() + written, bytes.size() - written);
    if (count < 0) {
      if (errno == EINTR) continue;
      return fail("write");
    }
    written += static_cast<size_t>(count);
  }
  // Read-only: a content-addressed file never changes.
  if (::fchmod(file.fd, 0444) != 0) return fail("fchmod");
  if (::fsync(file.fd) != 0) return fail("fsync");
  if (::close(std::exchange(file.fd, -1)) != 0) return fail("close");
  if (::rename(temporary.c_str(), final_path.c_str()) != 0) return fail("rename");
  return fsync_directory(directory_);
}

bool BlobStore::has(std::string_view digest) const {
  const std::string file = path(digest);
  if (file.empty()) return false;
  struct stat status;
  return ::stat(file.c_str(), &status) == 0 && S_ISREG(status.st_mode);
}

absl::StatusOr<uint64_t> BlobStore::size(std::string_view digest) const {
  if (absl::Status status = check_digest(digest); !status.ok()) return status;
  const std::string file = path(digest);
  struct stat status;
  if (::stat(file.c_str(), &status) != 0) {
    const int error = errno;
    if (error == ENOENT) {
      return absl::NotFoundError(absl::StrCat(file, ": no blob ", std::string(digest)));
    }
    return absl::InternalError(absl::StrCat(file, ": stat: ", errno_text(error)));
  }
  if (!S_ISREG(status.st_mode)) {
    return absl::DataLossError(absl::StrCat(file, ": not a regular file"));
  }
  return static_cast<uint64_t>(status.st_size);
}

absl::StatusOr<std::string> BlobStore::read(std::string_view digest) const {
  if (absl::Status status = check_digest(digest); !status.ok()) return status;
  const std::string file = path(digest);
  FileDescriptor input{::open(file.c_str(), O_RDONLY | O_CLOEXEC)};
  if (input.fd < 0) {
    const int error = errno;
    if (error == ENOENT) {
      return absl::NotFoundError(absl::StrCat(file, ": no blob ", std::string(digest)));
    }
    return absl::InternalError(absl::StrCat(file, ": open: ", errno_text(error)));
  }
  std::string bytes;
  char buffer[65536];
  while (true) {
    const ssize_t count = ::read(input.fd, buffer, sizeof(buffer));
    if (count < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat(file, ": read: ", errno_text(errno)));
    }
    if (count == 0) break;
    bytes.append(buffer, static_cast<size_t>(count));
  }
  const std::string actual = crypto::sha256_digest(bytes);
  if (actual != digest) {
    return absl::DataLossError(
        absl::StrCat(file, ": the stored bytes hash to ", actual, ", not ", std::string(digest)));
  }
  return bytes;
}

}  // namespace tenon::controller
