// The gRPC adapters: FleetService for operators (a bearer token in the `authorization`
// metadata) and AgentService for devices (callback API, so that ten thousand open agent streams
// cost memory, not threads). Both translate to Controller calls and absl::Status to grpc::Status.
#pragma once

#include <string>

#include "api_metrics.h"
#include "controller.h"
#include "tenon/v1/agent.grpc.pb.h"
#include "tenon/v1/fleet.grpc.pb.h"

namespace tenon::controller {

// How long a quiet Watch waits before it sends a bookmark.
inline constexpr absl::Duration kWatchBookmarkInterval = absl::Seconds(5);

// Whether `header` ("Bearer <token>") carries the operator token; constant time.
bool operator_authorized(const std::string& header, const std::string& operator_token);

// Migrate is served with the callback API: a migration runs for seconds on its own thread, and
// holds no RPC thread while it does.
class FleetServiceImpl final
    : public tenon::v1::FleetService::WithCallbackMethod_Migrate<tenon::v1::FleetService::Service> {
 public:
  FleetServiceImpl(Controller* controller, ApiMetrics* metrics, std::string operator_token,
                   absl::Duration migration_step_limit = absl::Seconds(60));

  grpc::Status Apply(grpc::ServerContext* context, const tenon::v1::ApplyRequest* request,
                     tenon::v1::ApplyResponse* response) override;
  grpc::Status Get(grpc::ServerContext* context, const tenon::v1::GetRequest* request,
                   tenon::v1::Object* response) override;
  grpc::Status List(grpc::ServerContext* context, const tenon::v1::ListRequest* request,
                    tenon::v1::ListResponse* response) override;
  grpc::Status Delete(grpc::ServerContext* context, const tenon::v1::DeleteRequest* request,
                      tenon::v1::DeleteResponse* response) override;
  grpc::Status Diff(grpc::ServerContext* context, const tenon::v1::DiffRequest* request,
                    tenon::v1::DiffResponse* response) override;
  grpc::Status Compose(grpc::ServerContext* context, const tenon::v1::ComposeRequest* request,
                       tenon::v1::ComposeResponse* response) override;
  grpc::Status GetInstanceLogs(grpc::ServerContext* context,
                               const tenon::v1::GetInstanceLogsRequest* request,
                               grpc::ServerWriter<tenon::v1::ConsoleChunk>* writer) override;
  grpc::Status Watch(grpc::ServerContext* context, const tenon::v1::WatchRequest* request,
                     grpc::ServerWriter<tenon::v1::WatchEvent>* writer) override;
  grpc::ServerUnaryReactor* Migrate(grpc::CallbackServerContext* context,
                                    const tenon::v1::MigrateRequest* request,
                                    tenon::v1::MigrateResponse* response) override;
  grpc::Status CreateBootstrapToken(grpc::ServerContext* context,
                                    const tenon::v1::CreateBootstrapTokenRequest* request,
                                    tenon::v1::CreateBootstrapTokenResponse* response) override;
  grpc::Status ControlRollout(grpc::ServerContext* context,
                              const tenon::v1::ControlRolloutRequest* request,
                              tenon::v1::Deployment* response) override;

 private:
  template <typename Call>
  grpc::Status serve(grpc::ServerContext* context, const char* method, Call&& call);

  Controller* controller_;
  ApiMetrics* metrics_;
  std::string operator_token_;
  absl::Duration migration_step_limit_;
};

class AgentServiceImpl final : public tenon::v1::AgentService::CallbackService {
 public:
  AgentServiceImpl(Controller* controller, ApiMetrics* metrics);

  grpc::ServerUnaryReactor* Enroll(grpc::CallbackServerContext* context,
                                   const tenon::v1::EnrollRequest* request,
                                   tenon::v1::EnrollResponse* response) override;
  grpc::ServerBidiReactor<tenon::v1::AgentMessage, tenon::v1::ControllerMessage>* Connect(
      grpc::CallbackServerContext* context) override;

 private:
  Controller* controller_;
  ApiMetrics* metrics_;
};

}  // namespace tenon::controller
