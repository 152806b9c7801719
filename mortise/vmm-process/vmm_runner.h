// One mortise-vmm process: runs one Tenon instance on its main thread and obeys mortised over
// the control channel (proto/tenon/v1/vmm.proto) from a control thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine.h"
#include "ivc_channel.h"
#include "tenon/v1/mortise.pb.h"

namespace mortise {

struct VmmOptions {
  std::string name;  // the VM's name, for diagnostics only
  EngineKind engine = EngineKind::kKvm;
  QemuSettings qemu;  // for the qemu engine
  int control_fd = -1;
  std::string image_path;
  int image_fd = -1;  // instead of image_path: read the image from this descriptor, then close it
  // Instead of an image: restore the snapshot in this descriptor (then closed); the instance
  // starts paused, and `memory_bytes` must match the snapshot's.
  int snapshot_fd = -1;
  uint64_t memory_bytes = 0;
  uint64_t stack_bytes = 16 << 10;
  uint64_t app_run_ns = 0;
  tenon::v1::CpuPolicy cpu_policy = tenon::v1::CPU_POLICY_ANYWHERE;
  // Every thread of the process starts here (the management partition); the vCPU thread then
  // moves to `vcpu_cpu` when one is given.
  std::vector<int> management_cpus;
  std::optional<int> vcpu_cpu;
  int rt_priority = 0;  // SCHED_FIFO priority of the vCPU thread; 0: ordinary scheduling
  size_t console_buffer_bytes = 64 << 10;
  std::vector<IvcEndpointConfig> channels;  // inter-VM channel endpoints (inherited descriptors)
};

struct ProcessStart {
  uint64_t tsc = 0;
  std::chrono::steady_clock::time_point time;
};

// Runs the instance to its end; the process exit status (0 once the instance ran and its exit
// was reported, 1 when it could not be created).
int run_vmm(const VmmOptions& options, const ProcessStart& start);

}  // namespace mortise
