// See fake_controller.h. Each stream has a writer thread draining a queue while the handler's own
// thread reads, so the test can push messages at any time. To end a stream with a chosen status,
// the fake sends a Ping: the agent's Ack unblocks the read, and the handler returns the status.
#include "fake_controller.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "crypto/sha256.h"

namespace tenon::agent::testing {

using tenon::v1::AgentMessage;
using tenon::v1::ControllerMessage;

class FakeController::Service final : public tenon::v1::AgentService::Service {
 public:
  explicit Service(FakeController* owner) : owner_(owner) {}
  grpc::Status Enroll(grpc::ServerContext*, const tenon::v1::EnrollRequest* request,
                      tenon::v1::EnrollResponse* response) override {
    return owner_->enroll(*request, response);
  }
  grpc::Status Connect(grpc::ServerContext* context,
                       grpc::ServerReaderWriter<ControllerMessage, AgentMessage>* stream) override {
    return owner_->connect(context, stream);
  }

 private:
  FakeController* owner_;
};

std::unique_ptr<FakeController> FakeController::start() {
  std::unique_ptr<FakeController> controller(new FakeController());
  controller->service_ = std::make_unique<Service>(controller.get());
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &controller->port_);
  builder.RegisterService(controller->service_.get());
  controller->server_ = builder.BuildAndStart();
  if (!controller->server_ || controller->port_ == 0) return nullptr;
  return controller;
}

FakeController::~FakeController() {
  {
    std::lock_guard lock(mutex_);
    if (active_) {
      std::lock_guard stream_lock(active_->mutex);
      active_->end = grpc::Status(grpc::StatusCode::UNAVAILABLE, "fake controller stopping");
      active_->wake.notify_all();
    }
  }
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

void FakeController::add_bootstrap_token(const std::string& token) {
  std::lock_guard lock(mutex_);
  tokens_.insert(token);
}

std::string FakeController::add_image(const std::string& bytes) {
  const std::string digest = crypto::sha256_digest(bytes);
  std::lock_guard lock(mutex_);
  images_[digest] = bytes;
  return digest;
}

void FakeController::set_chunk_bytes(size_t bytes) {
  std::lock_guard lock(mutex_);
  chunk_bytes_ = bytes;
}

void FakeController::set_corrupt_chunk(int index) {
  std::lock_guard lock(mutex_);
  corrupt_chunk_ = index;
}

void FakeController::set_send_chunk_sha256(bool send) {
  std::lock_guard lock(mutex_);
  send_chunk_sha256_ = send;
}

void FakeController::set_telemetry_interval(absl::Duration interval) {
  std::lock_guard lock(mutex_);
  telemetry_interval_ = interval;
}

void FakeController::set_desired_state(const tenon::v1::DesiredState& desired) {
  std::shared_ptr<Stream> stream;
  {
    std::lock_guard lock(mutex_);
    desired_ = desired;
    stream = active_;
  }
  if (stream) {
    ControllerMessage message;
    *message.mutable_desired_state() = desired;
    queue(*stream, std::move(message));
  }
}

void FakeController::end_stream(const grpc::Status& status) {
  std::shared_ptr<Stream> stream;
  {
    std::lock_guard lock(mutex_);
    stream = active_;
  }
  if (!stream) return;
  {
    std::lock_guard lock(stream->mutex);
    stream->end = status;
  }
  ControllerMessage ping;
  ping.mutable_ping();
  queue(*stream, std::move(ping));
}

std::vector<AgentMessage> FakeController::received() const {
  std::lock_guard lock(mutex_);
  return received_;
}

std::vector<tenon::v1::Hello> FakeController::hellos() const {
  std::lock_guard lock(mutex_);
  std::vector<tenon::v1::Hello> hellos;
  for (const AgentMessage& message : received_) {
    if (message.has_hello()) hellos.push_back(message.hello());
  }
  return hellos;
}

std::vector<tenon::v1::EnrollRequest> FakeController::enrollments() const {
  std::lock_guard lock(mutex_);
  return enrollments_;
}

std::string FakeController::credential_of(const std::string& device_name) const {
  std::lock_guard lock(mutex_);
  auto entry = credentials_.find(device_name);
  return entry == credentials_.end() ? "" : entry->second;
}

int FakeController::streams_started() const {
  std::lock_guard lock(mutex_);
  return streams_started_;
}

grpc::Status FakeController::enroll(const tenon::v1::EnrollRequest& request,
                                    tenon::v1::EnrollResponse* response) {
  std::lock_guard lock(mutex_);
  enrollments_.push_back(request);
  if (!tokens_.contains(request.bootstrap_token())) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "bootstrap token unknown, expired or used up");
  }
  tokens_.erase(request.bootstrap_token());
  const std::string credential =
      absl::StrCat("credential-", request.device_name(), "-", credentials_.size() + 1);
  credentials_[request.device_name()] = credential;
  response->set_device_name(request.device_name());
  response->set_device_uid(absl::StrCat("device-uid-", request.device_name()));
  response->set_credential(credential);
  return grpc::Status::OK;
}

