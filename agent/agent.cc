// See agent.h.
#include "agent.h"

#include <unistd.h>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "backoff.h"
#include "crypto/sha256.h"
#include "log.h"
#include "profile.h"
#include "time/proto_time.h"

namespace tenon::agent {
namespace {

using tenon::v1::AgentMessage;
using tenon::v1::ControllerMessage;
using tenon::v1::DesiredInstance;
using tenon::v1::DesiredState;
using tenon::v1::Vm;

constexpr absl::Duration kReconcilePeriod = absl::Milliseconds(250);
constexpr absl::Duration kMortiseDeadline = absl::Seconds(10);
constexpr absl::Duration kEnrollDeadline = absl::Seconds(10);
constexpr absl::Duration kReconnectBase = absl::Milliseconds(200);
constexpr absl::Duration kImageRetryBase = absl::Seconds(1);
// An image transfer with no chunk for this long is abandoned and asked for again.
constexpr absl::Duration kImageStall = absl::Seconds(60);

// The one place that decides how the agent authenticates the channel to the controller. Plain
// text for now (loopback and test setups); TLS with the controller's CA comes here.
std::shared_ptr<grpc::ChannelCredentials> controller_channel_credentials() {
  return grpc::InsecureChannelCredentials();
}

std::shared_ptr<grpc::Channel> controller_channel(const std::string& address) {
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(32 << 20);
  arguments.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  arguments.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  // A channel per session: every reconnect starts from a fresh connection.
  arguments.SetInt("grpc.use_local_subchannel_pool", 1);
  return grpc::CreateCustomChannel(address, controller_channel_credentials(), arguments);
}

void set_deadline(grpc::ClientContext& context, absl::Duration limit) {
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(absl::ToInt64Milliseconds(limit)));
}

// The longest interval a Welcome may name: the agent waits on them, and a wait of years would
// overflow the clock's arithmetic.
constexpr absl::Duration kMaxWelcomeInterval = absl::Hours(1);

// An interval the controller's Welcome names: kept when valid, positive and at most
// kMaxWelcomeInterval; otherwise the agent goes on with its own (zero here, which its users read
// as "not said").
absl::Duration welcome_interval(const google::protobuf::Duration& duration) {
  absl::StatusOr<absl::Duration> interval = tenon::time::from_proto(duration, "interval");
  return interval.ok() && *interval > absl::ZeroDuration() && *interval <= kMaxWelcomeInterval
             ? *interval
             : absl::ZeroDuration();
}

std::string code_name(grpc::StatusCode code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  const int index = static_cast<int>(code);
  if (index >= 0 && index < static_cast<int>(std::size(kNames))) return kNames[index];
  return absl::StrCat("code ", index);
}

std::string describe(const grpc::Status& status) {
  return absl::StrCat(code_name(status.error_code()), ": ", status.error_message());
}

std::string exit_text(const tenon::v1::ExitReason& reason) {
  std::string text = tenon::v1::ExitKind_Name(reason.kind());
  if (reason.kind() == tenon::v1::EXIT_KIND_GUEST_EXIT) {
    absl::StrAppend(&text, " status ", reason.status());
  }
  if (!reason.message().empty()) absl::StrAppend(&text, " (", reason.message(), ")");
  return text;
}

bool same_status(const tenon::v1::InstanceStatusUpdate& a,
                 const tenon::v1::InstanceStatusUpdate& b) {
  tenon::v1::InstanceStatusUpdate left = a;
  tenon::v1::InstanceStatusUpdate right = b;
  left.clear_time();
  right.clear_time();
  return left.SerializeAsString() == right.SerializeAsString();
}

}  // namespace

struct Agent::Session {
  uint64_t id = 0;
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReaderWriter<AgentMessage, ControllerMessage>> stream;
  std::mutex write_mutex;
  uint64_t next_sequence = 1;
  bool broken = false;
  // Set from the session's creation on: the watchdog may look at a session before its stream
  // has carried anything (it once saw 0 here and dropped a fresh stream as silent since 1970).
  std::atomic<int64_t> last_receive_unix_ms{absl::ToUnixMillis(absl::Now())};
  std::atomic<bool> welcomed{false};

  uint64_t send(AgentMessage& message, const std::function<void(uint64_t)>& before_write) {
    std::lock_guard lock(write_mutex);
    if (broken) return 0;
    const uint64_t sequence = next_sequence++;
    message.set_sequence(sequence);
    if (before_write) before_write(sequence);
    if (!stream->Write(message)) {
      broken = true;
      return 0;
    }
    return sequence;
  }
};

struct Agent::ImageFetch {
  bool in_flight = false;
  uint64_t session_id = 0;
  uint64_t request_sequence = 0;
  absl::Time last_progress;
  absl::Time retry_at = absl::InfinitePast();
  uint32_t failures = 0;
  uint64_t received = 0;
  uint64_t total = 0;
  std::string last_failure;  // the status message of the last failed attempt
};

struct Agent::ConsoleForward {
  grpc::ClientContext context;
  std::thread thread;
};

Agent::Agent(const AgentOptions& options)
    : options_(options), images_(options.state_dir + "/images") {}

Agent::~Agent() { stop_consoles(); }

absl::StatusOr<std::unique_ptr<Agent>> Agent::create(const AgentOptions& options) {
  std::unique_ptr<Agent> agent(new Agent(options));
  std::error_code error;
  std::filesystem::create_directories(options.state_dir, error);
  if (error) return absl::InternalError(absl::StrCat(options.state_dir, ": ", error.message()));
  if (absl::Status status = agent->images_.init(); !status.ok()) return status;
  absl::StatusOr<std::unique_ptr<LocalState>> state =
      LocalState::open(options.state_dir + "/agent.db");
  if (!state.ok()) return state.status();
  agent->state_ = std::move(*state);

  absl::StatusOr<std::optional<DesiredState>> desired = agent->state_->desired_state();
  if (!desired.ok()) return desired.status();
  agent->desired_ = std::move(*desired);
  absl::StatusOr<std::map<std::string, InstanceRecord>> records = agent->state_->instance_records();
  if (!records.ok()) return records.status();
  agent->records_ = std::move(*records);
  absl::StatusOr<std::map<std::string, uint64_t>> images = agent->state_->images();
  if (!images.ok()) return images.status();
  // An image recorded but missing on disk is simply not held; it is fetched again if needed.
  for (const auto& [digest, size] : *images) {
    absl::StatusOr<std::string> path = agent->images_.path_of(digest);
    if (path.ok() && std::filesystem::exists(*path)) {
      agent->held_images_.emplace(digest, size);
    } else {
      (void)agent->state_->delete_image(digest);
    }
  }

  grpc::ChannelArguments arguments;
  arguments.SetMaxSendMessageSize(static_cast<int>(kMaxImageBytes + (1 << 20)));
  arguments.SetMaxReceiveMessageSize(32 << 20);
  arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  arguments.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  agent->mortise_ = tenon::v1::MortiseService::NewStub(grpc::CreateCustomChannel(
      "unix:" + options.mortised_socket, grpc::InsecureChannelCredentials(), arguments));
  return agent;
}

