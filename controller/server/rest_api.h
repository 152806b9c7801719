// REST over HTTP/1.1 on the controller's second port: the FleetService messages as JSON (the
// protobuf JSON mapping with proto field names) under /v1/, plus /metrics, /healthz and /readyz.
//
//   GET    /v1/{devices|apps|deployments|instances|compositions}      List (query:
//   selector=k%3Dv,..,
//                                                                       device, deployment,
//                                                                       page_size, page_token)
//   GET    /v1/{kind}/{name}                                          Get
//   DELETE /v1/{kind}/{name}[?force=true&expected_generation=N]        Delete
//   GET    /v1/instances/{name}/logs[?tail_bytes=N]                     held console bytes
//   POST   /v1/apply | /v1/diff | /v1/compose | /v1/bootstrap-tokens   body: the request message
//   POST   /v1/deployments/{name}/rollout  body: ControlRolloutRequest (e.g. {"action":
//          "ACTION_PAUSE"}); answers the Deployment
//   GET    /metrics                                                   Prometheus text, no token
//   GET    /healthz                                                   "ok": the process serves
//   GET    /readyz[?verbose]                                          readiness, below
//
// /readyz is 200 when the store answers a trivial transaction now and the object cache is
// primed, else 503. The body is {"ready": bool, "checks": {"store": "ok" or why not,
// "object-cache": "ok"}}; with ?verbose, one "[+]NAME ok" or "[-]NAME failed: WHY" line per check
// and a last "readyz check passed|failed" line, as kube-apiserver's /readyz?verbose prints them.
// /metrics, /healthz and /readyz need no token (probes and scrapers rarely carry one).
//
// Every /v1/ route needs `Authorization: Bearer <operator token>`. Errors are
// {"code": <gRPC code number>, "status": "<code name>", "message": "..."} with the HTTP status
// from status_codes.h.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "api_metrics.h"
#include "controller.h"
#include "http/http_server.h"
#include "store.h"

namespace tenon::controller {

class RestApi {
 public:
  // `store` is the one `controller` was created with; /readyz runs a transaction on it.
  RestApi(Controller* controller, Store* store, ApiMetrics* metrics, std::string operator_token);
  ~RestApi();
  // Binds (port 0 picks one) and serves on a thread of its own; returns the bound port.
  absl::StatusOr<int> start(const std::string& host, int port);
  void stop();
  // What the HTTP server refused or cut off (slow, malformed or too many connections).
  http::ServerCounters counters() const;

 private:
  void install_routes();
  // /readyz: each check by name, "ok" or why it fails, in the order they are reported.
  std::vector<std::pair<std::string, std::string>> readiness_checks();

  Controller* controller_;
  Store* store_;
  ApiMetrics* metrics_;
  std::string operator_token_;
  std::unique_ptr<http::Server> server_;
  static constexpr absl::Duration kReadinessReuse = absl::Seconds(1);
  absl::Mutex readiness_mutex_;
  std::vector<std::pair<std::string, std::string>> readiness_ ABSL_GUARDED_BY(readiness_mutex_);
  absl::Time readiness_time_ ABSL_GUARDED_BY(readiness_mutex_) = absl::InfinitePast();
};

}  // namespace tenon::controller
