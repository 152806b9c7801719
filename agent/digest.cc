// See digest.h.
#include "digest.h"

#include <openssl/evp.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace tenon::agent {
namespace {

constexpr char kPrefix[] = "sha256:";
constexpr size_t kPrefixLength = sizeof(kPrefix) - 1;

std::string to_hex(const unsigned char* bytes, unsigned int length) {
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), static_cast<size_t>(length)));
}

}  // namespace

std::string sha256_hex(const std::string& data) {
  unsigned char hash[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), hash, &length, EVP_sha256(), nullptr);
  return to_hex(hash, length);
}

std::string sha256_digest(const std::string& data) {
  return absl::StrCat(kPrefix, sha256_hex(data));
}

absl::StatusOr<std::string> digest_hex(const std::string& digest) {
  if (!absl::StartsWith(digest, kPrefix)) {
    return absl::InvalidArgumentError(
        absl::StrCat("digest \"", digest, "\" does not start with sha256:"));
  }
  const std::string hex = digest.substr(kPrefixLength);
  if (hex.size() != 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("digest \"", digest, "\" does not have 64 hex digits"));
  }
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return absl::InvalidArgumentError(
          absl::StrCat("digest \"", digest, "\" is not lowercase hex"));
    }
  }
  return hex;
}

absl::StatusOr<std::string> sha256_hex_of_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  }
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(),
                                                                  &EVP_MD_CTX_free);
  EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr);
  char buffer[64 * 1024];
  while (file) {
    file.read(buffer, sizeof(buffer));
    if (file.gcount() > 0) EVP_DigestUpdate(context.get(), buffer, file.gcount());
  }
  if (file.bad()) return absl::DataLossError(absl::StrCat(path, ": read failed"));
  unsigned char hash[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(context.get(), hash, &length);
  return to_hex(hash, length);
}

}  // namespace tenon::agent
