// See image_store.h.
#include "image_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "crypto/sha256.h"

namespace tenon::agent {
namespace {

absl::Status errno_error(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

absl::Status write_all(int descriptor, const std::string& data, const std::string& path) {
  size_t written = 0;
  while (written < data.size()) {
    const ssize_t n = ::write(descriptor, data.data() + written, data.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error(absl::StrCat("write ", path));
    }
    written += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ImageStore::init() {
  std::error_code error;
  std::filesystem::create_directories(directory_, error);
  if (error) return absl::InternalError(absl::StrCat(directory_, ": ", error.message()));
  chmod(directory_.c_str(), 0700);
  return absl::OkStatus();
}

absl::StatusOr<std::string> ImageStore::path_of(const std::string& digest) const {
  absl::StatusOr<std::string> hex = crypto::digest_hex(digest);
  if (!hex.ok()) return hex.status();
  return absl::StrCat(directory_, "/", *hex);
}

absl::StatusOr<std::string> ImageStore::partial_path_of(const std::string& digest) const {
  absl::StatusOr<std::string> path = path_of(digest);
  if (!path.ok()) return path.status();
  return absl::StrCat(*path, ".partial");
}

uint64_t ImageStore::partial_size(const std::string& digest) const {
  absl::StatusOr<std::string> partial = partial_path_of(digest);
  if (!partial.ok()) return 0;
  struct stat info;
  if (stat(partial->c_str(), &info) != 0) return 0;
  return static_cast<uint64_t>(info.st_size);
}

void ImageStore::remove_partial(const std::string& digest) const {
  absl::StatusOr<std::string> partial = partial_path_of(digest);
  if (partial.ok()) ::unlink(partial->c_str());
}

void ImageStore::remove(const std::string& digest) const {
  absl::StatusOr<std::string> path = path_of(digest);
  if (path.ok()) ::unlink(path->c_str());
}

absl::StatusOr<std::string> ImageStore::read_verified(const std::string& digest) const {
  absl::StatusOr<std::string> path = path_of(digest);
  if (!path.ok()) return path.status();
  std::ifstream file(*path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat(*path, ": ", std::strerror(errno)));
  std::stringstream contents;
  contents << file.rdbuf();
  std::string bytes = std::move(contents).str();
  const std::string actual = crypto::sha256_digest(bytes);
  if (actual != digest) {
    return absl::DataLossError(
        absl::StrCat("the file ", *path, " now hashes to ", actual, ", not ", digest));
  }
  return bytes;
}

absl::StatusOr<bool> ImageStore::add_chunk(const tenon::v1::ImageChunk& chunk) const {
  absl::StatusOr<std::string> partial = partial_path_of(chunk.digest());
  if (!partial.ok()) return partial.status();
  auto fail = [&](absl::Status status) -> absl::StatusOr<bool> {
    ::unlink(partial->c_str());
    return status;
  };
  const uint64_t held = partial_size(chunk.digest());
  if (chunk.offset() != held) {
    return fail(absl::DataLossError(absl::StrCat(
        "chunk at offset ", chunk.offset(), " does not follow the ", held, " bytes received")));
  }
  if (chunk.total_size_bytes() > kMaxImageBytes || held + chunk.data().size() > kMaxImageBytes) {
    return fail(absl::ResourceExhaustedError(
        absl::StrCat("image exceeds the agent's limit of ", kMaxImageBytes, " bytes")));
  }
  if (chunk.total_size_bytes() != 0 && held + chunk.data().size() > chunk.total_size_bytes()) {
    return fail(absl::DataLossError(
        absl::StrCat("chunks run past the declared size of ", chunk.total_size_bytes(), " bytes")));
  }
  if (!chunk.chunk_sha256().empty() && crypto::sha256_hex(chunk.data()) != chunk.chunk_sha256()) {
    return fail(absl::DataLossError(
        absl::StrCat("chunk at offset ", chunk.offset(), " does not match its chunk_sha256")));
  }
  const int descriptor = ::open(partial->c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (descriptor < 0) return fail(errno_error(absl::StrCat("open ", *partial)));
  absl::Status written = write_all(descriptor, chunk.data(), *partial);
  if (written.ok() && chunk.last() && ::fsync(descriptor) != 0) {
    written = errno_error(absl::StrCat("fsync ", *partial));
  }
  ::close(descriptor);
  if (!written.ok()) return fail(written);
  if (!chunk.last()) return false;

  const uint64_t size = held + chunk.data().size();
  if (chunk.total_size_bytes() != 0 && size != chunk.total_size_bytes()) {
    return fail(absl::DataLossError(
        absl::StrCat("received ", size, " bytes of the declared ", chunk.total_size_bytes())));
  }
  absl::StatusOr<std::string> actual = crypto::sha256_file_hex(*partial);
  if (!actual.ok()) return fail(actual.status());
  absl::StatusOr<std::string> expected = crypto::digest_hex(chunk.digest());
  if (*actual != *expected) {
    return fail(absl::DataLossError(
        absl::StrCat("the received ", size, " bytes hash to sha256:", *actual)));
  }
  absl::StatusOr<std::string> final_path = path_of(chunk.digest());
  if (std::rename(partial->c_str(), final_path->c_str()) != 0) {
    return fail(errno_error(absl::StrCat("rename ", *partial)));
  }
  const int directory = ::open(directory_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (directory >= 0) {
    ::fsync(directory);
    ::close(directory);
  }
  return true;
}

}  // namespace tenon::agent
