// One VM under mortised; see managed_vm.h.
//
// State changes follow the child's events, which the monitor thread delivers in the order the
// child sent them: `started` -> RUNNING, `paused` -> PAUSED, `resumed` -> RUNNING, `exited` ->
// terminal, and the end of the process without `exited` -> CRASHED. An API thread only sends
// the command and waits for its answer, so a guest that exits right after it started can never
// be reported RUNNING after its exit.
#include "managed_vm.h"


#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "time/proto_time.h"

namespace mortise {
namespace {

bool is_terminal(tenon::v1::VmState state) {
  return state == tenon::v1::VM_STATE_EXITED || state == tenon::v1::VM_STATE_FAULTED ||
         state == tenon::v1::VM_STATE_CRASHED;
}

tenon::v1::VmState state_after(tenon::v1::ExitKind kind) {
  switch (kind) {
    case tenon::v1::EXIT_KIND_GUEST_EXIT:
    case tenon::v1::EXIT_KIND_TIME_LIMIT:
    case tenon::v1::EXIT_KIND_STOPPED:
      return tenon::v1::VM_STATE_EXITED;
    case tenon::v1::EXIT_KIND_GUEST_FAULT:
    case tenon::v1::EXIT_KIND_GUEST_PANIC:
    case tenon::v1::EXIT_KIND_VIOLATION:
      return tenon::v1::VM_STATE_FAULTED;
    default:
      return tenon::v1::VM_STATE_CRASHED;
  }
}

absl::Status status_of(const tenon::v1::VmmFailure& failure) {
  return absl::Status(static_cast<absl::StatusCode>(failure.code()), failure.message());
}

}  // namespace

std::string state_name(tenon::v1::VmState state) {
  std::string name = tenon::v1::VmState_Name(state);
  if (absl::StartsWith(name, "VM_STATE_")) name.erase(0, 9);
  return name;
}

ManagedVm::ManagedVm(VmIdentity identity, size_t console_capacity, VmTimeouts timeouts)
    : identity_(std::move(identity)), timeouts_(timeouts), console_(console_capacity) {}

ManagedVm::~ManagedVm() = default;

// ---- Events from the child (monitor thread) -----------------------------------------------

void ManagedVm::on_event(const tenon::v1::VmmEvent& event) {
  std::lock_guard lock(mutex_);
  const uint64_t id = event.request_id();
  const absl::Time now = absl::Now();
  switch (event.event_case()) {
    case tenon::v1::VmmEvent::kReady:
      ready_ = true;
      cpu_grant_ = event.ready().cpu();
      if (!identity_.placement_note.empty()) {
        cpu_grant_.set_note(cpu_grant_.note().empty()
                                ? identity_.placement_note
                                : absl::StrCat(identity_.placement_note, "; ", cpu_grant_.note()));
      }
      break;
    case tenon::v1::VmmEvent::kFailed:
      if (id == 0 && !ready_) load_failure_ = status_of(event.failed());
      break;
    case tenon::v1::VmmEvent::kStarted:
      if (state_ == tenon::v1::VM_STATE_CREATED) {
        state_ = tenon::v1::VM_STATE_RUNNING;
        start_time_ = now;
        running_since_ = now;
      }
      break;
    case tenon::v1::VmmEvent::kPaused:
      if (state_ == tenon::v1::VM_STATE_RUNNING) {
        end_running_span(now);
        state_ = tenon::v1::VM_STATE_PAUSED;
        ++pauses_;
      }
      break;
    case tenon::v1::VmmEvent::kResumed:
      if (state_ == tenon::v1::VM_STATE_PAUSED) {
        state_ = tenon::v1::VM_STATE_RUNNING;
        running_since_ = now;
        if (!start_time_) start_time_ = now;  // the first Resume after a Restore
      }
      break;
    case tenon::v1::VmmEvent::kExited:
      exit_reported_ = true;
      if (!is_terminal(state_)) set_terminal(event.exited());
      break;
    case tenon::v1::VmmEvent::kConsole:
      console_.append(event.console().offset(), event.console().data(), now);
      break;
    case tenon::v1::VmmEvent::kTelemetry:
      last_telemetry_ = event.telemetry();
      break;
    case tenon::v1::VmmEvent::kSnapshotted:
      break;  // an answer only; the VM's state did not change
    case tenon::v1::VmmEvent::EVENT_NOT_SET:
      break;
  }
  if (id != 0 && outstanding_.count(id) != 0) answers_[id] = event;
  ++change_count_;
  changed_.notify_all();
}

void ManagedVm::on_protocol_error(const std::string& message) {
  std::cerr << "mortised: VM " << identity_.name << ": mortise-vmm broke the control protocol ("
            << message << "); killing it" << std::endl;
  std::lock_guard lock(mutex_);
  protocol_error_ = message;
}

void ManagedVm::on_exit(int wait_status) {
  std::lock_guard lock(mutex_);
  const std::string how = absl::StrCat(
      "mortise-vmm (pid ", vmm_pid_, ") ", describe_wait_status(wait_status),
      protocol_error_.empty() ? "" : " after breaking the control protocol: ", protocol_error_);
  vmm_ended_ = true;
  vmm_pid_ = 0;
  if (!ready_ && !load_failure_) {
    load_failure_ = absl::InternalError(absl::StrCat(how, " while loading the image"));
  } else if (ready_ && !exit_reported_ && !is_terminal(state_)) {
    tenon::v1::ExitReason reason;
    if (stop_requested_) {
      // Destroy asked for the stop and had to force it.
      reason.set_kind(tenon::v1::EXIT_KIND_STOPPED);
      reason.set_message(absl::StrCat("stopped on request; ", how));
    } else {
      reason.set_kind(tenon::v1::EXIT_KIND_VMM_CRASHED);
      reason.set_message(how);
    }
    *reason.mutable_time() = tenon::time::to_proto(absl::Now());
    set_terminal(reason);
  }
  ++change_count_;
  changed_.notify_all();
}

void ManagedVm::set_terminal(tenon::v1::ExitReason reason) {
  end_running_span(absl::Now());
  state_ = state_after(reason.kind());
  exit_reason_ = std::move(reason);
}

void ManagedVm::end_running_span(absl::Time now) {
  if (running_since_) {
    run_time_ += now - *running_since_;
    running_since_.reset();
  }
}

// ---- Requests to the child (API threads) --------------------------------------------------

absl::Status ManagedVm::illegal_in_current_state(const char* operation,
                                                 const char* legal_in) const {
  return absl::FailedPreconditionError(absl::StrCat("VM ", identity_.name, " is ",
                                                    state_name(state_), "; ", operation,
                                                    " is legal in ", legal_in, " only"));
}

absl::StatusOr<tenon::v1::VmmEvent> ManagedVm::request(tenon::v1::VmmCommand command,
                                                       absl::Duration timeout) {
  std::shared_ptr<VmmChild> child;
  uint64_t id = 0;
  {
    std::lock_guard lock(mutex_);
    if (vmm_ended_ || child_ == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "VM ", identity_.name, " is ", state_name(state_), "; its mortise-vmm has ended"));
    }
    id = next_request_id_++;
    outstanding_.insert(id);
    child = child_;
  }
  command.set_request_id(id);
  absl::Status sent = child->send(command);
  std::unique_lock lock(mutex_);
  if (sent.ok()) {
    changed_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                      [&] { return answers_.count(id) != 0 || vmm_ended_; });
  } else {
    // Most likely the child has just died; give the monitor a moment to report it.
    changed_.wait_for(lock, std::chrono::seconds(1), [&] { return vmm_ended_; });
  }
  outstanding_.erase(id);
  if (auto answer = answers_.find(id); answer != answers_.end()) {
    tenon::v1::VmmEvent event = std::move(answer->second);
    answers_.erase(answer);
    return event;
  }
  if (vmm_ended_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "VM ", identity_.name, " is ", state_name(state_), "; its mortise-vmm has ended"));
  }
  if (!sent.ok()) return sent;
  return absl::UnavailableError(absl::StrCat("mortise-vmm of VM ", identity_.name,
                                             " did not answer within ",
                                             absl::FormatDuration(timeout)));
}

