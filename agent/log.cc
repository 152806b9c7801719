// See log.h.
#include "log.h"

#include <cstdio>
#include <mutex>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace tenon::agent {

void log_line(std::string_view text) {
  static std::mutex mutex;
  const std::string stamp =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  std::lock_guard lock(mutex);
  std::fprintf(stderr, "%s tenon-agent: %.*s\n", stamp.c_str(), static_cast<int>(text.size()),
               text.data());
  std::fflush(stderr);
}

}  // namespace tenon::agent
