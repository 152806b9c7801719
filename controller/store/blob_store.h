// Content-addressed files (images, snapshots) in one directory beside the database: a blob's name
// is its digest, "sha256:<64 lowercase hex>", stored as <dir>/sha256-<hex>, written once and
// never changed.
//
// Writes are atomic and durable: bytes go to a temporary file in the same directory, are fsynced,
// renamed into place and the directory is fsynced, so a crash leaves either the whole blob or
// none (plus, at worst, a stray ".incoming-*" file that the next open() removes). Digests given
// by callers are checked against ^sha256:[0-9a-f]{64}$ before any path is built from them.
//
// Thread-safe: concurrent puts of the same or different blobs are fine. One BlobStore per
// directory at a time (open() removes temporaries it finds).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tenon::controller {

class BlobStore {
 public:
  // Creates the directory (and its parents) when absent.
  static absl::StatusOr<BlobStore> open(const std::string& directory);

  // Stores the bytes and returns their digest "sha256:<hex>". Idempotent.
  absl::StatusOr<std::string> put(std::string_view bytes);
  // Stores the bytes under `digest` after checking that it is their sha256; refuses
  // (InvalidArgument naming both digests) and writes nothing when it is not.
  absl::Status put_verified(std::string_view digest, std::string_view bytes);

  // False for a malformed digest.
  bool has(std::string_view digest) const;
  // Reads the whole blob and checks its digest again (DataLoss when the file was altered).
  absl::StatusOr<std::string> read(std::string_view digest) const;
  absl::StatusOr<uint64_t> size(std::string_view digest) const;
  // Where the blob is (or would be) stored; empty for a malformed digest.
  std::string path(std::string_view digest) const;

  const std::string& directory() const { return directory_; }

  // InvalidArgument unless `digest` matches ^sha256:[0-9a-f]{64}$.
  static absl::Status check_digest(std::string_view digest);

 private:
  explicit BlobStore(std::string directory);
  absl::Status write_atomically(const std::string& final_path, std::string_view bytes) const;

  std::string directory_;
};

}  // namespace tenon::controller
