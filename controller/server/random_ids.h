// Unguessable identifiers from OpenSSL's generator: object uids, secrets, migration ids.
#pragma once

#include <cstddef>
#include <string>

namespace tenon::controller {

// `bytes` random bytes as lowercase hex. Aborts if the generator fails: a controller without
// randomness must not hand out guessable secrets.
std::string random_hex(size_t bytes);
// A random (version 4 shaped) uid: 8-4-4-4-12 hex digits.
std::string new_uid();

}  // namespace tenon::controller