void Agent::stop() {
  std::shared_ptr<Session> session;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    session = session_;
    if (enroll_context_ != nullptr) enroll_context_->TryCancel();
  }
  wake_.notify_all();
  if (session) session->context.TryCancel();
}

bool Agent::wait_or_stop(absl::Duration duration) {
  std::unique_lock lock(mutex_);
  wake_.wait_for(lock, std::chrono::milliseconds(absl::ToInt64Milliseconds(duration)),
                 [&] { return stopping_; });
  return stopping_;
}

void Agent::wake_reconcile() {
  {
    std::lock_guard lock(mutex_);
    reconcile_requested_ = true;
  }
  wake_.notify_all();
}

std::optional<tenon::v1::HostInfo> Agent::host_info() {
  grpc::ClientContext context;
  set_deadline(context, absl::Seconds(2));
  tenon::v1::HostInfo info;
  const grpc::Status status = mortise_->GetHostInfo(&context, {}, &info);
  if (!status.ok()) {
    log_line(absl::StrCat("mortised at ", options_.mortised_socket, " did not answer GetHostInfo (",
                          describe(status), "); reporting host facts only"));
    return std::nullopt;
  }
  std::lock_guard lock(mutex_);
  realtime_cores_ = static_cast<uint32_t>(info.realtime_cpus_size());
  snapshot_directory_ = info.snapshot_directory();
  return info;
}

// ---- Enrolment ----------------------------------------------------------------------------------

int Agent::enrol_if_needed() {
  absl::StatusOr<std::optional<Identity>> stored = state_->identity();
  if (!stored.ok()) {
    log_line(absl::StrCat("cannot read local state: ", stored.status().message()));
    return kExitFatal;
  }
  if (stored->has_value()) {
    identity_ = **stored;
    if (!options_.device_name.empty() && options_.device_name != identity_.device_name) {
      log_line(absl::StrCat("enrolled as ", identity_.device_name, "; ignoring --device-name ",
                            options_.device_name));
    }
    return kExitOk;
  }
  if (options_.bootstrap_token_file.empty()) {
    log_line("not enrolled yet: --bootstrap-token-file is required for the first start");
    return kExitUsage;
  }
  std::ifstream file(options_.bootstrap_token_file);
  std::stringstream contents;
  contents << file.rdbuf();
  const std::string token(absl::StripAsciiWhitespace(contents.str()));
  if (!file || token.empty()) {
    log_line(absl::StrCat("cannot read a bootstrap token from ", options_.bootstrap_token_file));
    return kExitUsage;
  }

  Backoff backoff(kReconnectBase, options_.max_backoff);
  for (;;) {
    const std::optional<tenon::v1::HostInfo> info = host_info();
    tenon::v1::EnrollRequest request;
    request.set_bootstrap_token(token);
    request.set_device_name(options_.device_name);
    *request.mutable_profile() = make_profile(info ? &*info : nullptr);
    tenon::v1::EnrollResponse response;
    grpc::ClientContext context;
    set_deadline(context, kEnrollDeadline);
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return kExitOk;
      enroll_context_ = &context;
    }
    auto stub = tenon::v1::AgentService::NewStub(controller_channel(options_.controller_address));
    const grpc::Status status = stub->Enroll(&context, request, &response);
    {
      std::lock_guard lock(mutex_);
      enroll_context_ = nullptr;
      if (stopping_) return kExitOk;
    }
    if (status.ok()) {
      identity_ =
          Identity{response.device_name().empty() ? options_.device_name : response.device_name(),
                   response.device_uid(), response.credential()};
      if (absl::Status stored_identity = state_->store_identity(identity_); !stored_identity.ok()) {
        log_line(absl::StrCat("cannot store the credential: ", stored_identity.message()));
        return kExitFatal;
      }
      log_line(
          absl::StrCat("enrolled as ", identity_.device_name, " (uid ", identity_.device_uid, ")"));
      return kExitOk;
    }
    switch (status.error_code()) {
      case grpc::StatusCode::UNAUTHENTICATED:
      case grpc::StatusCode::PERMISSION_DENIED:
      case grpc::StatusCode::ALREADY_EXISTS:
      case grpc::StatusCode::INVALID_ARGUMENT:
        log_line(absl::StrCat("enrolment refused by the controller: ", describe(status)));
        return kExitEnrolmentRefused;
      case grpc::StatusCode::UNIMPLEMENTED:
        log_line(absl::StrCat("enrolment failed: ", describe(status)));
        return kExitFatal;
      default: {
        const absl::Duration wait = backoff.next();
        log_line(absl::StrCat("enrolment failed (", describe(status), "); retrying in ",
                              absl::FormatDuration(absl::Trunc(wait, absl::Milliseconds(1)))));
        if (wait_or_stop(wait)) return kExitOk;
      }
    }
  }
}

// ---- The session --------------------------------------------------------------------------------