absl::StatusOr<tenon::v1::VmOperationResponse> ManagedVm::launch(std::unique_ptr<VmmChild> child,
                                                                 ChildMonitor& monitor,
                                                                 absl::Time received,
                                                                 VmmSource source) {
  std::shared_ptr<VmmChild> owned(std::move(child));
  {
    std::lock_guard lock(mutex_);
    child_ = owned;
    vmm_pid_ = owned->pid();
  }
  if (absl::Status watching = monitor.watch(*owned, shared_from_this()); !watching.ok()) {
    std::lock_guard lock(mutex_);
    child_.reset();
    vmm_ended_ = true;
    return watching;  // ~VmmChild kills and reaps it
  }
  std::unique_lock lock(mutex_);
  changed_.wait_for(lock, absl::ToChronoNanoseconds(timeouts_.load),
                    [&] { return ready_ || load_failure_ || vmm_ended_; });
  if (ready_ && !vmm_ended_) {
    const bool restored = source == VmmSource::kSnapshot;
    state_ = restored ? tenon::v1::VM_STATE_PAUSED : tenon::v1::VM_STATE_CREATED;
    const absl::Duration latency = absl::Now() - received;
    record_latency(restored ? tenon::v1::VM_OPERATION_RESTORE : tenon::v1::VM_OPERATION_CREATE,
                   latency, nullptr);
    tenon::v1::VmOperationResponse response;
    *response.mutable_vm() = describe_locked();
    *response.mutable_latency() = tenon::time::to_proto(latency);
    return response;
  }
  absl::Status failure = load_failure_.value_or(absl::DeadlineExceededError(absl::StrCat(
      "mortise-vmm did not load the image within ", absl::FormatDuration(timeouts_.load))));
  // The child must be gone before the name and the resources are given back.
  lock.unlock();
  owned->kill();
  lock.lock();
  changed_.wait(lock, [&] { return vmm_ended_; });
  child_.reset();
  return failure;
}

