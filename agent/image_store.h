// Verified images on disk: images/<hex> holds a blob whose sha256 is <hex>; images/<hex>.partial
// is a transfer in progress. A blob becomes images/<hex> only after its whole sha256 matched, and
// every read for a boot hashes the file again, so a file changed on disk never boots.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tenon/v1/agent.pb.h"

namespace tenon::agent {

inline constexpr uint64_t kMaxImageBytes = 64ull << 20;

class ImageStore {
 public:
  explicit ImageStore(std::string directory) : directory_(std::move(directory)) {}

  // Creates the directory (mode 0700).
  absl::Status init();

  // Paths for a well-formed digest; InvalidArgument otherwise.
  absl::StatusOr<std::string> path_of(const std::string& digest) const;
  absl::StatusOr<std::string> partial_path_of(const std::string& digest) const;

  // Bytes of a partial transfer already on disk (0: none), to resume from.
  uint64_t partial_size(const std::string& digest) const;
  void remove_partial(const std::string& digest) const;
  void remove(const std::string& digest) const;

  // The image's bytes after hashing them: DataLoss naming both digests when the file no longer
  // hashes to `digest`, NotFound when it is gone.
  absl::StatusOr<std::string> read_verified(const std::string& digest) const;

  // Appends one chunk of a transfer (in order: chunk.offset must equal the bytes already held).
  // Checks chunk_sha256 when set, the size cap and the declared total. On the last chunk hashes
  // the whole partial file and, when it matches, renames it into place and returns true. Any
  // failure removes the partial file and says why.
  absl::StatusOr<bool> add_chunk(const tenon::v1::ImageChunk& chunk) const;

 private:
  std::string directory_;
};

}  // namespace tenon::agent