int Agent::run() {
  if (const int enrolled = enrol_if_needed();
      enrolled != kExitOk || wait_or_stop(absl::ZeroDuration())) {
    return enrolled;
  }
  {
    std::lock_guard lock(mutex_);
    log_line(absl::StrCat("local state: desired state version ", desired_ ? desired_->version() : 0,
                          ", ", records_.size(), " instance records, ", held_images_.size(),
                          " images"));
  }
  // One pass before the first Hello, so that it carries the status of every instance.
  reconcile_once();
  std::thread reconcile_thread([this] { reconcile_loop(); });
  std::thread telemetry_thread([this] { telemetry_loop(); });

  int exit_status = kExitOk;
  Backoff backoff(kReconnectBase, options_.max_backoff);
  for (;;) {
    const SessionEnd end = run_session();
    {
      std::lock_guard lock(mutex_);
      if (stopping_) break;
    }
    if (end.welcomed) backoff.reset();
    const grpc::StatusCode code = end.status.error_code();
    if (code == grpc::StatusCode::UNAUTHENTICATED || code == grpc::StatusCode::PERMISSION_DENIED) {
      log_line(absl::StrCat("credential rejected; re-enroll with a new bootstrap token (",
                            describe(end.status), ")"));
      if (absl::Status forgotten = state_->forget_identity(); !forgotten.ok()) {
        log_line(absl::StrCat("cannot clear the stored credential: ", forgotten.message()));
      }
      exit_status = kExitCredentialRejected;
      break;
    }
    if (code == grpc::StatusCode::ABORTED) {
      log_line(absl::StrCat("another agent connected as ", identity_.device_name,
                            "; this one stops (", describe(end.status), ")"));
      exit_status = kExitSuperseded;
      break;
    }
    const absl::Duration wait = backoff.next();
    log_line(absl::StrCat("stream to ", options_.controller_address, " ended (",
                          describe(end.status), "); reconnecting in ",
                          absl::FormatDuration(absl::Trunc(wait, absl::Milliseconds(1)))));
    if (wait_or_stop(wait)) break;
  }

  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  reconcile_thread.join();
  telemetry_thread.join();
  stop_consoles();
  if (exit_status == kExitOk) log_line("stopped; instances keep running under mortised");
  return exit_status;
}

Agent::SessionEnd Agent::run_session() {
  auto session = std::make_shared<Session>();
  const std::optional<tenon::v1::HostInfo> info = host_info();
  auto stub = tenon::v1::AgentService::NewStub(controller_channel(options_.controller_address));

  AgentMessage hello_message;
  tenon::v1::Hello* hello = hello_message.mutable_hello();
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return {grpc::Status(grpc::StatusCode::CANCELLED, "stopping"), false};
    session->id = next_session_id_++;
    hello->set_device_name(identity_.device_name);
    hello->set_credential(identity_.credential);
    hello->set_acknowledged_desired_state_version(desired_ ? desired_->version() : 0);
    for (const auto& [digest, size] : held_images_) hello->add_image_digests(digest);
    for (const auto& [name, status] : statuses_) {
      tenon::v1::InstanceStatusUpdate* update = hello->add_instances();
      *update = status;
      *update->mutable_time() = tenon::time::to_proto(absl::Now());
    }
    // The controller learns these from Hello; later changes are sent as they happen.
    reported_ = statuses_;
    session->last_receive_unix_ms = absl::ToUnixMillis(absl::Now());  // silence counts from here
    session_ = session;
  }
  *hello->mutable_profile() = make_profile(info ? &*info : nullptr);
  *hello->mutable_agent_time() = tenon::time::to_proto(absl::Now());

  session->stream = stub->Connect(&session->context);
  SessionEnd end;
  if (session->send(hello_message, nullptr) != 0) {
    log_line(absl::StrCat("connected to ", options_.controller_address, " as ",
                          identity_.device_name, "; hello with desired state version ",
                          hello->acknowledged_desired_state_version()));
    ControllerMessage message;
    while (session->stream->Read(&message)) {
      session->last_receive_unix_ms = absl::ToUnixMillis(absl::Now());
      handle(*session, message);
    }
  }
  end.welcomed = session->welcomed;
  {
    std::lock_guard lock(mutex_);
    session_.reset();
    for (auto& [digest, fetch] : fetches_) {
      if (fetch->in_flight && fetch->session_id == session->id) fetch->in_flight = false;
    }
  }
  {
    std::lock_guard lock(session->write_mutex);
    session->broken = true;
  }
  stop_consoles();
  end.status = session->stream->Finish();
  return end;
}

uint64_t Agent::send(AgentMessage message, const std::function<void(uint64_t)>& before_write) {
  std::shared_ptr<Session> session;
  {
    std::lock_guard lock(mutex_);
    session = session_;
  }
  if (!session) return 0;
  return session->send(message, before_write);
}

void Agent::send_ack(uint64_t controller_sequence, uint64_t version, tenon::v1::AckOutcome outcome,
                     const std::string& text) {
  AgentMessage message;
  tenon::v1::Ack* ack = message.mutable_ack();
  ack->set_controller_sequence(controller_sequence);
  ack->set_desired_state_version(version);
  ack->set_outcome(outcome);
  ack->set_message(text);
  send(std::move(message));
}

void Agent::handle(Session& session, const ControllerMessage& message) {
  switch (message.kind_case()) {
    case ControllerMessage::kWelcome: {
      const tenon::v1::Welcome& welcome = message.welcome();
      session.welcomed = true;
      {
        std::lock_guard lock(mutex_);
        if (welcome_interval(welcome.telemetry_interval()) > absl::ZeroDuration()) {
          controller_telemetry_interval_ = welcome_interval(welcome.telemetry_interval());
        }
        ping_interval_ = welcome_interval(welcome.ping_interval());
        if (welcome.max_chunk_bytes() > 0) max_chunk_bytes_ = welcome.max_chunk_bytes();
      }
      log_line(absl::StrCat(
          "welcomed by controller ", welcome.controller_version(), ": telemetry every ",
          absl::FormatDuration(welcome_interval(welcome.telemetry_interval())), ", ping every ",
          absl::FormatDuration(welcome_interval(welcome.ping_interval()))));
      wake_reconcile();  // image requests wait for the Welcome
      break;
    }
    case ControllerMessage::kDesiredState:
      handle_desired_state(message.sequence(), message.desired_state());
      break;
    case ControllerMessage::kImageChunk:
      handle_image_chunk(message.image_chunk());
      break;
    case ControllerMessage::kPing:
      send_ack(message.sequence(), 0, tenon::v1::ACK_OUTCOME_ACCEPTED, "");
      break;
    case ControllerMessage::kError:
      handle_error(message.error());
      break;
    case ControllerMessage::kConsoleSubscription:
      handle_console_subscription(message.console_subscription());
      break;
    case ControllerMessage::kSnapshot:
      handle_snapshot(message.snapshot());
      break;
    default:
      log_line(absl::StrCat("ignoring controller message ", message.sequence(),
                            " of an unknown kind (", static_cast<int>(message.kind_case()), ")"));
  }
}

