// SHA-256 through OpenSSL's libcrypto, as lowercase hex: the digest of catalogs, composition
// inputs and images.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace tenon::controller {

// Incremental hashing; each piece added with add_field is length-prefixed so that ("ab","c")
// and ("a","bc") never hash alike.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void add(std::string_view bytes);
  void add_field(std::string_view bytes);
  std::string hex_digest();  // finishes the hash

 private:
  void* context_;  // EVP_MD_CTX, kept opaque so OpenSSL headers stay out of ours
};

std::string sha256_hex(std::string_view bytes);
absl::StatusOr<std::string> sha256_file_hex(const std::string& path);

}  // namespace tenon::controller