void FakeController::queue(Stream& stream, ControllerMessage message) {
  std::lock_guard lock(stream.mutex);
  message.set_sequence(stream.next_sequence++);
  stream.outgoing.push_back(std::move(message));
  stream.wake.notify_all();
}

void FakeController::serve_image(Stream& stream, const AgentMessage& request) {
  const std::string digest = request.image_request().digest();
  std::string bytes;
  size_t chunk_bytes = 0;
  int corrupt = -1;
  bool send_hash = true;
  {
    std::lock_guard lock(mutex_);
    auto image = images_.find(digest);
    if (image == images_.end()) {
      ControllerMessage error;
      error.mutable_error()->set_code(static_cast<int>(grpc::StatusCode::NOT_FOUND));
      error.mutable_error()->set_message(absl::StrCat("no image ", digest));
      error.mutable_error()->set_related_sequence(request.sequence());
      queue(stream, std::move(error));
      return;
    }
    bytes = image->second;
    chunk_bytes = chunk_bytes_;
    corrupt = corrupt_chunk_;
    send_hash = send_chunk_sha256_;
  }
  int index = 0;
  for (size_t offset = request.image_request().offset(); offset < bytes.size();
       offset += chunk_bytes, ++index) {
    ControllerMessage message;
    tenon::v1::ImageChunk* chunk = message.mutable_image_chunk();
    chunk->set_digest(digest);
    chunk->set_offset(offset);
    chunk->set_data(bytes.substr(offset, chunk_bytes));
    chunk->set_total_size_bytes(bytes.size());
    chunk->set_last(offset + chunk_bytes >= bytes.size());
    if (send_hash) chunk->set_chunk_sha256(crypto::sha256_hex(chunk->data()));
    if (index == corrupt) (*chunk->mutable_data())[0] ^= 0x5a;
    queue(stream, std::move(message));
  }
}

grpc::Status FakeController::connect(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<ControllerMessage, AgentMessage>* server_stream) {
  AgentMessage first;
  if (!server_stream->Read(&first)) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "no hello");
  }
  auto stream = std::make_shared<Stream>();
  std::shared_ptr<Stream> previous;
  absl::Duration telemetry_interval;
  std::optional<tenon::v1::DesiredState> desired;
  {
    std::lock_guard lock(mutex_);
    received_.push_back(first);
    if (!first.has_hello()) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "first message is not Hello");
    }
    auto credential = credentials_.find(first.hello().device_name());
    if (credential == credentials_.end() || credential->second != first.hello().credential()) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "unknown device or wrong credential");
    }
    ++streams_started_;
    previous = active_;
    active_ = stream;
    telemetry_interval = telemetry_interval_;
    desired = desired_;
  }
  if (previous) {
    {
      std::lock_guard lock(previous->mutex);
      previous->end = grpc::Status(grpc::StatusCode::ABORTED, "superseded by a newer stream");
    }
    ControllerMessage ping;
    ping.mutable_ping();
    queue(*previous, std::move(ping));
  }

  ControllerMessage welcome;
  welcome.mutable_welcome()->mutable_telemetry_interval()->set_nanos(
      static_cast<int32_t>(absl::ToInt64Nanoseconds(telemetry_interval) % 1000000000));
  welcome.mutable_welcome()->mutable_telemetry_interval()->set_seconds(
      absl::ToInt64Seconds(telemetry_interval));
  welcome.mutable_welcome()->mutable_ping_interval()->set_seconds(10);
  welcome.mutable_welcome()->set_max_chunk_bytes(64 << 10);
  welcome.mutable_welcome()->set_controller_version("fake");
  queue(*stream, std::move(welcome));
  if (desired && desired->version() > first.hello().acknowledged_desired_state_version()) {
    ControllerMessage message;
    *message.mutable_desired_state() = *desired;
    queue(*stream, std::move(message));
  }

  std::thread writer([stream, server_stream] {
    std::unique_lock lock(stream->mutex);
    for (;;) {
      stream->wake.wait(lock, [&] { return !stream->outgoing.empty() || stream->finished; });
      if (stream->finished) return;
      ControllerMessage message = std::move(stream->outgoing.front());
      stream->outgoing.pop_front();
      lock.unlock();
      const bool written = server_stream->Write(message);
      lock.lock();
      if (!written) return;
    }
  });

  AgentMessage message;
  std::optional<grpc::Status> end;
  while (server_stream->Read(&message)) {
    {
      std::lock_guard lock(mutex_);
      received_.push_back(message);
    }
    if (message.has_image_request()) serve_image(*stream, message);
    std::lock_guard lock(stream->mutex);
    if (stream->end) {
      end = stream->end;
      break;
    }
  }
  {
    std::lock_guard lock(stream->mutex);
    stream->finished = true;
    stream->wake.notify_all();
  }
  writer.join();
  {
    std::lock_guard lock(mutex_);
    if (active_ == stream) active_.reset();
  }
  (void)context;
  return end.value_or(grpc::Status::OK);
}

}  // namespace tenon::agent::testing