void Agent::handle_desired_state(uint64_t sequence, const DesiredState& desired) {
  uint64_t stored_version = 0;
  std::optional<uint32_t> realtime_cores;
  {
    std::lock_guard lock(mutex_);
    stored_version = desired_ ? desired_->version() : 0;
    realtime_cores = realtime_cores_;
  }
  if (desired.version() <= stored_version) {
    send_ack(sequence, desired.version(), tenon::v1::ACK_OUTCOME_ACCEPTED,
             absl::StrCat("version ", desired.version(), " is not above the stored version ",
                          stored_version, "; ignored"));
    return;
  }
  // Without mortised's answer the real-time core count is unknown: mortised itself refuses
  // what does not fit when the instance is created.
  const absl::Status valid = validate_desired_state(desired, realtime_cores.value_or(UINT32_MAX));
  if (!valid.ok()) {
    log_line(absl::StrCat("rejected desired state version ", desired.version(), ": ",
                          valid.message(), "; keeping version ", stored_version));
    send_ack(sequence, desired.version(), tenon::v1::ACK_OUTCOME_REJECTED,
             std::string(valid.message()));
    return;
  }
  if (absl::Status stored = state_->store_desired_state(desired); !stored.ok()) {
    log_line(absl::StrCat("cannot store desired state version ", desired.version(), ": ",
                          stored.message()));
    send_ack(sequence, desired.version(), tenon::v1::ACK_OUTCOME_REJECTED,
             absl::StrCat("the device cannot store it: ", stored.message()));
    return;
  }
  {
    std::lock_guard lock(mutex_);
    desired_ = desired;
  }
  log_line(absl::StrCat("stored desired state version ", desired.version(), " (",
                        desired.instances_size(), " instances)"));
  send_ack(sequence, desired.version(), tenon::v1::ACK_OUTCOME_ACCEPTED, "");
  wake_reconcile();
}

void Agent::handle_image_chunk(const tenon::v1::ImageChunk& chunk) {
  {
    std::lock_guard lock(mutex_);
    auto fetch = fetches_.find(chunk.digest());
    if (fetch == fetches_.end() || !fetch->second->in_flight) {
      log_line(
          absl::StrCat("ignoring an image chunk of ", chunk.digest(), ", which was not asked for"));
      return;
    }
  }
  const absl::StatusOr<bool> added = images_.add_chunk(chunk);
  std::lock_guard lock(mutex_);
  auto entry = fetches_.find(chunk.digest());
  if (entry == fetches_.end()) return;
  ImageFetch& fetch = *entry->second;
  const absl::Time now = absl::Now();
  if (!added.ok()) {
    fetch.in_flight = false;
    fetch.failures++;
    fetch.retry_at =
        now + capped_exponential(kImageRetryBase, options_.max_backoff, fetch.failures - 1);
    fetch.last_failure =
        absl::StrCat("image ", chunk.digest(), " failed verification: ", added.status().message());
    log_line(absl::StrCat(
        fetch.last_failure, "; discarded, retrying in ",
        absl::FormatDuration(absl::Trunc(fetch.retry_at - now, absl::Milliseconds(1)))));
  } else if (*added) {
    const uint64_t size = chunk.offset() + chunk.data().size();
    if (absl::Status stored = state_->put_image(chunk.digest(), size); !stored.ok()) {
      log_line(absl::StrCat("cannot record image ", chunk.digest(), ": ", stored.message()));
    }
    held_images_[chunk.digest()] = size;
    fetches_.erase(entry);
    log_line(absl::StrCat("image ", chunk.digest(), " received and verified (", size, " bytes)"));
  } else {
    fetch.received = chunk.offset() + chunk.data().size();
    fetch.total = chunk.total_size_bytes();
    fetch.last_progress = now;
    return;
  }
  reconcile_requested_ = true;
  wake_.notify_all();
}

void Agent::handle_error(const tenon::v1::Error& error) {
  log_line(absl::StrCat("controller error about message ", error.related_sequence(), ": code ",
                        error.code(), ": ", error.message()));
  std::lock_guard lock(mutex_);
  for (auto& [digest, fetch] : fetches_) {
    if (fetch->in_flight && error.related_sequence() != 0 &&
        fetch->request_sequence == error.related_sequence()) {
      fetch->in_flight = false;
      fetch->failures++;
      fetch->retry_at = absl::Now() + capped_exponential(kImageRetryBase, options_.max_backoff,
                                                         fetch->failures - 1);
      fetch->last_failure =
          absl::StrCat("image ", digest, " not available from the controller: ", error.message());
      images_.remove_partial(digest);
    }
  }
}

void Agent::handle_console_subscription(const tenon::v1::ConsoleSubscription& subscription) {
  const std::string name = subscription.instance_name();
  std::shared_ptr<ConsoleForward> previous;
  {
    std::lock_guard lock(mutex_);
    auto entry = consoles_.find(name);
    if (entry != consoles_.end()) {
      previous = entry->second;
      consoles_.erase(entry);
    }
  }
  if (previous) {
    previous->context.TryCancel();
    if (previous->thread.joinable()) previous->thread.join();
  }
  if (!subscription.enabled()) {
    log_line(absl::StrCat("console of ", name, ": unsubscribed"));
    return;
  }
  auto forward = std::make_shared<ConsoleForward>();
  {
    std::lock_guard lock(mutex_);
    consoles_[name] = forward;
  }
  const uint64_t from_offset = subscription.from_offset();
  log_line(absl::StrCat("console of ", name, ": forwarding from offset ", from_offset));
  forward->thread = std::thread([this, forward, name, from_offset] {
    tenon::v1::StreamConsoleRequest request;
    request.set_name(name);
    request.set_follow(true);
    request.set_from_offset(from_offset);
    auto reader = mortise_->StreamConsole(&forward->context, request);
    tenon::v1::ConsoleChunk chunk;
    while (reader->Read(&chunk)) {
      AgentMessage message;
      message.mutable_console()->set_instance_name(name);
      *message.mutable_console()->mutable_chunk() = chunk;
      if (send(std::move(message)) == 0) {
        forward->context.TryCancel();
        break;
      }
    }
    const grpc::Status status = reader->Finish();
    if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
      log_line(absl::StrCat("console of ", name, " ended: ", describe(status)));
    }
  });
}

