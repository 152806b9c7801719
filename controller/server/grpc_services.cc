// See grpc_services.h.
#include "grpc_services.h"

#include <openssl/crypto.h>

#include <deque>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "outbound_queue.h"
#include "status_codes.h"

namespace tenon::controller {
namespace {

namespace v1 = tenon::v1;

// One agent stream. The session (shared with the Controller) queues outgoing messages and writes
// them one at a time; it outlives the reactor as an inert husk once the stream is done.
class AgentStream final : public grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage> {
 public:
  AgentStream(Controller* controller, ApiMetrics* metrics)
      : controller_(controller), metrics_(metrics), session_(std::make_shared<Session>(this)) {
    StartRead(&incoming_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the agent closed its side, or the stream broke
      if (!device_.empty()) controller_->close_session(device_, session_);
      session_->close(absl::OkStatus());
      return;
    }
    absl::Status status;
    if (device_.empty()) {
      if (!incoming_.has_hello()) {
        status = absl::FailedPreconditionError("the first message of a stream must be Hello");
      } else {
        const absl::Time start = absl::Now();
        status = controller_->open_session(session_, incoming_.hello());
        metrics_->record("grpc", "AgentService.Hello", status.code(), absl::Now() - start);
        if (status.ok()) device_ = incoming_.hello().device_name();
      }
    } else {
      status = controller_->handle(device_, session_, incoming_);
    }
    if (!status.ok()) {
      if (!device_.empty()) controller_->close_session(device_, session_);
      session_->close(status);
      return;
    }
    StartRead(&incoming_);
  }

  void OnWriteDone(bool ok) override { session_->write_done(ok); }

  void OnDone() override {
    if (!device_.empty()) controller_->close_session(device_, session_);
    session_->detach();
    delete this;
  }

 private:
  class Session final : public AgentSession {
   public:
    explicit Session(AgentStream* stream) : stream_(stream) {}

    void send(v1::ControllerMessage message) override {
      absl::MutexLock lock(&mutex_);
      if (stream_ == nullptr || finish_.has_value()) return;
      message.set_sequence(next_sequence_++);
      if (!queue_.push(std::move(message))) {
        // The agent does not keep up: end the stream rather than hold an unbounded backlog.
        finish_ = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                               absl::StrCat("more than ", kMaxQueuedBytesPerStream,
                                            " bytes wait to be written to this agent; reconnect"));
        if (writing_) {
          queue_.drop_waiting();
        } else {
          queue_.clear();
          stream_->Finish(*finish_);
        }
        return;
      }
      if (!writing_) {
        writing_ = true;
        stream_->StartWrite(&queue_.front());
      }
    }

    void close(const absl::Status& status) override {
      absl::MutexLock lock(&mutex_);
      if (stream_ == nullptr || finish_.has_value()) return;
      finish_ = to_grpc_status(status);
      if (!writing_) stream_->Finish(*finish_);
    }

    void write_done(bool ok) {
      absl::MutexLock lock(&mutex_);
      queue_.pop();
      if (!ok) {  // the stream is broken: drop the rest
        queue_.clear();
        writing_ = false;
        if (!finish_.has_value()) {
          finish_ = grpc::Status(grpc::StatusCode::CANCELLED, "write failed");
          stream_->Finish(*finish_);
        }
        return;
      }
      if (!queue_.empty() && !finish_.has_value()) {
        stream_->StartWrite(&queue_.front());
        return;
      }
      writing_ = false;
      if (finish_.has_value()) {
        queue_.clear();
        stream_->Finish(*finish_);
      }
    }

    void detach() {
      absl::MutexLock lock(&mutex_);
      stream_ = nullptr;
    }

   private:
    absl::Mutex mutex_;
    AgentStream* stream_ ABSL_GUARDED_BY(mutex_);
    OutboundQueue queue_ ABSL_GUARDED_BY(mutex_);
    bool writing_ ABSL_GUARDED_BY(mutex_) = false;
    std::optional<grpc::Status> finish_ ABSL_GUARDED_BY(mutex_);
    uint64_t next_sequence_ ABSL_GUARDED_BY(mutex_) = 1;
  };

