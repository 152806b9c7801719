// SHA-256 over OpenSSL's EVP interface; see sha256.h.
#include "sha256.h"

#include <openssl/evp.h>

#include <cstdint>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace tenon::controller {

Sha256::Sha256() : context_(EVP_MD_CTX_new()) {
  EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(context_), EVP_sha256(), nullptr);
}

Sha256::~Sha256() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(context_)); }

void Sha256::add(std::string_view bytes) {
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(context_), bytes.data(), bytes.size());
}

void Sha256::add_field(std::string_view bytes) {
  const uint64_t length = bytes.size();
  add(std::string_view(reinterpret_cast<const char*>(&length), sizeof(length)));
  add(bytes);
}

std::string Sha256::hex_digest() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(context_), digest, &length);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 0xf]);
  }
  return hex;
}

std::string sha256_hex(std::string_view bytes) {
  Sha256 hash;
  hash.add(bytes);
  return hash.hex_digest();
}

absl::StatusOr<std::string> sha256_file_hex(const std::string& path) {
  std::ifstream stream(path, std::ios::binary);
  if (!stream) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  Sha256 hash;
  char buffer[65536];
  while (stream.read(buffer, sizeof(buffer)) || stream.gcount() > 0) {
    hash.add(std::string_view(buffer, static_cast<size_t>(stream.gcount())));
  }
  if (stream.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return hash.hex_digest();
}

}  // namespace tenon::controller