void Agent::stop_consoles() {
  std::map<std::string, std::shared_ptr<ConsoleForward>> consoles;
  {
    std::lock_guard lock(mutex_);
    consoles.swap(consoles_);
  }
  for (auto& [name, forward] : consoles) forward->context.TryCancel();
  for (auto& [name, forward] : consoles) {
    if (forward->thread.joinable()) forward->thread.join();
  }
}

void Agent::handle_snapshot(const tenon::v1::SnapshotCommand& command) {
  log_line(absl::StrCat("snapshot of ", command.instance_name(), " for migration ",
                        command.migration_id()));
  const absl::Status done = snapshot_and_upload(command);
  if (done.ok()) return;
  log_line(absl::StrCat("snapshot of ", command.instance_name(), " failed: ", done.message()));
  // Operators see the failure in the instance's status; the controller's migration ends on the
  // SnapshotUpload that carries the error (agent.proto).
  AgentMessage message;
  tenon::v1::InstanceStatusUpdate* update = message.mutable_instance_status();
  update->set_instance_name(command.instance_name());
  update->set_state(tenon::v1::INSTANCE_STATE_MIGRATING);
  update->set_message(
      absl::StrCat("snapshot for migration ", command.migration_id(), " failed: ", done.message()));
  *update->mutable_time() = tenon::time::to_proto(absl::Now());
  send(std::move(message));
  AgentMessage failure;
  tenon::v1::SnapshotUpload* upload = failure.mutable_snapshot_upload();
  upload->set_migration_id(command.migration_id());
  upload->set_instance_name(command.instance_name());
  upload->set_error(std::string(done.message()));
  send(std::move(failure));
}

absl::Status Agent::snapshot_and_upload(const tenon::v1::SnapshotCommand& command) {
  std::string directory;
  uint32_t chunk_bytes = 0;
  {
    std::lock_guard lock(mutex_);
    directory = snapshot_directory_;
    chunk_bytes = max_chunk_bytes_;
  }
  if (directory.empty()) {
    return absl::FailedPreconditionError("mortised did not name its snapshot directory");
  }
  // The id names a file: lowercase hex only.
  const std::string& id = command.migration_id();
  if (id.empty() || id.size() > 64 || !std::all_of(id.begin(), id.end(), [](char c) {
        return absl::ascii_isxdigit(c) && !absl::ascii_isupper(c);
      })) {
    return absl::InvalidArgumentError("malformed migration id");
  }
  // Paused first, so the snapshot is the last state it had here (the desired state holds it).
  {
    tenon::v1::PauseVmRequest request;
    request.set_name(command.instance_name());
    tenon::v1::VmOperationResponse response;
    grpc::ClientContext context;
    set_deadline(context, kMortiseDeadline);
    const grpc::Status status = mortise_->Pause(&context, request, &response);
    if (!status.ok() && status.error_code() != grpc::StatusCode::FAILED_PRECONDITION) {
      return absl::UnavailableError(absl::StrCat("pause: ", describe(status)));
    }
  }
  const std::string path = absl::StrCat(directory, "/migration-", command.migration_id(), ".snap");
  tenon::v1::SnapshotVmRequest request;
  request.set_name(command.instance_name());
  request.set_path(path);
  tenon::v1::SnapshotVmResponse response;
  {
    grpc::ClientContext context;
    set_deadline(context, absl::Seconds(60));
    const grpc::Status status = mortise_->Snapshot(&context, request, &response);
    if (!status.ok()) return absl::UnavailableError(absl::StrCat("snapshot: ", describe(status)));
  }
  std::ifstream in(response.path(), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::error_code ignored;
  std::filesystem::remove(response.path(), ignored);
  if (!in.good() && !in.eof()) return absl::DataLossError("cannot read the snapshot file");
  if (crypto::sha256_digest(bytes) != response.digest()) {
    return absl::DataLossError("the snapshot file does not hash to what mortised reported");
  }
  uint64_t offset = 0;
  do {
    const uint64_t length = std::min<uint64_t>(chunk_bytes, bytes.size() - offset);
    AgentMessage message;
    tenon::v1::SnapshotUpload* upload = message.mutable_snapshot_upload();
    upload->set_migration_id(command.migration_id());
    upload->set_instance_name(command.instance_name());
    tenon::v1::ImageChunk* chunk = upload->mutable_chunk();
    chunk->set_digest(response.digest());
    chunk->set_offset(offset);
    chunk->set_data(bytes.substr(offset, length));
    chunk->set_total_size_bytes(bytes.size());
    chunk->set_chunk_sha256(crypto::sha256_hex(chunk->data()));
    offset += length;
    chunk->set_last(offset == bytes.size());
    if (send(std::move(message)) == 0) return absl::UnavailableError("the stream broke");
  } while (offset < bytes.size());
  log_line(absl::StrCat("snapshot of ", command.instance_name(), " uploaded (", bytes.size(),
                        " bytes, ", response.digest(), ")"));
  return absl::OkStatus();
}

void Agent::restore_instance(const DesiredInstance& desired) {
  const std::string& name = desired.name();
  const std::string& digest = desired.restore_snapshot_digest();
  std::string directory;
  {
    std::lock_guard lock(mutex_);
    directory = snapshot_directory_;
  }
  absl::StatusOr<std::string> bytes = images_.read_verified(digest);
  absl::StatusOr<std::string> hex = crypto::digest_hex(digest);
  if (!bytes.ok() || !hex.ok() || directory.empty()) {
    set_note(name, absl::StrCat("cannot restore from ", digest, ": ",
                                !bytes.ok() ? bytes.status().message()
                                : !hex.ok() ? hex.status().message()
                                            : "mortised did not name its snapshot directory"));
    return;
  }
  const std::string path = absl::StrCat(directory, "/restore-", *hex, ".snap");
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes->data(), static_cast<std::streamsize>(bytes->size()));
    if (!out) {
      set_note(name, absl::StrCat("cannot write ", path));
      return;
    }
  }
  tenon::v1::RestoreVmRequest request;
  request.set_name(name);
  request.set_path(path);
  request.set_expected_digest(digest);
  tenon::v1::VmOperationResponse response;
  grpc::ClientContext context;
  set_deadline(context, absl::Seconds(60));
  const grpc::Status status = mortise_->Restore(&context, request, &response);
  std::error_code ignored;
  std::filesystem::remove(path, ignored);
  if (!status.ok()) {
    set_note(name, absl::StrCat("restore failed: ", describe(status)));
    log_line(absl::StrCat("instance ", name, ": restore failed: ", describe(status)));
    return;
  }
  InstanceRecord record;
  record.name = name;
  record.instance_uid = desired.uid();
  record.vm_uid = response.vm().uid();
  record.image_digest = desired.image_digest();
  records_[name] = record;
  if (absl::Status stored = state_->put_instance_record(record); !stored.ok()) {
    log_line(absl::StrCat("cannot record instance ", name, ": ", stored.message()));
  }
  set_note(name, "");
  log_line(absl::StrCat("restored ", name, " from ", digest, " (vm uid ", response.vm().uid(),
                        "); it resumes next"));
  wake_reconcile();  // the resume is the next pass's work: do not wait a period for it
}

