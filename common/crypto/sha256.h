// SHA-256 of every hosted TenonOS program, through OpenSSL's libcrypto (EVP): the digests of
// catalogs, composition inputs and build keys, of images and snapshots ("sha256:<hex>", as the
// wire carries them), of secrets and of chunks.
//
// mortise-vmm hashes snapshots with it and is to run under a seccomp allow-list, so the hasher
// calls nothing but EVP_MD_CTX_new, EVP_DigestInit_ex with EVP_sha256(), EVP_DigestUpdate,
// EVP_MD_CTX_copy_ex, EVP_DigestFinal_ex and EVP_MD_CTX_free (the calls the snapshot code always
// made): keep it so. Only sha256_file_hex opens files.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX, kept opaque so OpenSSL headers stay out of ours

namespace tenon::crypto {

inline constexpr size_t kSha256Bytes = 32;
using Sha256Hash = std::array<uint8_t, kSha256Bytes>;

// What starts a digest as the wire carries it: "sha256:" and 64 lowercase hex digits.
inline constexpr std::string_view kDigestPrefix = "sha256:";

// Incremental hashing. finish, hex_digest and digest end the hash: nothing is added after them.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void add(std::string_view bytes);
  void add(std::span<const uint8_t> bytes);
  // The piece after its length (8 bytes, little-endian), so that ("ab","c") and ("a","bc") never
  // hash alike. Catalog, composition and build-key digests are made of these: never change it.
  void add_field(std::string_view bytes);

  // The hash of what was added so far; hashing goes on.
  Sha256Hash peek() const;
  Sha256Hash finish();
  std::string hex_digest();  // lowercase hex
  std::string digest();      // "sha256:<hex>"

 private:
  evp_md_ctx_st* context_;
};

// Lowercase hex of any bytes.
std::string to_hex(std::span<const uint8_t> bytes);
// Lowercase hex sha256 of `bytes`.
std::string sha256_hex(std::string_view bytes);
// "sha256:<hex>" of `bytes`.
std::string sha256_digest(std::string_view bytes);
std::string sha256_digest(std::span<const uint8_t> bytes);
// The hex part of a well-formed digest ("sha256:" and exactly 64 lowercase hex digits);
// InvalidArgument otherwise, quoting at most the first 100 characters of the digest. Digests from
// the network name files, so they are parsed with this before they are used.
absl::StatusOr<std::string> digest_hex(std::string_view digest);
// Lowercase hex sha256 of a file's contents, read in pieces: NotFound when it cannot be opened,
// DataLoss when reading fails.
absl::StatusOr<std::string> sha256_file_hex(const std::string& path);

}  // namespace tenon::crypto
