// Console sinks; see console_sink.h.
#include "console_sink.h"

#include <unistd.h>

#include <cerrno>

namespace mortise {

void FileConsole::write(std::span<const uint8_t> bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t written = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return;
    done += static_cast<size_t>(written);
  }
}

void BufferConsole::write(std::span<const uint8_t> bytes) {
  std::lock_guard lock(mutex_);
  buffer_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  if (buffer_.size() > capacity_) buffer_.erase(0, buffer_.size() - capacity_);
}

std::string BufferConsole::contents() const {
  std::lock_guard lock(mutex_);
  return buffer_;
}

}  // namespace mortise