// ---- Reconciling --------------------------------------------------------------------------------

void Agent::reconcile_loop() {
  for (;;) {
    reconcile_once();
    std::unique_lock lock(mutex_);
    wake_.wait_for(lock, std::chrono::milliseconds(absl::ToInt64Milliseconds(kReconcilePeriod)),
                   [&] { return stopping_ || reconcile_requested_; });
    if (stopping_) return;
    reconcile_requested_ = false;
  }
}

absl::StatusOr<std::map<std::string, Vm>> Agent::list_vms() {
  grpc::ClientContext context;
  set_deadline(context, kMortiseDeadline);
  tenon::v1::ListVmsResponse response;
  const grpc::Status status = mortise_->List(&context, {}, &response);
  if (!status.ok()) return absl::UnavailableError(describe(status));
  std::map<std::string, Vm> vms;
  for (const Vm& vm : response.vms()) vms.emplace(vm.name(), vm);
  return vms;
}

void Agent::reconcile_once() {
  absl::StatusOr<std::map<std::string, Vm>> vms = list_vms();
  if (!vms.ok()) {
    const std::string text(vms.status().message());
    if (text != last_mortise_error_) {
      log_line(absl::StrCat("mortised unreachable (", text, "); retrying"));
      last_mortise_error_ = text;
    }
    return;
  }
  if (!last_mortise_error_.empty()) {
    log_line("mortised reachable again");
    last_mortise_error_.clear();
  }

  std::optional<DesiredState> desired;
  PlanInput input;
  {
    std::lock_guard lock(mutex_);
    desired = desired_;
    for (const auto& [digest, size] : held_images_) input.images_held.insert(digest);
  }
  input.desired = desired ? &*desired : nullptr;
  input.vms = *vms;
  input.records = records_;
  input.now = absl::Now();
  input.restart_backoff_max = options_.restart_backoff_max;
  input.restart_backoff_base = std::min(absl::Seconds(1), options_.restart_backoff_max);
  const std::vector<Action> actions = plan(input);
  bool acted = false;
  for (const Action& action : actions) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
    }
    if (action.kind != ActionKind::kFetchImage) acted = true;
    apply(action, input.desired, *vms);
  }
  if (acted) {
    vms = list_vms();
    if (!vms.ok()) return;
  }

  // Statuses of the desired instances; changes go to the controller.
  std::vector<tenon::v1::InstanceStatusUpdate> changed;
  {
    std::map<std::string, tenon::v1::InstanceStatusUpdate> statuses;
    if (desired) {
      for (const DesiredInstance& instance : desired->instances()) {
        auto vm = vms->find(instance.name());
        auto record = records_.find(instance.name());
        const std::string note = note_for(instance);
        statuses.emplace(instance.name(),
                         status_of(instance, vm == vms->end() ? nullptr : &vm->second,
                                   record == records_.end() ? nullptr : &record->second,
                                   desired->version(), note));
      }
    }
    std::lock_guard lock(mutex_);
    for (const auto& [name, status] : statuses) {
      auto previous = statuses_.find(name);
      if (previous == statuses_.end() || !same_status(previous->second, status)) {
        log_line(absl::StrCat("instance ", name, ": ",
                              tenon::v1::InstanceState_Name(status.state()),
                              status.message().empty() ? "" : " - ", status.message()));
      }
      auto told = reported_.find(name);
      if (session_ && (told == reported_.end() || !same_status(told->second, status))) {
        changed.push_back(status);
        reported_[name] = status;
      }
    }
    statuses_ = std::move(statuses);
  }
  for (tenon::v1::InstanceStatusUpdate& status : changed) {
    AgentMessage message;
    *message.mutable_instance_status() = std::move(status);
    *message.mutable_instance_status()->mutable_time() = tenon::time::to_proto(absl::Now());
    if (send(std::move(message)) == 0) {
      // The stream broke: Hello of the next session carries every status.
      break;
    }
  }
}

std::string Agent::note_for(const DesiredInstance& desired) {
  std::lock_guard lock(mutex_);
  if (!held_images_.contains(desired.image_digest())) {
    auto fetch = fetches_.find(desired.image_digest());
    if (fetch == fetches_.end()) {
      return absl::StrCat("waiting to fetch image ", desired.image_digest());
    }
    const ImageFetch& state = *fetch->second;
    if (state.in_flight) {
      std::string text = absl::StrCat("fetching image ", desired.image_digest());
      if (state.total > 0) {
        absl::StrAppend(&text, " ", state.received * 10 / state.total * 10, "%");
      }
      if (!state.last_failure.empty()) absl::StrAppend(&text, " (after: ", state.last_failure, ")");
      return text;
    }
    if (!state.last_failure.empty()) return state.last_failure;
    return absl::StrCat("waiting for the controller to send image ", desired.image_digest());
  }
  auto note = notes_.find(desired.name());
  return note == notes_.end() ? "" : note->second;
}