void ManagedVm::record_latency(tenon::v1::VmOperation operation, absl::Duration latency,
                               const google::protobuf::Duration* vmm_latency) {
  tenon::v1::OperationLatency& entry = latencies_[operation];
  entry.Clear();
  entry.set_operation(operation);
  *entry.mutable_latency() = tenon::time::to_proto(latency);
  *entry.mutable_time() = tenon::time::to_proto(absl::Now());
  if (vmm_latency != nullptr) *entry.mutable_vmm_latency() = *vmm_latency;
}

absl::StatusOr<tenon::v1::VmOperationResponse> ManagedVm::transition(Operation operation,
                                                                     absl::Time received) {
  std::lock_guard serialized(operation_mutex_);
  const char* name = "";
  tenon::v1::VmState legal_in = tenon::v1::VM_STATE_UNSPECIFIED;
  tenon::v1::VmOperation kind = tenon::v1::VM_OPERATION_UNSPECIFIED;
  tenon::v1::VmmCommand command;
  switch (operation) {
    case Operation::kStart:
      name = "Start";
      legal_in = tenon::v1::VM_STATE_CREATED;
      kind = tenon::v1::VM_OPERATION_START;
      command.mutable_start();
      break;
    case Operation::kPause:
      name = "Pause";
      legal_in = tenon::v1::VM_STATE_RUNNING;
      kind = tenon::v1::VM_OPERATION_PAUSE;
      command.mutable_pause();
      break;
    case Operation::kResume:
      name = "Resume";
      legal_in = tenon::v1::VM_STATE_PAUSED;
      kind = tenon::v1::VM_OPERATION_RESUME;
      command.mutable_resume();
      break;
  }
  {
    std::lock_guard lock(mutex_);
    if (destroyed_) return absl::NotFoundError(absl::StrCat("no VM named ", identity_.name));
    if (state_ != legal_in) return illegal_in_current_state(name, state_name(legal_in).c_str());
  }
  absl::StatusOr<tenon::v1::VmmEvent> answer = request(std::move(command), timeouts_.reply);
  if (!answer.ok()) return answer.status();
  std::lock_guard lock(mutex_);
  if (answer->has_failed()) {
    // The child refused: the guest ended between our check and its receipt of the command.
    const absl::Status refused = status_of(answer->failed());
    return absl::Status(refused.code(), absl::StrCat("VM ", identity_.name, " is ",
                                                     state_name(state_), ": ", refused.message()));
  }
  const google::protobuf::Duration* vmm_latency = nullptr;
  if (answer->has_started()) vmm_latency = &answer->started().latency();
  if (answer->has_paused()) vmm_latency = &answer->paused().latency();
  if (answer->has_resumed()) vmm_latency = &answer->resumed().latency();
  const absl::Duration latency = absl::Now() - received;
  record_latency(kind, latency, vmm_latency);
  tenon::v1::VmOperationResponse response;
  *response.mutable_vm() = describe_locked();
  *response.mutable_latency() = tenon::time::to_proto(latency);
  return response;
}

absl::StatusOr<tenon::v1::VmOperationResponse> ManagedVm::start(absl::Time received) {
  return transition(Operation::kStart, received);
}

absl::StatusOr<tenon::v1::VmOperationResponse> ManagedVm::pause(absl::Time received) {
  return transition(Operation::kPause, received);
}

