// tenon-agent's engine: enrolment, the session with the controller (one bidirectional stream,
// reconnected with jittered backoff), the reconcile loop against mortised, image transfers,
// telemetry and console forwarding. agent_main.cc turns flags into AgentOptions and signals into
// stop(); everything else is here.
//
// Threads: run() drives enrolment and sessions and reads the stream; a reconcile thread plans and
// acts (plan.h) every 250 ms and whenever the desired state or the images change; a telemetry
// thread forwards samples and watches the stream's liveness; one thread per console
// subscription. Messages to the controller are written under the session's own lock.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "image_store.h"
#include "local_state.h"
#include "plan.h"
#include "tenon/v1/agent.grpc.pb.h"
#include "tenon/v1/mortise.grpc.pb.h"

namespace tenon::agent {

// Exit statuses of tenon-agent (also in --help and README.md).
inline constexpr int kExitOk = 0;                  // stopped by SIGTERM or SIGINT
inline constexpr int kExitFatal = 1;               // anything else that stops the agent
inline constexpr int kExitUsage = 2;               // bad flags, unreadable token file
inline constexpr int kExitEnrolmentRefused = 3;    // the controller refused the bootstrap token
inline constexpr int kExitCredentialRejected = 4;  // credential revoked or device deleted
inline constexpr int kExitSuperseded = 5;          // another agent connected as this device

struct AgentOptions {
  std::string controller_address = "127.0.0.1:7440";
  std::string device_name;
  std::string bootstrap_token_file;
  std::string state_dir = "/var/lib/tenon-agent";
  std::string mortised_socket = "/run/mortise/mortised.sock";
  absl::Duration max_backoff = absl::Seconds(30);
  std::optional<absl::Duration> telemetry_interval;  // unset: the controller's
  absl::Duration restart_backoff_max = absl::Seconds(30);
};

class Agent {
 public:
  // Opens (or creates) the state directory, agent.db and images/.
  static absl::StatusOr<std::unique_ptr<Agent>> create(const AgentOptions& options);
  ~Agent();

  // Runs until stop() or a fatal condition; returns the exit status.
  int run();
  // Asks run() to return; safe from any thread (not from a signal handler).
  void stop();

 private:
  struct Session;
  struct ImageFetch;
  struct ConsoleForward;

  explicit Agent(const AgentOptions& options);

  // Enrolment and sessions.
  int enrol_if_needed();
  struct SessionEnd {
    grpc::Status status;
    bool welcomed = false;
  };
  SessionEnd run_session();
  std::optional<tenon::v1::HostInfo> host_info();
  void handle(Session& session, const tenon::v1::ControllerMessage& message);
  void handle_desired_state(uint64_t sequence, const tenon::v1::DesiredState& desired);
  void handle_image_chunk(const tenon::v1::ImageChunk& chunk);
  void handle_error(const tenon::v1::Error& error);
  void handle_console_subscription(const tenon::v1::ConsoleSubscription& subscription);
  void handle_snapshot(const tenon::v1::SnapshotCommand& command);
  // Writes to the current session; 0 when there is none or it broke. `before_write` runs with
  // the sequence number before the message goes out (to register what an answer refers to).
  uint64_t send(tenon::v1::AgentMessage message,
                const std::function<void(uint64_t)>& before_write = nullptr);
  void send_ack(uint64_t controller_sequence, uint64_t version, tenon::v1::AckOutcome outcome,
                const std::string& text);
  bool wait_or_stop(absl::Duration duration);

  // Reconciling.
  void reconcile_loop();
  void reconcile_once();
  absl::StatusOr<std::map<std::string, tenon::v1::Vm>> list_vms();
  void apply(const Action& action, const tenon::v1::DesiredState* desired,
             const std::map<std::string, tenon::v1::Vm>& vms);
  void create_instance(const tenon::v1::DesiredInstance& desired, bool is_restart);
  // Migrating in: writes the snapshot into mortised's snapshot directory and restores from it.
  void restore_instance(const tenon::v1::DesiredInstance& desired);
  // Migrating out: pause, snapshot, upload; an error is reported to the controller.
  absl::Status snapshot_and_upload(const tenon::v1::SnapshotCommand& command);
  void request_image(const std::string& digest);
  void set_note(const std::string& name, const std::string& note);
  std::string note_for(const tenon::v1::DesiredInstance& desired);
  void wake_reconcile();

  // Telemetry, liveness and consoles.
  void telemetry_loop();
  void stop_consoles();

  AgentOptions options_;
  std::unique_ptr<LocalState> state_;
  ImageStore images_;
  std::unique_ptr<tenon::v1::MortiseService::Stub> mortise_;

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool reconcile_requested_ = false;
  grpc::ClientContext* enroll_context_ = nullptr;
  Identity identity_;
  std::optional<tenon::v1::DesiredState> desired_;
  std::map<std::string, uint64_t> held_images_;                 // digest -> size
  std::map<std::string, std::unique_ptr<ImageFetch>> fetches_;  // by digest
  std::map<std::string, std::string> notes_;  // by instance: the last failed action
  // The latest status of every desired instance, and what the controller was told.
  std::map<std::string, tenon::v1::InstanceStatusUpdate> statuses_;
  std::map<std::string, tenon::v1::InstanceStatusUpdate> reported_;
  std::shared_ptr<Session> session_;
  uint64_t next_session_id_ = 1;
  std::optional<uint32_t> realtime_cores_;
  absl::Duration controller_telemetry_interval_ = absl::Seconds(10);
  absl::Duration ping_interval_ = absl::ZeroDuration();
  uint32_t max_chunk_bytes_ = 64 << 10;  // from Welcome
  std::string snapshot_directory_;       // mortised's, from GetHostInfo
  std::map<std::string, std::shared_ptr<ConsoleForward>> consoles_;

  // Reconcile thread only.
  std::map<std::string, InstanceRecord> records_;
  struct CreateRetry {
    uint32_t failures = 0;
    absl::Time not_before = absl::InfinitePast();
  };
  std::map<std::string, CreateRetry> create_retries_;
  std::string last_mortise_error_;
};

}  // namespace tenon::agent
