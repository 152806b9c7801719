// Where an instance's vCPU runs: the host is split into a management partition (housekeeping,
// daemons) and a real-time partition (cores handed to Tenon vCPUs). A real-time placement pins
// the vCPU thread to a real-time core with SCHED_FIFO priority, on the kvm engine; on the qemu
// engine it pins QEMU to that core and leaves it SCHED_OTHER (place_instance).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace mortise {

class Instance;

struct HostPartition {
  std::vector<int> management_cpus;
  std::vector<int> realtime_cpus;
};

// The default split of the CPUs this process may use: the highest-numbered CPU is real-time,
// the rest management; a one-CPU host has both on CPU 0.
HostPartition default_partition();
std::string describe(const HostPartition& partition);

enum class PlacementPolicy { kAnywhere, kRealtime };

struct PlacementRequest {
  PlacementPolicy policy = PlacementPolicy::kAnywhere;
  std::optional<int> cpu;  // overrides the partition's choice
  int realtime_priority = 90;
};

struct Placement {
  std::optional<int> cpu;  // pinned CPU, if any
  bool fifo = false;       // SCHED_FIFO obtained
  int priority = 0;
  std::string note;  // what was asked but not granted, and why
};

// Applies the request to the calling thread. A CPU outside this process's set is an error;
// an RT priority the host refuses (no CAP_SYS_NICE) is granted as SCHED_OTHER with a note.
absl::StatusOr<Placement> place_current_thread(const PlacementRequest& request,
                                               const HostPartition& partition);
std::string describe(const Placement& placement);

// Places a created instance's vCPU. On the kvm engine the vCPU is the calling thread (the one
// that will call run()): place_current_thread. On the qemu engine it is a thread of QEMU: every
// thread of QEMU is pinned to the CPU the request names (the real-time core for kRealtime), never
// made SCHED_FIFO (TCG's vCPU thread would starve QEMU's own threads on that core, and the host
// with them); the calling thread, which only waits, is left where it is.
absl::StatusOr<Placement> place_instance(const Instance& instance, const PlacementRequest& request,
                                         const HostPartition& partition);

}  // namespace mortise
