// Content digests as the wire carries them ("sha256:" and 64 lowercase hex digits), computed with
// OpenSSL. A digest from the network names a file in the image directory, so it is parsed
// strictly before it is used.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace tenon::agent {

// Lowercase hex sha256 of `data`.
std::string sha256_hex(const std::string& data);
// "sha256:<hex>" of `data`.
std::string sha256_digest(const std::string& data);
// The hex part of a well-formed digest; InvalidArgument otherwise.
absl::StatusOr<std::string> digest_hex(const std::string& digest);
// Hex sha256 of a file's contents, read in pieces.
absl::StatusOr<std::string> sha256_hex_of_file(const std::string& path);

}  // namespace tenon::agent