  Controller* controller_;
  ApiMetrics* metrics_;
  std::shared_ptr<Session> session_;
  v1::AgentMessage incoming_;
  std::string device_;  // set once Hello was accepted
};

std::string metadata_value(const grpc::ServerContextBase& context, const std::string& key) {
  auto found = context.client_metadata().find(key);
  if (found == context.client_metadata().end()) return "";
  return std::string(found->second.data(), found->second.size());
}

}  // namespace

bool operator_authorized(const std::string& header, const std::string& operator_token) {
  const std::string prefix = "Bearer ";
  if (operator_token.empty() || !absl::StartsWith(header, prefix)) return false;
  const std::string presented = header.substr(prefix.size());
  return presented.size() == operator_token.size() &&
         CRYPTO_memcmp(presented.data(), operator_token.data(), presented.size()) == 0;
}

FleetServiceImpl::FleetServiceImpl(Controller* controller, ApiMetrics* metrics,
                                   std::string operator_token, absl::Duration migration_step_limit)
    : controller_(controller),
      metrics_(metrics),
      operator_token_(std::move(operator_token)),
      migration_step_limit_(migration_step_limit) {}

template <typename Call>
grpc::Status FleetServiceImpl::serve(grpc::ServerContext* context, const char* method,
                                     Call&& call) {
  const absl::Time start = absl::Now();
  absl::Status status;
  if (!operator_authorized(metadata_value(*context, "authorization"), operator_token_)) {
    status = absl::UnauthenticatedError(
        "no or wrong operator token (send 'authorization: Bearer <token>')");
  } else {
    status = call();
  }
  metrics_->record("grpc", absl::StrCat("FleetService.", method), status.code(),
                   absl::Now() - start);
  return to_grpc_status(status);
}

// Runs `result`'s producer and moves the value into *out.
template <typename T>
absl::Status assign(absl::StatusOr<T> result, T* out) {
  if (!result.ok()) return result.status();
  *out = std::move(*result);
  return absl::OkStatus();
}

grpc::Status FleetServiceImpl::Apply(grpc::ServerContext* context, const v1::ApplyRequest* request,
                                     v1::ApplyResponse* response) {
  return serve(context, "Apply", [&] { return assign(controller_->apply(*request), response); });
}

grpc::Status FleetServiceImpl::Get(grpc::ServerContext* context, const v1::GetRequest* request,
                                   v1::Object* response) {
  return serve(context, "Get", [&] { return assign(controller_->get(*request), response); });
}

grpc::Status FleetServiceImpl::List(grpc::ServerContext* context, const v1::ListRequest* request,
                                    v1::ListResponse* response) {
  return serve(context, "List", [&] { return assign(controller_->list(*request), response); });
}

grpc::Status FleetServiceImpl::Delete(grpc::ServerContext* context,
                                      const v1::DeleteRequest* request,
                                      v1::DeleteResponse* response) {
  return serve(context, "Delete", [&] { return assign(controller_->remove(*request), response); });
}

grpc::Status FleetServiceImpl::Diff(grpc::ServerContext* context, const v1::DiffRequest* request,
                                    v1::DiffResponse* response) {
  return serve(context, "Diff", [&] { return assign(controller_->diff(*request), response); });
}

grpc::Status FleetServiceImpl::Compose(grpc::ServerContext* context,
                                       const v1::ComposeRequest* request,
                                       v1::ComposeResponse* response) {
  return serve(context, "Compose",
               [&] { return assign(controller_->compose(*request), response); });
}