void Agent::set_note(const std::string& name, const std::string& note) {
  std::lock_guard lock(mutex_);
  if (note.empty()) {
    notes_.erase(name);
  } else {
    notes_[name] = note;
  }
}

void Agent::request_image(const std::string& digest) {
  std::shared_ptr<Session> session;
  uint64_t offset = 0;
  {
    std::lock_guard lock(mutex_);
    if (held_images_.contains(digest)) return;
    std::unique_ptr<ImageFetch>& fetch = fetches_[digest];
    if (!fetch) fetch = std::make_unique<ImageFetch>();
    const absl::Time now = absl::Now();
    if (fetch->in_flight && now - fetch->last_progress > kImageStall) {
      log_line(absl::StrCat("image ", digest, ": no chunk for ", absl::FormatDuration(kImageStall),
                            "; asking again"));
      fetch->in_flight = false;
    }
    if (fetch->in_flight || now < fetch->retry_at || !session_ || !session_->welcomed) return;
    session = session_;
  }
  offset = images_.partial_size(digest);
  AgentMessage message;
  message.mutable_image_request()->set_digest(digest);
  message.mutable_image_request()->set_offset(offset);
  const uint64_t sequence = session->send(message, [&](uint64_t sequence_number) {
    std::lock_guard lock(mutex_);
    ImageFetch& fetch = *fetches_[digest];
    fetch.in_flight = true;
    fetch.session_id = session->id;
    fetch.request_sequence = sequence_number;
    fetch.last_progress = absl::Now();
    fetch.received = offset;
  });
  if (sequence != 0) {
    log_line(absl::StrCat("asked the controller for image ", digest,
                          offset > 0 ? absl::StrCat(" from offset ", offset) : ""));
  }
}

void Agent::create_instance(const DesiredInstance& desired, bool is_restart) {
  const std::string& name = desired.name();
  CreateRetry& retry = create_retries_[name];
  const absl::Time now = absl::Now();
  if (now < retry.not_before) return;
  auto failed = [&](const std::string& text) {
    retry.failures++;
    retry.not_before = now + capped_exponential(absl::Seconds(1), options_.restart_backoff_max,
                                                retry.failures - 1);
    set_note(name, text);
    log_line(absl::StrCat("instance ", name, ": ", text));
  };

  // Hash the bytes that will be sent, right before sending them: a file that changed on disk
  // since it was verified must not boot.
  absl::StatusOr<std::string> bytes = images_.read_verified(desired.image_digest());
  if (!bytes.ok()) {
    images_.remove(desired.image_digest());
    (void)state_->delete_image(desired.image_digest());
    {
      std::lock_guard lock(mutex_);
      held_images_.erase(desired.image_digest());
    }
    set_note(name, absl::StrCat("image ", desired.image_digest(), " failed verification: ",
                                bytes.status().message(), "; fetching it again"));
    log_line(absl::StrCat("instance ", name, ": image ", desired.image_digest(),
                          " failed verification before boot: ", bytes.status().message()));
    return;
  }
  tenon::v1::CreateVmRequest request = create_request_of(desired);
  request.set_image_bytes(std::move(*bytes));
  tenon::v1::VmOperationResponse response;
  grpc::ClientContext context;
  set_deadline(context, kMortiseDeadline);
  const grpc::Status status = mortise_->Create(&context, request, &response);
  if (!status.ok()) {
    failed(absl::StrCat("create failed: ", describe(status)));
    return;
  }
  create_retries_.erase(name);
  InstanceRecord record;
  auto previous = records_.find(name);
  if (previous != records_.end() && previous->second.instance_uid == desired.uid()) {
    record = previous->second;
  }
  record.name = name;
  record.instance_uid = desired.uid();
  record.vm_uid = response.vm().uid();
  record.image_digest = desired.image_digest();
  record.exit_handled_vm_uid.clear();
  record.restart_at.reset();
  if (is_restart) {
    record.restart_count++;
    record.consecutive_failures++;
  }
  records_[name] = record;
  if (absl::Status stored = state_->put_instance_record(record); !stored.ok()) {
    log_line(absl::StrCat("cannot record instance ", name, ": ", stored.message()));
  }
  set_note(name, "");
  wake_reconcile();  // starting it is the next pass's work: do not wait a period for it
  log_line(absl::StrCat("created ", name, " (vm uid ", response.vm().uid(), ", pid ",
                        response.vm().vmm_pid(), ", image ", desired.image_digest(),
                        is_restart ? absl::StrCat(", restart ", record.restart_count) : "", ")"));
}

