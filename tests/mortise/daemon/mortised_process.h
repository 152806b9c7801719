// Test and benchmark support: a real mortised process serving on a socket in a fresh temporary
// directory, with a generated gRPC client for it, and the polling helpers the tests wait with.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tenon/v1/mortise.grpc.pb.h"

namespace mortise::testing {

struct MortisedOptions {
  std::string mortised_binary;
  std::string image_directory;  // --image-dir
  std::vector<std::string> extra_arguments;
  absl::Duration startup_limit = absl::Seconds(20);
};

class MortisedProcess {
 public:
  // Starts mortised and returns once it answers GetHostInfo.
  static absl::StatusOr<std::unique_ptr<MortisedProcess>> start(const MortisedOptions& options);
  // Stops mortised (SIGTERM, then SIGKILL after 20 s) and removes the temporary directory.
  ~MortisedProcess();

  pid_t pid() const { return pid_; }
  const std::string& socket_path() const { return socket_path_; }
  const std::string& directory() const { return directory_; }
  // mortised's stderr so far.
  std::string log() const;

  tenon::v1::MortiseService::Stub& stub() { return *stub_; }
  // A client on a connection of its own.
  std::unique_ptr<tenon::v1::MortiseService::Stub> new_stub() const;
  // SIGTERM and wait: mortised's exit status (as from waitpid), or an error after 20 s.
  absl::StatusOr<int> terminate();

 private:
  MortisedProcess() = default;

  pid_t pid_ = -1;
  bool reaped_ = false;
  std::string directory_;
  std::string socket_path_;
  std::string log_path_;
  std::unique_ptr<tenon::v1::MortiseService::Stub> stub_;
};

// Polls `condition` (every millisecond or so) until it holds or `limit` passes; whether it held.
bool wait_until(const std::function<bool()>& condition, absl::Duration limit);

// Entries in /proc/<pid>/fd, or -1.
int open_descriptor_count(pid_t pid);
// The process exists and has not ended (a zombie has ended).
bool process_running(pid_t pid);
// Resident and proportional set size of a process, in KiB (from /proc/<pid>/smaps_rollup).
struct MemoryUse {
  uint64_t rss_kib = 0;
  uint64_t pss_kib = 0;
};
absl::StatusOr<MemoryUse> memory_use(pid_t pid);

}  // namespace mortise::testing
