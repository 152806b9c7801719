// SHA-256 over OpenSSL's EVP interface; see sha256.h.
#include "crypto/sha256.h"

#include <openssl/evp.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace tenon::crypto {
namespace {

// How much of a malformed digest a message quotes: it may be anything a peer sent.
constexpr size_t kQuotedCharacters = 100;

absl::Status malformed(std::string_view digest, const char* why) {
  return absl::InvalidArgumentError(
      absl::StrCat("digest \"", std::string(digest.substr(0, kQuotedCharacters)),
                   digest.size() > kQuotedCharacters ? "...\" " : "\" ", why));
}

}  // namespace

Sha256::Sha256() : context_(EVP_MD_CTX_new()) {
  EVP_DigestInit_ex(context_, EVP_sha256(), nullptr);
}

Sha256::~Sha256() { EVP_MD_CTX_free(context_); }

void Sha256::add(std::string_view bytes) { EVP_DigestUpdate(context_, bytes.data(), bytes.size()); }

void Sha256::add(std::span<const uint8_t> bytes) {
  EVP_DigestUpdate(context_, bytes.data(), bytes.size());
}

void Sha256::add_field(std::string_view bytes) {
  uint64_t length = bytes.size();
  uint8_t prefix[sizeof(length)];
  for (uint8_t& byte : prefix) {
    byte = static_cast<uint8_t>(length & 0xff);
    length >>= 8;
  }
  add(std::span<const uint8_t>(prefix));
  add(bytes);
}

Sha256Hash Sha256::peek() const {
  Sha256 copy;
  EVP_MD_CTX_copy_ex(copy.context_, context_);
  return copy.finish();
}

Sha256Hash Sha256::finish() {
  Sha256Hash hash{};
  unsigned int length = 0;
  EVP_DigestFinal_ex(context_, hash.data(), &length);
  return hash;
}

std::string Sha256::hex_digest() { return to_hex(finish()); }

std::string Sha256::digest() { return std::string(kDigestPrefix) + hex_digest(); }

std::string to_hex(std::span<const uint8_t> bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * bytes.size());
  for (uint8_t byte : bytes) {
    hex.push_back(kHex[byte >> 4]);
    hex.push_back(kHex[byte & 0xf]);
  }
  return hex;
}

std::string sha256_hex(std::string_view bytes) {
  Sha256 hash;
  hash.add(bytes);
  return hash.hex_digest();
}

std::string sha256_digest(std::string_view bytes) {
  Sha256 hash;
  hash.add(bytes);
  return hash.digest();
}

std::string sha256_digest(std::span<const uint8_t> bytes) {
  Sha256 hash;
  hash.add(bytes);
  return hash.digest();
}

absl::StatusOr<std::string> digest_hex(std::string_view digest) {
  if (!digest.starts_with(kDigestPrefix)) {
    return malformed(digest, "does not start with sha256:");
  }
  const std::string_view hex = digest.substr(kDigestPrefix.size());
  if (hex.size() != 2 * kSha256Bytes) return malformed(digest, "does not have 64 hex digits");
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return malformed(digest, "is not lowercase hex");
    }
  }
  return std::string(hex);
}

absl::StatusOr<std::string> sha256_file_hex(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  Sha256 hash;
  char buffer[64 * 1024];
  while (file) {
    file.read(buffer, sizeof(buffer));
    if (file.gcount() > 0) hash.add(std::string_view(buffer, static_cast<size_t>(file.gcount())));
  }
  if (file.bad()) return absl::DataLossError(absl::StrCat(path, ": read failed"));
  return hash.hex_digest();
}

}  // namespace tenon::crypto
