// The mortise-vmm process logic; see vmm_runner.h.
//
// Threads: the main thread loads the image, places itself (pinning, SCHED_FIFO) and becomes the
// vCPU; a control thread reads commands and acts on the instance from the side (pause, resume,
// stop and telemetry are all callable while run() is in progress); the event sender writes every
// event. The helper threads are started before the main thread moves to a real-time core, so
// they stay in the management partition with ordinary scheduling.
#include "vmm_runner.h"

#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <google/protobuf/util/time_util.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "control_channel.h"
#include "event_sender.h"
#include "instance.h"
#include "kvm.h"
#include "kvm_instance.h"
#include "placement.h"
#include "qemu_instance.h"
#include "snapshot_file.h"
#include "telemetry_wire.h"
#include "tenon/abi.h"

namespace mortise {
namespace {

using google::protobuf::util::TimeUtil;
using Clock = std::chrono::steady_clock;

// How long the control thread waits for the vCPU thread to park or to leave its parking spot.
// The vCPU reacts within microseconds; this bound only keeps a wedged vCPU from wedging us too.
constexpr auto kVcpuReactionLimit = std::chrono::seconds(5);
// How long the final events may take to leave before the process exits anyway.
constexpr auto kFinalFlushLimit = std::chrono::seconds(5);
constexpr int kTelemetryReadAttempts = 100;
// How often a snapshot pauses a running guest to find it outside a telemetry update.
constexpr int kSnapshotPauseAttempts = 20;

google::protobuf::Duration to_duration(Clock::duration duration) {
  return TimeUtil::NanosecondsToDuration(
      std::chrono::duration_cast<std::chrono::nanoseconds>(duration).count());
}

absl::Status set_affinity(const std::vector<int>& cpus) {
  if (cpus.empty()) return absl::OkStatus();
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int cpu : cpus) {
    if (cpu < 0 || cpu >= CPU_SETSIZE) {
      return absl::InvalidArgumentError(absl::StrCat("CPU ", cpu, " does not exist"));
    }
    CPU_SET(cpu, &set);
  }
  if (sched_setaffinity(0, sizeof(set), &set) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot restrict mortise-vmm to the management CPUs: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

class VmmRunner {
 public:
  VmmRunner(const VmmOptions& options, const ProcessStart& start)
      : options_(options),
        start_(start),
        sender_(options.control_fd, options.console_buffer_bytes) {}

  int run();

 private:
  void control_loop();
  void handle(const tenon::v1::VmmCommand& command);
  void handle_start(uint64_t request_id);
  void handle_pause(uint64_t request_id);
  void handle_resume(uint64_t request_id);
  void handle_snapshot(uint64_t request_id, const tenon::v1::VmmSnapshot& command);
  // Reads, checks and restores the snapshot of options_.snapshot_fd.
  absl::StatusOr<std::unique_ptr<Instance>> restore_instance();
  void request_stop(std::string cause);
  void fail(uint64_t request_id, const absl::Status& status);
  // Waits (spinning: the vCPU thread reacts within microseconds) until `condition` holds.
  template <typename Condition>
  bool wait_for_vcpu(Condition condition);
  tenon::v1::VmmEvent telemetry_event(uint64_t request_id);
  void log(const std::string& message) const {
    std::cerr << "mortise-vmm[" << options_.name << "]: " << message << std::endl;
  }

  const VmmOptions& options_;
  const ProcessStart start_;
  EventSender sender_;
  std::unique_ptr<Instance> instance_;
  uint64_t tsc_khz_ = 0;

  std::mutex mutex_;
  std::condition_variable changed_;
  bool start_requested_ = false;
  bool stop_requested_ = false;
  std::string stop_cause_;
  uint64_t start_request_id_ = 0;
  Clock::time_point start_received_;
  std::atomic<bool> vcpu_started_{false};
  bool restored_ = false;  // from a snapshot: starts paused, is resumed instead of started
  std::atomic<bool> vcpu_finished_{false};
  std::atomic<bool> finishing_{false};  // the main thread is shutting the process down
  std::mutex telemetry_mutex_;          // the control and main threads both sample
  std::optional<tenon::v1::InstanceTelemetry> last_telemetry_;
};

void VmmRunner::fail(uint64_t request_id, const absl::Status& status) {
  tenon::v1::VmmEvent event;
  event.set_request_id(request_id);
  event.mutable_failed()->set_code(static_cast<int32_t>(status.code()));
  event.mutable_failed()->set_message(std::string(status.message()));
  sender_.send(std::move(event));
}

template <typename Condition>
bool VmmRunner::wait_for_vcpu(Condition condition) {
  const auto deadline = Clock::now() + kVcpuReactionLimit;
  while (!condition()) {
    if (Clock::now() > deadline) return false;
    // On a two-core host the vCPU may share our core; let it run.
    sched_yield();
  }
  return true;
}

tenon::v1::VmmEvent VmmRunner::telemetry_event(uint64_t request_id) {
  tenon::v1::VmmEvent event;
  event.set_request_id(request_id);
  tenon::v1::VmmTelemetry* telemetry = event.mutable_telemetry();
  // The guest keeps its page busy (seqlock odd) only briefly, but when it is preempted mid-update
  // (its vCPU thread may share a core with this one) a reader can spin past the bound: give the
  // vCPU the CPU and try again, then fall back to the last good sample.
  absl::StatusOr<TelemetrySnapshot> snapshot = instance_->telemetry();
  for (int attempt = 0; !snapshot.ok() && attempt < kTelemetryReadAttempts; ++attempt) {
    sched_yield();
    snapshot = instance_->telemetry();
  }
  std::lock_guard lock(telemetry_mutex_);
  if (snapshot.ok()) last_telemetry_ = telemetry_to_wire(*snapshot, tsc_khz_);
  if (last_telemetry_) {
    *telemetry->mutable_telemetry() = *last_telemetry_;
  } else {
    // Not published yet: a sample without tasks, as the API promises.
    *telemetry->mutable_telemetry()->mutable_sample_time() = TimeUtil::GetCurrentTime();
  }
  telemetry->set_vcpu_exits(instance_->vcpu_exits());
  const BootTiming timing = instance_->boot_timing();
  if (timing.tsc_synchronized && timing.tsc_khz != 0 &&
      timing.main_entry_tsc > timing.host_start_tsc) {
    const uint64_t ticks = timing.main_entry_tsc - timing.host_start_tsc;
    *telemetry->mutable_boot_time() = TimeUtil::NanosecondsToDuration(static_cast<int64_t>(
        static_cast<double>(ticks) * 1e6 / static_cast<double>(timing.tsc_khz)));
  }
  return event;
}

void VmmRunner::handle_start(uint64_t request_id) {
  std::lock_guard lock(mutex_);
  if (start_requested_ || stop_requested_) {
    fail(request_id,
         absl::FailedPreconditionError(stop_requested_ ? "the instance is being stopped"
                                                       : "the instance was already started"));
    return;
  }
  start_requested_ = true;
  start_request_id_ = request_id;
  start_received_ = Clock::now();
  changed_.notify_all();
}

void VmmRunner::handle_pause(uint64_t request_id) {
  const Clock::time_point received = Clock::now();
  if (!vcpu_started_.load() || vcpu_finished_.load()) {
    fail(request_id,
         absl::FailedPreconditionError(vcpu_finished_.load() ? "the guest has stopped"
                                                             : "the guest has not started"));
    return;
  }
  if (instance_->paused()) {
    fail(request_id, absl::FailedPreconditionError("the guest is already paused"));
    return;
  }
  instance_->pause();
  // pause() also returns when run() had not yet begun; only a parked vCPU counts as paused.
  if (!wait_for_vcpu([&] { return instance_->paused() || vcpu_finished_.load(); })) {
    fail(request_id, absl::DeadlineExceededError("the vCPU did not leave the guest"));
    return;
  }
  if (vcpu_finished_.load()) {
    fail(request_id, absl::FailedPreconditionError("the guest has stopped"));
    return;
  }
  tenon::v1::VmmEvent event;
  event.set_request_id(request_id);
  event.mutable_paused()->set_operation(tenon::v1::VM_OPERATION_PAUSE);
  *event.mutable_paused()->mutable_latency() = to_duration(Clock::now() - received);
  *event.mutable_paused()->mutable_time() = TimeUtil::GetCurrentTime();
  sender_.send(std::move(event));
}

void VmmRunner::handle_resume(uint64_t request_id) {
  const Clock::time_point received = Clock::now();
  if (!instance_->paused()) {
    fail(request_id, absl::FailedPreconditionError("the guest is not paused"));
    return;
  }
  instance_->resume();
  // The vCPU thread clears `paused` on its way from the parking spot back into KVM_RUN.
  if (!wait_for_vcpu([&] { return !instance_->paused() || vcpu_finished_.load(); })) {
    fail(request_id, absl::DeadlineExceededError("the vCPU did not return to the guest"));
    return;
  }
  tenon::v1::VmmEvent event;
  event.set_request_id(request_id);
  event.mutable_resumed()->set_operation(tenon::v1::VM_OPERATION_RESUME);
  *event.mutable_resumed()->mutable_latency() = to_duration(Clock::now() - received);
  *event.mutable_resumed()->mutable_time() = TimeUtil::GetCurrentTime();
  sender_.send(std::move(event));
}

void VmmRunner::handle_snapshot(uint64_t request_id, const tenon::v1::VmmSnapshot& command) {
  const Clock::time_point received = Clock::now();
  if (!vcpu_started_.load() || vcpu_finished_.load()) {
    fail(request_id,
         absl::FailedPreconditionError(vcpu_finished_.load() ? "the guest has stopped"
                                                             : "the guest has not started"));
    return;
  }
  // Commands are handled one at a time on this thread, so nothing pauses or resumes meanwhile.
  const bool was_running = !instance_->paused();
  Clock::time_point paused_at = received;
  // A guest caught in the middle of a telemetry update is let run on for a moment, so that the
  // restored instance's telemetry is readable while it is still paused.
  for (int attempt = 0; was_running && attempt < kSnapshotPauseAttempts; ++attempt) {
    if (attempt > 0) {
      instance_->resume();
      wait_for_vcpu([&] { return !instance_->paused() || vcpu_finished_.load(); });
      sched_yield();
    }
    instance_->pause();
    if (!wait_for_vcpu([&] { return instance_->paused() || vcpu_finished_.load(); })) {
      fail(request_id, absl::DeadlineExceededError("the vCPU did not leave the guest"));
      return;
    }
    if (vcpu_finished_.load()) {
      fail(request_id, absl::FailedPreconditionError("the guest has stopped"));
      return;
    }
    paused_at = Clock::now();
    if (!instance_->telemetry_mid_update()) break;
  }
  SnapshotLabels labels;
  labels.run_id = command.run_id();
  labels.image_digest = command.image_digest();
  labels.vm_name = command.vm_name();
  labels.console_offset = sender_.console_bytes();
  // Only the copy holds the guest out; hashing and writing happen while it runs again.
  absl::StatusOr<std::unique_ptr<SnapshotCapture>> captured = instance_->capture(labels);
  Clock::duration pause_duration = Clock::duration::zero();
  if (was_running) {
    instance_->resume();
    if (!wait_for_vcpu([&] { return !instance_->paused() || vcpu_finished_.load(); })) {
      log("the vCPU did not return to the guest after a snapshot");
    }
    pause_duration = Clock::now() - paused_at;
  }
  absl::StatusOr<snapshot::Written> written =
      captured.ok()
          ? write_snapshot_file(command.path(),
                                [&](const snapshot::Sink& sink) {
                                  return snapshot::write_snapshot((*captured)->contents(), sink);
                                })
          : absl::StatusOr<snapshot::Written>(captured.status());
  if (!written.ok()) {
    fail(request_id, written.status());
    return;
  }
  tenon::v1::VmmEvent event;
  event.set_request_id(request_id);
  tenon::v1::VmmSnapshotWritten* answer = event.mutable_snapshotted();
  answer->set_path(command.path());
  answer->set_size_bytes(written->size_bytes);
  answer->set_digest(written->digest);
  *answer->mutable_latency() = to_duration(Clock::now() - received);
  *answer->mutable_pause_duration() = to_duration(pause_duration);
  sender_.send(std::move(event));
}

absl::StatusOr<std::unique_ptr<Instance>> VmmRunner::restore_instance() {
  absl::StatusOr<std::string> bytes = read_snapshot_fd(options_.snapshot_fd);
  if (!bytes.ok()) return bytes.status();
  // mortised checked the file too; this process trusts nobody either.
  absl::StatusOr<snapshot::Snapshot> parsed = snapshot::parse_snapshot(
      {reinterpret_cast<const uint8_t*>(bytes->data()), bytes->size()}, tenon::abi::kVersion);
  if (!parsed.ok()) return parsed.status();
  if (options_.memory_bytes != 0 && parsed->memory_bytes != options_.memory_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("the snapshot has ", parsed->memory_bytes,
                                                   " bytes of guest memory, --memory says ",
                                                   options_.memory_bytes));
  }
  absl::StatusOr<std::unique_ptr<Instance>> instance;
  if (options_.engine == EngineKind::kQemu) {
    absl::StatusOr<std::unique_ptr<QemuInstance>> restored =
        QemuInstance::restore(*parsed, options_.qemu, sender_);
    if (!restored.ok()) return restored.status();
    instance = std::unique_ptr<Instance>(std::move(*restored));
  } else {
    absl::StatusOr<Kvm> kvm = Kvm::open();
    if (!kvm.ok()) return kvm.status();
    const ExitControl exit_control = options_.cpu_policy == tenon::v1::CPU_POLICY_DEDICATED
                                         ? ExitControl::kLowLatency
                                         : ExitControl::kDefault;
    absl::StatusOr<std::unique_ptr<KvmInstance>> restored =
        KvmInstance::restore(*kvm, *parsed, exit_control, sender_);
    if (!restored.ok()) return restored.status();
    instance = std::unique_ptr<Instance>(std::move(*restored));
  }
  sender_.set_console_offset(parsed->machine.console_offset);
  return instance;
}

void VmmRunner::request_stop(std::string cause) {
  {
    std::lock_guard lock(mutex_);
    if (!stop_requested_) {
      stop_requested_ = true;
      stop_cause_ = std::move(cause);
    }
  }
  changed_.notify_all();
  instance_->stop();
}

void VmmRunner::handle(const tenon::v1::VmmCommand& command) {
  const uint64_t id = command.request_id();
  switch (command.command_case()) {
    case tenon::v1::VmmCommand::kStart:
      handle_start(id);
      return;
    case tenon::v1::VmmCommand::kPause:
      handle_pause(id);
      return;
    case tenon::v1::VmmCommand::kResume:
      handle_resume(id);
      return;
    case tenon::v1::VmmCommand::kStop:
      request_stop("stopped on request of mortised");
      return;
    case tenon::v1::VmmCommand::kGetTelemetry:
      sender_.send(telemetry_event(id));
      return;
    case tenon::v1::VmmCommand::kSnapshot:
      handle_snapshot(id, command.snapshot());
      return;
    case tenon::v1::VmmCommand::COMMAND_NOT_SET:
      break;
  }
  // A newer mortised may know commands this mortise-vmm does not.
  fail(id, absl::UnimplementedError("unknown command"));
}

void VmmRunner::control_loop() {
  FrameReader reader;
  for (;;) {
    tenon::v1::VmmCommand command;
    absl::StatusOr<bool> parsed = reader.next_message(command);
    if (!parsed.ok()) {
      if (!finishing_.load()) log(absl::StrCat("control channel: ", parsed.status().message()));
      break;
    }
    if (*parsed) {
      handle(command);
      continue;
    }
    absl::StatusOr<ReadOutcome> outcome =
        read_into(options_.control_fd, reader, /*nonblocking=*/false);
    if (!outcome.ok()) {
      if (!finishing_.load()) log(std::string(outcome.status().message()));
      break;
    }
    if (*outcome == ReadOutcome::kEndOfFile) break;
  }
  // No supervisor, no instance: a guest must never outlive the mortised that answers for it.
  if (!finishing_.load()) request_stop("stopped because mortised closed the control channel");
}

int VmmRunner::run() {
  if (absl::Status status = set_affinity(options_.management_cpus); !status.ok()) {
    log(std::string(status.message()));
  }
  sender_.start();
  auto fail_creation = [&](const absl::Status& status) {
    log(absl::StrCat("cannot create the instance: ", status.message()));
    fail(0, status);
    sender_.flush(kFinalFlushLimit);
    return 1;
  };

  InstanceConfig config;
  config.image_path = options_.image_fd >= 0 ? absl::StrCat("/proc/self/fd/", options_.image_fd)
                                             : options_.image_path;
  config.memory_bytes = options_.memory_bytes;
  config.stack_bytes = options_.stack_bytes;
  config.app_run_ns = options_.app_run_ns;
  config.channels = options_.channels;
  config.exit_control = options_.cpu_policy == tenon::v1::CPU_POLICY_DEDICATED
                            ? ExitControl::kLowLatency
                            : ExitControl::kDefault;
  absl::StatusOr<std::unique_ptr<Instance>> instance;
  if (options_.snapshot_fd >= 0) {
    instance = restore_instance();
    close(options_.snapshot_fd);
    restored_ = true;
    // Resumed, never started; it counts as started for pause and snapshot.
    vcpu_started_.store(true);
    std::lock_guard lock(mutex_);
    start_requested_ = true;
  } else {
    instance = create_instance(options_.engine, config, options_.qemu, sender_, start_.tsc);
  }
  if (options_.image_fd >= 0) close(options_.image_fd);
  // The VM and the region mapping hold their own references to the channel descriptors.
  for (const IvcEndpointConfig& channel : options_.channels) {
    for (int fd : {channel.region_fd, channel.ring_fd, channel.doorbell_fd}) close(fd);
  }
  if (!instance.ok()) return fail_creation(instance.status());
  instance_ = std::move(*instance);
  tsc_khz_ = instance_->boot_timing().tsc_khz;

  std::thread control([this] { control_loop(); });

  PlacementRequest request;
  request.cpu = options_.vcpu_cpu;
  request.policy =
      options_.rt_priority > 0 ? PlacementPolicy::kRealtime : PlacementPolicy::kAnywhere;
  request.realtime_priority = options_.rt_priority;
  HostPartition partition = default_partition();
  absl::StatusOr<Placement> placement = place_instance(*instance_, request, partition);

  ExitReason reason;
  if (!placement.ok()) {
    fail(0, placement.status());
    request_stop("placement failed");
    reason = {ExitKind::kTimeout, 0, std::string(placement.status().message())};
  } else {
    tenon::v1::VmmEvent ready;
    *ready.mutable_ready()->mutable_cpu() = placement_to_wire(options_.cpu_policy, *placement);
    ready.mutable_ready()->set_tsc_frequency_khz(tsc_khz_);
    ready.mutable_ready()->set_disabled_exits(instance_->disabled_exits());
    *ready.mutable_ready()->mutable_load_time() = to_duration(Clock::now() - start_.time);
    sender_.send(std::move(ready));

    bool start = false;
    {
      std::unique_lock lock(mutex_);
      changed_.wait(lock, [&] { return start_requested_ || stop_requested_; });
      start = start_requested_ && !stop_requested_;
    }
    if (start && restored_) {
      // Parked in run() until mortised resumes it.
      reason = instance_->run(std::nullopt);
    } else if (start) {
      vcpu_started_.store(true);
      tenon::v1::VmmEvent started;
      started.set_request_id(start_request_id_);
      started.mutable_started()->set_operation(tenon::v1::VM_OPERATION_START);
      *started.mutable_started()->mutable_latency() = to_duration(Clock::now() - start_received_);
      *started.mutable_started()->mutable_time() = TimeUtil::GetCurrentTime();
      sender_.send(std::move(started));
      reason = instance_->run(std::nullopt);
    } else {
      reason = {ExitKind::kTimeout, 0, "the guest never ran"};
    }
  }
  vcpu_finished_.store(true);
  if (reason.kind == ExitKind::kTimeout) {
    std::lock_guard lock(mutex_);
    reason.message =
        absl::StrCat(stop_cause_.empty() ? "stopped" : stop_cause_, " (", reason.message, ")");
  }

  // The last sample first, so that mortised has it when it learns of the exit.
  sender_.send(telemetry_event(0));
  tenon::v1::VmmEvent exited;
  *exited.mutable_exited() = exit_reason_to_wire(reason);
  sender_.send(std::move(exited));
  sender_.flush(kFinalFlushLimit);

  finishing_.store(true);
  // Wakes the control thread out of its read.
  shutdown(options_.control_fd, SHUT_RD);
  control.join();
  return 0;
}

}  // namespace

int run_vmm(const VmmOptions& options, const ProcessStart& start) {
  VmmRunner runner(options, start);
  return runner.run();
}

}  // namespace mortise