void Agent::apply(const Action& action, const DesiredState* desired,
                  const std::map<std::string, Vm>& vms) {
  const DesiredInstance* instance = nullptr;
  if (desired != nullptr) {
    for (const DesiredInstance& candidate : desired->instances()) {
      if (candidate.name() == action.name) instance = &candidate;
    }
  }
  auto vm_entry = vms.find(action.name);
  const Vm* vm = vm_entry == vms.end() ? nullptr : &vm_entry->second;

  auto lifecycle = [&](const char* verb, auto call) {
    tenon::v1::VmOperationResponse response;
    grpc::ClientContext context;
    set_deadline(context, kMortiseDeadline);
    const grpc::Status status = call(context, response);
    if (!status.ok() && status.error_code() != grpc::StatusCode::NOT_FOUND) {
      const std::string text = absl::StrCat(verb, " failed: ", describe(status));
      log_line(absl::StrCat("instance ", action.name, ": ", text));
      set_note(action.name, text);
      return false;
    }
    log_line(absl::StrCat(verb, " ", action.name, " (", action.reason, ")"));
    return true;
  };

  switch (action.kind) {
    case ActionKind::kFetchImage:
      request_image(action.image_digest);
      break;
    case ActionKind::kCreate:
      if (instance != nullptr) create_instance(*instance, action.counts_as_restart);
      break;
    case ActionKind::kRestore:
      if (instance != nullptr) restore_instance(*instance);
      break;
    case ActionKind::kStart:
      if (lifecycle("started", [&](grpc::ClientContext& context, auto& response) {
            tenon::v1::StartVmRequest request;
            request.set_name(action.name);
            return mortise_->Start(&context, request, &response);
          })) {
        set_note(action.name, "");
      }
      break;
    case ActionKind::kPause:
      lifecycle("paused", [&](grpc::ClientContext& context, auto& response) {
        tenon::v1::PauseVmRequest request;
        request.set_name(action.name);
        return mortise_->Pause(&context, request, &response);
      });
      break;
    case ActionKind::kResume:
      lifecycle("resumed", [&](grpc::ClientContext& context, auto& response) {
        tenon::v1::ResumeVmRequest request;
        request.set_name(action.name);
        return mortise_->Resume(&context, request, &response);
      });
      break;
    case ActionKind::kDestroy:
      lifecycle("destroyed", [&](grpc::ClientContext& context, auto& response) {
        tenon::v1::DestroyVmRequest request;
        request.set_name(action.name);
        return mortise_->Destroy(&context, request, &response);
      });
      break;
    case ActionKind::kAdopt: {
      if (vm == nullptr) break;
      InstanceRecord record;
      auto previous = records_.find(action.name);
      if (previous != records_.end()) record = previous->second;
      record.name = action.name;
      if (record.instance_uid.empty() && instance != nullptr) record.instance_uid = instance->uid();
      record.vm_uid = vm->uid();
      record.image_digest = vm->image_digest();
      records_[action.name] = record;
      if (absl::Status stored = state_->put_instance_record(record); !stored.ok()) {
        log_line(absl::StrCat("cannot record instance ", action.name, ": ", stored.message()));
      }
      log_line(absl::StrCat("adopted running VM ", action.name, " (vm uid ", vm->uid(), ", pid ",
                            vm->vmm_pid(), ", ", tenon::v1::VmState_Name(vm->state()), ")"));
      break;
    }
    case ActionKind::kHandleExit: {
      if (vm == nullptr) break;
      InstanceRecord& record = records_[action.name];
      record.last_exit = vm->exit_reason();
      record.exit_handled_vm_uid = vm->uid();
      record.restart_at = action.restart_at;
      record.consecutive_failures = action.consecutive_failures;
      if (absl::Status stored = state_->put_instance_record(record); !stored.ok()) {
        log_line(absl::StrCat("cannot record instance ", action.name, ": ", stored.message()));
      }
      log_line(absl::StrCat(
          "instance ", action.name, " ended ", tenon::v1::VmState_Name(vm->state()), ": ",
          exit_text(vm->exit_reason()), "; ",
          action.restart_at ? absl::StrCat("restart in ", absl::FormatDuration(absl::Trunc(
                                                              *action.restart_at - absl::Now(),
                                                              absl::Milliseconds(1))))
                            : std::string("not restarted")));
      break;
    }
    case ActionKind::kRestart:
      if (instance == nullptr) break;
      if (lifecycle("destroyed for restart", [&](grpc::ClientContext& context, auto& response) {
            tenon::v1::DestroyVmRequest request;
            request.set_name(action.name);
            return mortise_->Destroy(&context, request, &response);
          })) {
        create_instance(*instance, /*is_restart=*/true);
      }
      break;
    case ActionKind::kForget:
      records_.erase(action.name);
      create_retries_.erase(action.name);
      set_note(action.name, "");
      if (absl::Status removed = state_->delete_instance_record(action.name); !removed.ok()) {
        log_line(absl::StrCat("cannot forget instance ", action.name, ": ", removed.message()));
      }
      break;
  }
}

// ---- Telemetry and liveness ---------------------------------------------------------------------

void Agent::telemetry_loop() {
  absl::Time next_report = absl::Now();
  for (;;) {
    absl::Duration interval;
    std::shared_ptr<Session> session;
    absl::Duration ping_interval;
    std::set<std::string> desired_names;
    {
      std::lock_guard lock(mutex_);
      interval = options_.telemetry_interval.value_or(controller_telemetry_interval_);
      session = session_;
      ping_interval = ping_interval_;
      if (desired_) {
        for (const DesiredInstance& instance : desired_->instances()) {
          desired_names.insert(instance.name());
        }
      }
    }
    // Liveness: a controller that stopped talking (a lost link without a reset) is given up on
    // after three ping intervals, or 60 s before it said how often it pings.
    if (session) {
      const absl::Duration silence =
          absl::Now() - absl::FromUnixMillis(session->last_receive_unix_ms.load());
      const absl::Duration limit = ping_interval > absl::ZeroDuration()
                                       ? std::max(3 * ping_interval, absl::Seconds(5))
                                       : absl::Seconds(60);
      if (silence > limit) {
        log_line(absl::StrCat("nothing from the controller for ",
                              absl::FormatDuration(absl::Trunc(silence, absl::Seconds(1))),
                              "; dropping the stream"));
        session->context.TryCancel();
      }
    }
    if (session && session->welcomed && absl::Now() >= next_report) {
      next_report = absl::Now() + interval;
      absl::StatusOr<std::map<std::string, Vm>> vms = list_vms();
      AgentMessage message;
      if (vms.ok()) {
        for (const auto& [name, vm] : *vms) {
          if (!desired_names.contains(name)) continue;
          if (vm.state() != tenon::v1::VM_STATE_RUNNING &&
              vm.state() != tenon::v1::VM_STATE_PAUSED) {
            continue;
          }
          grpc::ClientContext context;
          set_deadline(context, absl::Seconds(5));
          tenon::v1::GetVmRequest request;
          request.set_name(name);
          request.set_include_telemetry(true);
          Vm sample;
          if (!mortise_->Get(&context, request, &sample).ok()) continue;
          tenon::v1::InstanceTelemetry* telemetry = message.mutable_telemetry()->add_instances();
          *telemetry = sample.telemetry();
          telemetry->set_instance_name(name);
        }
      }
      if (message.telemetry().instances_size() > 0) send(std::move(message));
    }
    const absl::Duration step = std::min(interval, absl::Milliseconds(500));
    if (wait_or_stop(std::max(step, absl::Milliseconds(10)))) return;
  }
}

}  // namespace tenon::agent
