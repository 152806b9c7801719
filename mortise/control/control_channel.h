// Framing of the control channel between mortised and mortise-vmm (proto/tenon/v1/vmm.proto):
// each message is a 4-byte little-endian length followed by its serialized bytes, over a
// connected unix stream socket. Shared by both ends so that they cannot disagree on it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace google::protobuf {
class MessageLite;
}

namespace mortise {

// Larger frames are refused by both ends: the peer is another process, possibly one a guest has
// taken over, and a length field must not make us allocate without bound.
inline constexpr uint32_t kMaxControlFrameBytes = 1 << 20;

// `message` serialized, with its length prefix.
absl::StatusOr<std::string> frame_message(const google::protobuf::MessageLite& message);

// Writes all of `bytes` to the socket `fd`, retrying after EINTR and short writes. MSG_NOSIGNAL:
// a peer that has gone away is an error (EPIPE), not a SIGPIPE.
absl::Status write_all(int fd, std::string_view bytes);

// Frames `message` and writes it to `fd`.
absl::Status send_message(int fd, const google::protobuf::MessageLite& message);

// Splits a byte stream into frames; fed by blocking or non-blocking reads alike.
class FrameReader {
 public:
  void append(const char* data, size_t size);
  // The next complete frame's payload, or nothing while more bytes are needed. An oversized
  // length is an error after which the stream cannot be trusted again.
  absl::StatusOr<std::optional<std::string>> next_frame();
  // Parses the next complete frame into `message`: true when one was parsed, false while more
  // bytes are needed, an error for an oversized or unparsable frame.
  absl::StatusOr<bool> next_message(google::protobuf::MessageLite& message);

 private:
  std::string buffer_;
  size_t consumed_ = 0;  // bytes of buffer_ already handed out
};

// What one read from a socket brought.
enum class ReadOutcome { kData, kEndOfFile, kWouldBlock };

// Reads what is available from `fd` into `reader` (one recv). With `nonblocking`, returns
// kWouldBlock instead of waiting.
absl::StatusOr<ReadOutcome> read_into(int fd, FrameReader& reader, bool nonblocking);

}  // namespace mortise
