// tenon.v1.MortiseService on gRPC: checks each caller's credentials, hands the call to the
// Supervisor, and maps absl::Status to grpc::Status. Nothing else happens at this boundary.
#pragma once

#include <sys/types.h>

#include <set>

#include "supervisor.h"
#include "tenon/v1/mortise.grpc.pb.h"
#include "unix_listener.h"

namespace mortise {

class MortiseService final : public tenon::v1::MortiseService::Service {
 public:
  // Callers with uid 0, mortised's own uid, or one of `allowed_uids` may use the service.
  MortiseService(Supervisor& supervisor, const UnixListener& listener,
                 std::set<uid_t> allowed_uids);

  grpc::Status Create(grpc::ServerContext* context, const tenon::v1::CreateVmRequest* request,
                      tenon::v1::VmOperationResponse* response) override;
  grpc::Status Start(grpc::ServerContext* context, const tenon::v1::StartVmRequest* request,
                     tenon::v1::VmOperationResponse* response) override;
  grpc::Status Pause(grpc::ServerContext* context, const tenon::v1::PauseVmRequest* request,
                     tenon::v1::VmOperationResponse* response) override;
  grpc::Status Resume(grpc::ServerContext* context, const tenon::v1::ResumeVmRequest* request,
                      tenon::v1::VmOperationResponse* response) override;
  grpc::Status Snapshot(grpc::ServerContext* context, const tenon::v1::SnapshotVmRequest* request,
                        tenon::v1::SnapshotVmResponse* response) override;
  grpc::Status Restore(grpc::ServerContext* context, const tenon::v1::RestoreVmRequest* request,
                       tenon::v1::VmOperationResponse* response) override;
  grpc::Status Destroy(grpc::ServerContext* context, const tenon::v1::DestroyVmRequest* request,
                       tenon::v1::VmOperationResponse* response) override;
  grpc::Status List(grpc::ServerContext* context, const tenon::v1::ListVmsRequest* request,
                    tenon::v1::ListVmsResponse* response) override;
  grpc::Status Get(grpc::ServerContext* context, const tenon::v1::GetVmRequest* request,
                   tenon::v1::Vm* response) override;
  grpc::Status StreamConsole(grpc::ServerContext* context,
                             const tenon::v1::StreamConsoleRequest* request,
                             grpc::ServerWriter<tenon::v1::ConsoleChunk>* writer) override;
  grpc::Status StreamTelemetry(grpc::ServerContext* context,
                               const tenon::v1::StreamTelemetryRequest* request,
                               grpc::ServerWriter<tenon::v1::InstanceTelemetry>* writer) override;
  grpc::Status GetHostInfo(grpc::ServerContext* context,
                           const tenon::v1::GetHostInfoRequest* request,
                           tenon::v1::HostInfo* response) override;

 private:
  absl::Status authorize(const grpc::ServerContext& context) const;

  Supervisor& supervisor_;
  const UnixListener& listener_;
  const std::set<uid_t> allowed_uids_;
};

}  // namespace mortise
