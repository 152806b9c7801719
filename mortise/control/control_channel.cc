// Control channel framing; see control_channel.h.
#include "control_channel.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include <google/protobuf/message_lite.h>

#include "absl/strings/str_cat.h"

namespace mortise {

absl::StatusOr<std::string> frame_message(const google::protobuf::MessageLite& message) {
  const size_t size = message.ByteSizeLong();
  if (size > kMaxControlFrameBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "control message of ", size, " bytes exceeds the frame limit of ", kMaxControlFrameBytes));
  }
  std::string frame(4 + size, '\0');
  for (int i = 0; i < 4; ++i) frame[i] = static_cast<char>((size >> (8 * i)) & 0xff);
  if (!message.SerializeToArray(frame.data() + 4, static_cast<int>(size))) {
    return absl::InternalError("cannot serialize control message");
  }
  return frame;
}

absl::Status write_all(int fd, std::string_view bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t written = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (written < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(
          absl::StrCat("control channel write failed: ", std::strerror(errno)));
    }
    done += static_cast<size_t>(written);
  }
  return absl::OkStatus();
}

absl::Status send_message(int fd, const google::protobuf::MessageLite& message) {
  absl::StatusOr<std::string> frame = frame_message(message);
  if (!frame.ok()) return frame.status();
  return write_all(fd, *frame);
}

void FrameReader::append(const char* data, size_t size) {
  // Drop what was handed out before growing, so the buffer stays about one frame long.
  if (consumed_ > 0 && consumed_ * 2 >= buffer_.size()) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  buffer_.append(data, size);
}

absl::StatusOr<std::optional<std::string>> FrameReader::next_frame() {
  const size_t available = buffer_.size() - consumed_;
  if (available < 4) return std::nullopt;
  uint32_t length = 0;
  for (int i = 0; i < 4; ++i) {
    length |= static_cast<uint32_t>(static_cast<uint8_t>(buffer_[consumed_ + i])) << (8 * i);
  }
  if (length > kMaxControlFrameBytes) {
    return absl::DataLossError(absl::StrCat("control frame of ", length,
                                            " bytes exceeds the limit of ", kMaxControlFrameBytes));
  }
  if (available < 4 + static_cast<size_t>(length)) return std::nullopt;
  std::string payload = buffer_.substr(consumed_ + 4, length);
  consumed_ += 4 + length;
  if (consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  }
  return payload;
}

absl::StatusOr<bool> FrameReader::next_message(google::protobuf::MessageLite& message) {
  absl::StatusOr<std::optional<std::string>> frame = next_frame();
  if (!frame.ok()) return frame.status();
  if (!frame->has_value()) return false;
  if (!message.ParseFromString(**frame)) {
    return absl::DataLossError(absl::StrCat("control frame of ", (*frame)->size(),
                                            " bytes is not a valid ", message.GetTypeName()));
  }
  return true;
}

absl::StatusOr<ReadOutcome> read_into(int fd, FrameReader& reader, bool nonblocking) {
  char buffer[16384];
  for (;;) {
    const ssize_t count = ::recv(fd, buffer, sizeof(buffer), nonblocking ? MSG_DONTWAIT : 0);
    if (count > 0) {
      reader.append(buffer, static_cast<size_t>(count));
      return ReadOutcome::kData;
    }
    if (count == 0) return ReadOutcome::kEndOfFile;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return ReadOutcome::kWouldBlock;
    // A peer that died with unread data in its receive queue resets the connection; to us that
    // is the same as end of file.
    if (errno == ECONNRESET) return ReadOutcome::kEndOfFile;
    return absl::UnavailableError(
        absl::StrCat("control channel read failed: ", std::strerror(errno)));
  }
}

}  // namespace mortise
