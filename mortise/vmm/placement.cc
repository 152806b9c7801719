// Host partitioning and vCPU thread placement; see placement.h.
#include "placement.h"

#include <pthread.h>
#include <sched.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "instance.h"

namespace mortise {

HostPartition default_partition() {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0) {
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (CPU_ISSET(cpu, &allowed)) cpus.push_back(cpu);
    }
  }
  if (cpus.empty()) cpus.push_back(0);
  HostPartition partition;
  partition.realtime_cpus = {cpus.back()};
  if (cpus.size() > 1) cpus.pop_back();
  partition.management_cpus = cpus;
  return partition;
}

std::string describe(const HostPartition& partition) {
  return absl::StrCat("management cpus [", absl::StrJoin(partition.management_cpus, ","),
                      "], real-time cpus [", absl::StrJoin(partition.realtime_cpus, ","), "]");
}

namespace {

// The CPU a request pins to, if any, and its one-CPU mask.
struct Pin {
  int cpu;
  cpu_set_t set;
};
absl::StatusOr<std::optional<Pin>> pin_of(const PlacementRequest& request,
                                          const HostPartition& partition) {
  std::optional<int> cpu = request.cpu;
  if (!cpu && request.policy == PlacementPolicy::kRealtime) cpu = partition.realtime_cpus.front();
  if (!cpu) return std::nullopt;
  if (*cpu < 0 || *cpu >= CPU_SETSIZE) {
    return absl::InvalidArgumentError(absl::StrCat("CPU ", *cpu, " does not exist"));
  }
  Pin pin{*cpu, {}};
  CPU_ZERO(&pin.set);
  CPU_SET(*cpu, &pin.set);
  return pin;
}

}  // namespace

absl::StatusOr<Placement> place_current_thread(const PlacementRequest& request,
                                               const HostPartition& partition) {
  Placement placement;
  absl::StatusOr<std::optional<Pin>> pin = pin_of(request, partition);
  if (!pin.ok()) return pin.status();
  if (*pin) {
    const int cpu = (*pin)->cpu;
    const cpu_set_t& set = (*pin)->set;
    if (sched_setaffinity(0, sizeof(set), &set) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot pin to CPU ", cpu, ": ", std::strerror(errno)));
    }
    placement.cpu = cpu;
  }
  if (request.policy == PlacementPolicy::kRealtime) {
    sched_param parameters{};
    parameters.sched_priority = request.realtime_priority;
    const int error = pthread_setschedparam(pthread_self(), SCHED_FIFO, &parameters);
    if (error == 0) {
      placement.fifo = true;
      placement.priority = request.realtime_priority;
    } else {
      placement.note = absl::StrCat("SCHED_FIFO ", request.realtime_priority,
                                    " refused: ", std::strerror(error));
    }
  }
  return placement;
}

std::string describe(const Placement& placement) {
  std::string text = placement.cpu ? absl::StrCat("cpu ", *placement.cpu) : "cpu unpinned";
  absl::StrAppend(
      &text, placement.fifo ? absl::StrCat(", SCHED_FIFO ", placement.priority) : ", SCHED_OTHER");
  if (!placement.note.empty()) absl::StrAppend(&text, " (", placement.note, ")");
  return text;
}

absl::StatusOr<Placement> place_instance(const Instance& instance, const PlacementRequest& request,
                                         const HostPartition& partition) {
  const std::optional<pid_t> process = instance.vcpu_process();
  if (!process) return place_current_thread(request, partition);
  Placement placement;
  absl::StatusOr<std::optional<Pin>> pin = pin_of(request, partition);
  if (!pin.ok()) return pin.status();
  if (*pin) {
    const int cpu = (*pin)->cpu;
    const cpu_set_t& set = (*pin)->set;
    // Every thread QEMU has started (its vCPU thread exists from the start, held by -S); threads
    // it starts later inherit the mask of the thread that starts them.
    std::error_code error;
    const std::filesystem::path tasks = absl::StrCat("/proc/", *process, "/task");
    for (const auto& task : std::filesystem::directory_iterator(tasks, error)) {
      const pid_t thread = static_cast<pid_t>(std::atoi(task.path().filename().c_str()));
      if (thread > 0 && sched_setaffinity(thread, sizeof(set), &set) != 0 && errno != ESRCH) {
        return absl::InvalidArgumentError(
            absl::StrCat("cannot pin QEMU to CPU ", cpu, ": ", std::strerror(errno)));
      }
    }
    if (error) {
      return absl::InternalError(
          absl::StrCat("cannot list QEMU's threads in ", tasks.string(), ": ", error.message()));
    }
    placement.cpu = cpu;
  }
  if (request.policy == PlacementPolicy::kRealtime) {
    placement.note =
        "qemu engine: QEMU pinned, not SCHED_FIFO (its TCG vCPU thread would starve QEMU's "
        "other threads on that core)";
  }
  return placement;
}

}  // namespace mortise