absl::StatusOr<tenon::v1::VmOperationResponse> ManagedVm::resume(absl::Time received) {
  return transition(Operation::kResume, received);
}

absl::StatusOr<tenon::v1::SnapshotVmResponse> ManagedVm::snapshot(const std::string& path,
                                                                  absl::Time received) {
  std::lock_guard serialized(operation_mutex_);
  tenon::v1::VmmCommand command;
  tenon::v1::VmmSnapshot* snapshot = command.mutable_snapshot();
  snapshot->set_path(path);
  snapshot->set_run_id(identity_.run_id.empty() ? identity_.uid : identity_.run_id);
  snapshot->set_image_digest(identity_.image_digest);
  snapshot->set_vm_name(identity_.name);
  {
    std::lock_guard lock(mutex_);
    if (destroyed_) return absl::NotFoundError(absl::StrCat("no VM named ", identity_.name));
    if (state_ != tenon::v1::VM_STATE_RUNNING && state_ != tenon::v1::VM_STATE_PAUSED) {
      return illegal_in_current_state("Snapshot", "RUNNING and PAUSED");
    }
  }
  // Writing a large guest takes longer than a lifecycle command.
  absl::StatusOr<tenon::v1::VmmEvent> answer =
      request(std::move(command), timeouts_.reply + absl::Seconds(60));
  if (!answer.ok()) return answer.status();
  std::lock_guard lock(mutex_);
  if (answer->has_failed()) {
    const absl::Status refused = status_of(answer->failed());
    return absl::Status(refused.code(),
                        absl::StrCat("snapshot of VM ", identity_.name, ": ", refused.message()));
  }
  if (!answer->has_snapshotted()) {
    return absl::InternalError("mortise-vmm answered a snapshot with something else");
  }
  const tenon::v1::VmmSnapshotWritten& written = answer->snapshotted();
  const absl::Duration latency = absl::Now() - received;
  record_latency(tenon::v1::VM_OPERATION_SNAPSHOT, latency, &written.latency());
  tenon::v1::SnapshotVmResponse response;
  *response.mutable_vm() = describe_locked();
  response.set_path(written.path());
  response.set_size_bytes(written.size_bytes());
  response.set_digest(written.digest());
  *response.mutable_latency() = tenon::time::to_proto(latency);
  *response.mutable_pause_duration() = written.pause_duration();
  return response;
}

void ManagedVm::begin_stop() {
  std::shared_ptr<VmmChild> child;
  tenon::v1::VmmCommand stop;
  stop.mutable_stop();
  {
    std::lock_guard lock(mutex_);
    if (vmm_ended_ || child_ == nullptr) return;
    child = child_;
    stop_requested_ = true;
    stop.set_request_id(next_request_id_++);
  }
  (void)child->send(stop);
}

absl::StatusOr<tenon::v1::VmOperationResponse> ManagedVm::destroy(absl::Time received) {
  std::lock_guard serialized(operation_mutex_);
  std::shared_ptr<VmmChild> child;
  {
    std::lock_guard lock(mutex_);
    if (destroyed_) return absl::NotFoundError(absl::StrCat("no VM named ", identity_.name));
    child = child_;
    stop_requested_ = true;
  }
  if (child != nullptr) {
    tenon::v1::VmmCommand stop;
    stop.mutable_stop();
    {
      std::lock_guard lock(mutex_);
      stop.set_request_id(next_request_id_++);  // answered by `exited`, not by its id
    }
    const bool sent = child->send(stop).ok();
    std::unique_lock lock(mutex_);
    if (!sent || !changed_.wait_for(lock, absl::ToChronoNanoseconds(timeouts_.stop),
                                    [&] { return vmm_ended_; })) {
      lock.unlock();
      child->kill();
      lock.lock();
      changed_.wait(lock, [&] { return vmm_ended_; });
    }
  }
  std::lock_guard lock(mutex_);
  destroyed_ = true;
  const absl::Duration latency = absl::Now() - received;
  record_latency(tenon::v1::VM_OPERATION_DESTROY, latency, nullptr);
  tenon::v1::VmOperationResponse response;
  *response.mutable_vm() = describe_locked();
  *response.mutable_latency() = tenon::time::to_proto(latency);
  // The monitor has let go of the child (vmm_ended_); dropping it closes its descriptors.
  child_.reset();
  ++change_count_;
  changed_.notify_all();
  return response;
}

// ---- Reading -----------------------------------------------------------------------------