grpc::Status FleetServiceImpl::GetInstanceLogs(grpc::ServerContext* context,
                                               const v1::GetInstanceLogsRequest* request,
                                               grpc::ServerWriter<v1::ConsoleChunk>* writer) {
  return serve(context, "GetInstanceLogs", [&]() -> absl::Status {
    uint64_t offset = request->from_offset();
    bool first = true;
    while (!context->IsCancelled()) {
      bool terminal = false;
      absl::StatusOr<v1::ConsoleChunk> chunk = controller_->read_console(
          request->instance(), offset, first ? request->tail_bytes() : 0,
          request->follow() && !first ? absl::Seconds(1) : absl::Milliseconds(500), &terminal);
      if (!chunk.ok()) return chunk.status();
      first = false;
      if (!chunk->data().empty()) {
        offset = chunk->offset() + chunk->data().size();
        if (!writer->Write(*chunk)) return absl::OkStatus();  // the caller went away
      } else if (offset == 0) {
        offset = chunk->offset();
      }
      if (!request->follow() || terminal) return absl::OkStatus();
    }
    return absl::OkStatus();
  });
}

grpc::Status FleetServiceImpl::Watch(grpc::ServerContext* context, const v1::WatchRequest* request,
                                     grpc::ServerWriter<v1::WatchEvent>* writer) {
  return serve(context, "Watch", [&]() -> absl::Status {
    v1::WatchRequest next = *request;
    while (!context->IsCancelled()) {
      absl::StatusOr<WatchBatch> batch = controller_->watch(next, kWatchBookmarkInterval);
      if (!batch.ok()) return batch.status();
      next.set_resource_version(batch->resource_version);
      if (batch->events.empty()) {  // quiet: show the watch is alive, and where it is
        v1::WatchEvent bookmark;
        bookmark.set_type(v1::WatchEvent::TYPE_BOOKMARK);
        bookmark.set_resource_version(batch->resource_version);
        if (!writer->Write(bookmark)) return absl::OkStatus();
      }
      for (const v1::WatchEvent& event : batch->events) {
        if (!writer->Write(event)) return absl::OkStatus();  // the caller went away
      }
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* FleetServiceImpl::Migrate(grpc::CallbackServerContext* context,
                                                    const v1::MigrateRequest* request,
                                                    v1::MigrateResponse* response) {
  const absl::Time start = absl::Now();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto finish = [this, reactor, start](const absl::Status& status) {
    metrics_->record("grpc", "FleetService.Migrate", status.code(), absl::Now() - start);
    reactor->Finish(to_grpc_status(status));
  };
  if (!operator_authorized(metadata_value(*context, "authorization"), operator_token_)) {
    finish(absl::UnauthenticatedError(
        "no or wrong operator token (send 'authorization: Bearer <token>')"));
    return reactor;
  }
  controller_->migrate(*request, migration_step_limit_,
                       [finish, response](absl::StatusOr<v1::MigrateResponse> result) {
                         if (result.ok()) *response = *std::move(result);
                         finish(result.status());
                       });
  return reactor;
}

grpc::Status FleetServiceImpl::CreateBootstrapToken(grpc::ServerContext* context,
                                                    const v1::CreateBootstrapTokenRequest* request,
                                                    v1::CreateBootstrapTokenResponse* response) {
  return serve(context, "CreateBootstrapToken",
               [&] { return assign(controller_->create_bootstrap_token(*request), response); });
}

grpc::Status FleetServiceImpl::ControlRollout(grpc::ServerContext* context,
                                              const v1::ControlRolloutRequest* request,
                                              v1::Deployment* response) {
  return serve(context, "ControlRollout",
               [&] { return assign(controller_->control_rollout(*request), response); });
}

AgentServiceImpl::AgentServiceImpl(Controller* controller, ApiMetrics* metrics)
    : controller_(controller), metrics_(metrics) {}

grpc::ServerUnaryReactor* AgentServiceImpl::Enroll(grpc::CallbackServerContext* context,
                                                   const v1::EnrollRequest* request,
                                                   v1::EnrollResponse* response) {
  const absl::Time start = absl::Now();
  absl::Status status = assign(controller_->enroll(*request), response);
  metrics_->record("grpc", "AgentService.Enroll", status.code(), absl::Now() - start);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(to_grpc_status(status));
  return reactor;
}

grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>* AgentServiceImpl::Connect(
    grpc::CallbackServerContext*) {
  return new AgentStream(controller_, metrics_);
}

}  // namespace tenon::controller
