// The gRPC boundary of mortised; see mortise_service.h.
#include "mortise_service.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace mortise {
namespace {

grpc::Status to_grpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::StatusCode and grpc::StatusCode share google.rpc.Code's numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

template <typename Response>
grpc::Status answer(absl::StatusOr<Response> result, Response* response) {
  if (!result.ok()) return to_grpc(result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

}  // namespace

MortiseService::MortiseService(Supervisor& supervisor, const UnixListener& listener,
                               std::set<uid_t> allowed_uids)
    : supervisor_(supervisor), listener_(listener), allowed_uids_(std::move(allowed_uids)) {}

absl::Status MortiseService::authorize(const grpc::ServerContext& context) const {
  const std::string peer = context.peer();
  const std::optional<ucred> credentials = listener_.credentials_of(peer);
  if (!credentials) {
    return absl::PermissionDeniedError(absl::StrCat("cannot tell who the caller is (", peer, ")"));
  }
  if (credentials->uid == 0 || credentials->uid == geteuid() ||
      allowed_uids_.count(credentials->uid) != 0) {
    return absl::OkStatus();
  }
  std::set<uid_t> allowed = allowed_uids_;
  allowed.insert(0);
  allowed.insert(geteuid());
  return absl::PermissionDeniedError(
      absl::StrCat("uid ", credentials->uid,
                   " may not use mortised (allowed uids: ", absl::StrJoin(allowed, ", "), ")"));
}

#define MORTISED_AUTHORIZE(context)                                    \
  do {                                                                 \
    if (absl::Status allowed = authorize(*(context)); !allowed.ok()) { \
      return to_grpc(allowed);                                         \
    }                                                                  \
  } while (false)

grpc::Status MortiseService::Create(grpc::ServerContext* context,
                                    const tenon::v1::CreateVmRequest* request,
                                    tenon::v1::VmOperationResponse* response) {
  MORTISED_AUTHORIZE(context);
  return answer(supervisor_.create_vm(*request), response);
}

grpc::Status MortiseService::Start(grpc::ServerContext* context,
                                   const tenon::v1::StartVmRequest* request,
                                   tenon::v1::VmOperationResponse* response) {
  MORTISED_AUTHORIZE(context);
  return answer(supervisor_.start_vm(request->name()), response);
}

grpc::Status MortiseService::Pause(grpc::ServerContext* context,
                                   const tenon::v1::PauseVmRequest* request,
                                   tenon::v1::VmOperationResponse* response) {
  MORTISED_AUTHORIZE(context);
  return answer(supervisor_.pause_vm(request->name()), response);
}

grpc::Status MortiseService::Resume(grpc::ServerContext* context,
                                    const tenon::v1::ResumeVmRequest* request,
                                    tenon::v1::VmOperationResponse* response) {
  MORTISED_AUTHORIZE(context);
  return answer(supervisor_.resume_vm(request->name()), response);
}

grpc::Status MortiseService::Snapshot(grpc::ServerContext* context,
                                      const tenon::v1::SnapshotVmRequest* request,
                                      tenon::v1::SnapshotVmResponse* response) {
  MORTISED_AUTHORIZE(context);
  return answer(supervisor_.snapshot_vm(*request), response);
}

grpc::Status MortiseService::Restore(grpc::ServerContext* context,
                                     const tenon::v1::RestoreVmRequest* request,
                                     tenon::v1::VmOperationResponse* response) {
  MORTISED_AUTHORIZE(context);
  return answer(supervisor_.restore_vm(*request), response);
}

grpc::Status MortiseService::Destroy(grpc::ServerContext* context,
                                     const tenon::v1::DestroyVmRequest* request,
                                     tenon::v1::VmOperationResponse* response) {
  MORTISED_AUTHORIZE(context);
  return answer(supervisor_.destroy_vm(request->name()), response);
}

grpc::Status MortiseService::List(grpc::ServerContext* context, const tenon::v1::ListVmsRequest*,
                                  tenon::v1::ListVmsResponse* response) {
  MORTISED_AUTHORIZE(context);
  *response = supervisor_.list_vms();
  return grpc::Status::OK;
}

grpc::Status MortiseService::Get(grpc::ServerContext* context,
                                 const tenon::v1::GetVmRequest* request, tenon::v1::Vm* response) {
  MORTISED_AUTHORIZE(context);
  return answer(supervisor_.get_vm(*request), response);
}

grpc::Status MortiseService::StreamConsole(grpc::ServerContext* context,
                                           const tenon::v1::StreamConsoleRequest* request,
                                           grpc::ServerWriter<tenon::v1::ConsoleChunk>* writer) {
  MORTISED_AUTHORIZE(context);
  return to_grpc(supervisor_.stream_console(
      *request, [&](const tenon::v1::ConsoleChunk& chunk) { return writer->Write(chunk); },
      [&] { return context->IsCancelled(); }));
}

grpc::Status MortiseService::StreamTelemetry(
    grpc::ServerContext* context, const tenon::v1::StreamTelemetryRequest* request,
    grpc::ServerWriter<tenon::v1::InstanceTelemetry>* writer) {
  MORTISED_AUTHORIZE(context);
  return to_grpc(supervisor_.stream_telemetry(
      *request, [&](const tenon::v1::InstanceTelemetry& sample) { return writer->Write(sample); },
      [&] { return context->IsCancelled(); }));
}

grpc::Status MortiseService::GetHostInfo(grpc::ServerContext* context,
                                         const tenon::v1::GetHostInfoRequest*,
                                         tenon::v1::HostInfo* response) {
  MORTISED_AUTHORIZE(context);
  *response = supervisor_.host_info();
  return grpc::Status::OK;
}

}  // namespace mortise