tenon::v1::InstanceTelemetry ManagedVm::stamped(tenon::v1::InstanceTelemetry telemetry) const {
  telemetry.set_instance_name(identity_.name);
  telemetry.set_run_id(identity_.run_id.empty() ? identity_.uid : identity_.run_id);
  if (!telemetry.has_sample_time()) *telemetry.mutable_sample_time() = tenon::time::to_proto(absl::Now());
  return telemetry;
}

tenon::v1::InstanceTelemetry ManagedVm::telemetry() {
  bool live = false;
  {
    std::lock_guard lock(mutex_);
    live = ready_ && !vmm_ended_ && !destroyed_;
  }
  if (live) {
    tenon::v1::VmmCommand command;
    command.mutable_get_telemetry();
    absl::StatusOr<tenon::v1::VmmEvent> answer = request(std::move(command), timeouts_.reply);
    if (answer.ok() && answer->has_telemetry()) return stamped(answer->telemetry().telemetry());
  }
  std::lock_guard lock(mutex_);
  return stamped(last_telemetry_ ? last_telemetry_->telemetry() : tenon::v1::InstanceTelemetry());
}

tenon::v1::Vm ManagedVm::describe(bool include_telemetry) {
  std::optional<tenon::v1::InstanceTelemetry> sample;
  if (include_telemetry) sample = telemetry();
  std::lock_guard lock(mutex_);
  tenon::v1::Vm vm = describe_locked();
  if (sample) *vm.mutable_telemetry() = std::move(*sample);
  return vm;
}

tenon::v1::Vm ManagedVm::describe_locked() const {
  tenon::v1::Vm vm;
  vm.set_name(identity_.name);
  vm.set_uid(identity_.uid);
  vm.set_state(state_);
  vm.set_image_digest(identity_.image_digest);
  vm.set_memory_bytes(identity_.memory_bytes);
  *vm.mutable_cpu() = cpu_grant_;
  vm.set_vmm_pid(vmm_ended_ ? 0 : static_cast<uint32_t>(vmm_pid_));
  *vm.mutable_create_time() = tenon::time::to_proto(identity_.create_time);
  if (start_time_) *vm.mutable_start_time() = tenon::time::to_proto(*start_time_);
  if (is_terminal(state_)) *vm.mutable_exit_reason() = exit_reason_;
  tenon::v1::VmStats* stats = vm.mutable_stats();
  stats->set_pauses(pauses_);
  absl::Duration run_time = run_time_;
  if (running_since_) run_time += absl::Now() - *running_since_;
  *stats->mutable_run_time() = tenon::time::to_proto(run_time);
  stats->set_console_bytes(console_.end_offset());
  if (last_telemetry_) {
    stats->set_vcpu_exits(last_telemetry_->vcpu_exits());
    if (last_telemetry_->has_boot_time())
      *stats->mutable_boot_time() = last_telemetry_->boot_time();
  }
  for (const auto& [operation, latency] : latencies_) *stats->add_operation_latencies() = latency;
  for (const tenon::v1::ChannelEndpoint& channel : identity_.channels) *vm.add_channels() = channel;
  return vm;
}

bool ManagedVm::destroyed() const {
  std::lock_guard lock(mutex_);
  return destroyed_;
}

bool ManagedVm::terminal() const {
  std::lock_guard lock(mutex_);
  return destroyed_ || is_terminal(state_);
}

uint64_t ManagedVm::change_count() const {
  std::lock_guard lock(mutex_);
  return change_count_;
}

void ManagedVm::wait_for_change(uint64_t seen, absl::Time deadline) {
  std::unique_lock lock(mutex_);
  changed_.wait_for(lock, absl::ToChronoNanoseconds(deadline - absl::Now()),
                    [&] { return change_count_ != seen; });
}

absl::StatusOr<ConsoleRing::Chunk> ManagedVm::console_from(uint64_t offset, size_t max_bytes,
                                                           bool* finished) const {
  std::lock_guard lock(mutex_);
  if (offset > console_.end_offset()) {
    return absl::OutOfRangeError(absl::StrCat("from_offset ", offset, " lies beyond the ",
                                              console_.end_offset(), " bytes VM ", identity_.name,
                                              " has written"));
  }
  ConsoleRing::Chunk chunk = console_.read(offset, max_bytes);
  // Console bytes arrive before the exit report, so a terminal VM has nothing more to come.
  *finished = chunk.data.empty() && (destroyed_ || is_terminal(state_));
  return chunk;
}

}  // namespace mortise
