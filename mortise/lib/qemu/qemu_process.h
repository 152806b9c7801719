// One QEMU process, started with exactly the descriptors it is meant to have (each at a fixed
// number) and bound to the thread that started it: it is killed when that thread ends
// (PR_SET_PDEATHSIG), so no QEMU outlives the Mortise process that answers for it. Its stderr
// (QEMU's own diagnostics) comes back on a pipe.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kvm.h"

namespace mortise {

struct QemuLaunch {
  std::string binary;
  std::vector<std::string> arguments;  // after the program name
  // {number in QEMU, our descriptor}: each is duplicated onto its number in the child; nothing
  // else of ours is inherited. Numbers from 3 on.
  std::vector<std::pair<int, int>> descriptors;
};

class QemuProcess {
 public:
  static absl::StatusOr<QemuProcess> start(const QemuLaunch& launch);
  QemuProcess(QemuProcess&& other) noexcept;
  QemuProcess& operator=(QemuProcess&&) = delete;
  QemuProcess(const QemuProcess&) = delete;
  // Kills and reaps a QEMU that is still running.
  ~QemuProcess();

  pid_t pid() const { return pid_; }
  // Readable once the process has ended.
  int pidfd() const { return pidfd_.get(); }
  // QEMU's stderr; end of file once it has exited.
  int stderr_fd() const { return stderr_.get(); }
  // SIGKILL unless already reaped.
  void kill();
  // The wait status once the process has ended (reaping it), nothing while it runs.
  std::optional<int> try_reap();

 private:
  QemuProcess(pid_t pid, FileDescriptor pidfd, FileDescriptor stderr_fd)
      : pid_(pid), pidfd_(std::move(pidfd)), stderr_(std::move(stderr_fd)) {}

  pid_t pid_ = -1;
  FileDescriptor pidfd_;
  FileDescriptor stderr_;
  std::optional<int> wait_status_;
};

}  // namespace mortise
