// One VM as mortised manages it: the lifecycle state machine of MortiseService, the mortise-vmm
// child that runs it, and what mortised keeps of it (console ring, last telemetry, latencies).
// API threads call the lifecycle methods, which hand the work to the child over its control
// channel and wait for the answer; the child monitor thread delivers the child's events.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "child_monitor.h"
#include "console_ring.h"
#include "tenon/v1/mortise.pb.h"
#include "tenon/v1/vmm.pb.h"
#include "vmm_child.h"

namespace mortise {

struct VmIdentity {
  std::string name;
  std::string uid;
  // Telemetry run id: the uid for a created VM; a restored VM keeps the one of the run its
  // snapshot was taken from, because its counters continue.
  std::string run_id;
  std::string image_digest;
  uint64_t memory_bytes = 0;
  tenon::v1::CpuPolicy cpu_policy = tenon::v1::CPU_POLICY_ANYWHERE;
  std::optional<int> vcpu_cpu;  // the host CPU it was placed on (accounted by the Supervisor)
  std::string placement_note;   // what mortised did not grant of the CPU request, and why
  absl::Time create_time;
  std::vector<tenon::v1::ChannelEndpoint> channels;  // inter-VM channels it holds a side of
};

struct VmTimeouts {
  absl::Duration load = absl::Seconds(30);   // mortise-vmm start to ready
  absl::Duration reply = absl::Seconds(10);  // a command to its answer
  absl::Duration stop = absl::Seconds(5);    // stop to the process end, before SIGKILL
};

// "RUNNING" for VM_STATE_RUNNING.
std::string state_name(tenon::v1::VmState state);

class ManagedVm final : public ChildMonitor::Listener,
                        public std::enable_shared_from_this<ManagedVm> {
 public:
  ManagedVm(VmIdentity identity, size_t console_capacity, VmTimeouts timeouts);
  ~ManagedVm() override;

  const VmIdentity& identity() const { return identity_; }

  // Create and Restore: adopts the child, has `monitor` watch it, and waits until the instance
  // is loaded (CREATED; PAUSED when restored from a snapshot) or has failed to load. On failure
  // the child has ended and was reaped.
  absl::StatusOr<tenon::v1::VmOperationResponse> launch(std::unique_ptr<VmmChild> child,
                                                        ChildMonitor& monitor, absl::Time received,
                                                        VmmSource source = VmmSource::kImage);

  // Lifecycle calls; `received` is when the API call arrived, for the operation's latency.
  absl::StatusOr<tenon::v1::VmOperationResponse> start(absl::Time received);
  absl::StatusOr<tenon::v1::VmOperationResponse> pause(absl::Time received);
  absl::StatusOr<tenon::v1::VmOperationResponse> resume(absl::Time received);
  // Has mortise-vmm write the VM's state to `path` (checked by the caller). Legal in RUNNING and
  // PAUSED; a running guest is held out for the copy only.
  absl::StatusOr<tenon::v1::SnapshotVmResponse> snapshot(const std::string& path,
                                                         absl::Time received);
  // Asks mortise-vmm to stop the guest and returns without waiting; destroy() then finds it
  // ending. Lets a shutdown stop every VM at once instead of one after another.
  void begin_stop();
  // Stops the guest if it still runs, ends and reaps mortise-vmm, closes its descriptors.
  absl::StatusOr<tenon::v1::VmOperationResponse> destroy(absl::Time received);

  // The VM's description, with a live telemetry sample when asked (the last one once the VM
  // is terminal).
  tenon::v1::Vm describe(bool include_telemetry);
  // A telemetry sample: live while mortise-vmm runs, else the last one.
  tenon::v1::InstanceTelemetry telemetry();

  bool destroyed() const;
  bool terminal() const;  // terminal state, or destroyed
  // Counts changes (console bytes, state, samples); wait_for_change waits until the count
  // differs from `seen` or `deadline` passes, so that no change between a read and the wait is
  // missed.
  uint64_t change_count() const;
  void wait_for_change(uint64_t seen, absl::Time deadline);

  // The next console bytes from `offset`; `finished` tells the stream that no more will come
  // (terminal or destroyed, and nothing held from `offset` on). OUT_OF_RANGE beyond the end.
  absl::StatusOr<ConsoleRing::Chunk> console_from(uint64_t offset, size_t max_bytes,
                                                  bool* finished) const;

  // ChildMonitor::Listener, on the monitor thread.
  void on_event(const tenon::v1::VmmEvent& event) override;
  void on_protocol_error(const std::string& message) override;
  void on_exit(int wait_status) override;

 private:
  enum class Operation { kStart, kPause, kResume };

  absl::StatusOr<tenon::v1::VmOperationResponse> transition(Operation operation,
                                                            absl::Time received);
  // Sends `command` and waits for its answer; FAILED_PRECONDITION naming the state when the
  // child has ended meanwhile.
  absl::StatusOr<tenon::v1::VmmEvent> request(tenon::v1::VmmCommand command,
                                              absl::Duration timeout);
  absl::Status illegal_in_current_state(const char* operation, const char* legal_in) const;
  tenon::v1::Vm describe_locked() const;
  void record_latency(tenon::v1::VmOperation operation, absl::Duration latency,
                      const google::protobuf::Duration* vmm_latency);
  void end_running_span(absl::Time now);  // adds the current RUNNING span to run_time_
  void set_terminal(tenon::v1::ExitReason reason);
  tenon::v1::InstanceTelemetry stamped(tenon::v1::InstanceTelemetry telemetry) const;

  const VmIdentity identity_;
  const VmTimeouts timeouts_;
  std::mutex operation_mutex_;  // one lifecycle operation at a time

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::shared_ptr<VmmChild> child_;
  tenon::v1::VmState state_ = tenon::v1::VM_STATE_UNSPECIFIED;  // UNSPECIFIED while loading
  bool ready_ = false;
  bool vmm_ended_ = false;
  bool destroyed_ = false;
  bool exit_reported_ = false;   // the child sent `exited`
  bool stop_requested_ = false;  // Destroy asked for the end
  std::string protocol_error_;   // why the monitor killed the child, if it did
  uint64_t change_count_ = 0;
  std::optional<absl::Status> load_failure_;
  pid_t vmm_pid_ = 0;
  tenon::v1::CpuGrant cpu_grant_;
  tenon::v1::ExitReason exit_reason_;
  std::optional<absl::Time> start_time_;
  std::optional<absl::Time> running_since_;
  absl::Duration run_time_ = absl::ZeroDuration();
  uint64_t pauses_ = 0;
  std::map<int, tenon::v1::OperationLatency> latencies_;  // by VmOperation
  ConsoleRing console_;
  std::optional<tenon::v1::VmmTelemetry> last_telemetry_;
  uint64_t next_request_id_ = 1;
  std::set<uint64_t> outstanding_;                   // requests awaiting an answer
  std::map<uint64_t, tenon::v1::VmmEvent> answers_;  // answers not yet collected
};

}  // namespace mortise
