// One mortise-vmm child process as mortised holds it: its pid, a pidfd (so that signals and
// waits can never reach a recycled pid), and mortised's end of the control socketpair.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine.h"
#include "ivc_channel.h"
#include "kvm.h"
#include "tenon/v1/mortise.pb.h"
#include "tenon/v1/vmm.pb.h"

namespace mortise {

// What the child loads from the memfd it is handed: an image to boot, or a snapshot to restore
// (paused).
enum class VmmSource { kImage, kSnapshot };

struct VmmLaunch {
  std::string vmm_binary;
  std::string name;
  FileDescriptor image;  // a sealed memfd holding the image or snapshot; handed to the child
  VmmSource source = VmmSource::kImage;
  uint64_t memory_bytes = 0;
  uint64_t stack_bytes = 0;
  uint64_t app_run_ns = 0;
  tenon::v1::CpuPolicy cpu_policy = tenon::v1::CPU_POLICY_ANYWHERE;
  std::vector<int> management_cpus;
  std::optional<int> vcpu_cpu;
  uint32_t rt_priority = 0;
  size_t console_buffer_bytes = 64 << 10;
  // Inter-VM channel endpoints (borrowed descriptors, open until spawn returns): the child gets
  // each one's region, ring and doorbell as descriptors 5 + 3i, 6 + 3i and 7 + 3i.
  std::vector<IvcEndpointConfig> channels;
  EngineKind engine = EngineKind::kKvm;
  QemuSettings qemu;
};

class VmmChild {
 public:
  // Starts mortise-vmm with the control socket as its descriptor 3 and the image as 4; nothing
  // else of mortised's is inherited (every other descriptor is close-on-exec).
  static absl::StatusOr<std::unique_ptr<VmmChild>> spawn(VmmLaunch launch);
  // Kills and reaps the child if that has not happened yet, and closes the descriptors.
  ~VmmChild();
  VmmChild(const VmmChild&) = delete;
  VmmChild& operator=(const VmmChild&) = delete;

  pid_t pid() const { return pid_; }
  int control_fd() const { return control_.get(); }
  int pidfd() const { return pidfd_.get(); }

  // Writes one command; several threads may send at once.
  absl::Status send(const tenon::v1::VmmCommand& command);
  // SIGKILL, unless the child has been reaped already.
  void kill();
  // Reaps the child when it has ended: its wait status, or nothing while it runs.
  std::optional<int> try_reap();

 private:
  VmmChild(pid_t pid, FileDescriptor control, FileDescriptor pidfd)
      : pid_(pid), control_(std::move(control)), pidfd_(std::move(pidfd)) {}

  const pid_t pid_;
  FileDescriptor control_;
  FileDescriptor pidfd_;
  std::mutex send_mutex_;
  std::mutex reap_mutex_;
  std::optional<int> wait_status_;
};

// "killed by signal 9 (Killed)", "exited with status 3".
std::string describe_wait_status(int wait_status);

}  // namespace mortise
