// See rest_api.h.
#include "rest_api.h"

#include <limits>
#include <optional>
#include <string_view>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "google/protobuf/util/json_util.h"
#include "grpc_services.h"
#include "http/http_server.h"
#include "label_selector.h"
#include "nlohmann/json.hpp"
#include "object_meta.h"
#include "request_limits.h"
#include "status_codes.h"

namespace tenon::controller {
namespace {

namespace v1 = tenon::v1;

// Errors are {"code", "status", "message"}: the gRPC code, its name, and why.
void reply_error(http::Response& response, absl::StatusCode code, absl::string_view message) {
  nlohmann::ordered_json body;
  body["code"] = static_cast<int>(code);
  body["status"] = code_name(code);
  body["message"] = std::string(message);
  response.body = body.dump() + "\n";
  response.content_type = "application/json";
}

void reply_status(http::Response& response, const absl::Status& status) {
  reply_error(response, status.code(), status.message());
  response.status = http_status(status.code());
}

// The gRPC code that best names an HTTP status the server itself answered with.
absl::StatusCode code_of_http_status(int status) {
  switch (status) {
    case 400:
    case 411:
    case 417:
    case 431:
    case 505:
      return absl::StatusCode::kInvalidArgument;
    case 401:
      return absl::StatusCode::kUnauthenticated;
    case 404:
      return absl::StatusCode::kNotFound;
    case 405:
      return absl::StatusCode::kUnimplemented;
    case 408:
      return absl::StatusCode::kDeadlineExceeded;
    case 413:
    case 414:
    case 429:
      return absl::StatusCode::kResourceExhausted;
    case 503:
      return absl::StatusCode::kUnavailable;
    default:
      return absl::StatusCode::kInternal;
  }
}

void reply_message(http::Response& response, const google::protobuf::Message& message) {
  std::string text;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.add_whitespace = true;
  const auto printed = google::protobuf::util::MessageToJsonString(message, &text, options);
  if (!printed.ok()) {
    reply_status(response, absl::InternalError(printed.ToString()));
    return;
  }
  response.status = 200;
  response.body = std::move(text);
  response.content_type = "application/json";
}

absl::Status parse_body(const http::Request& request, google::protobuf::Message* message) {
  if (absl::Status shape = check_json_shape(request.body); !shape.ok()) return shape;
  google::protobuf::util::JsonParseOptions options;
  const auto parsed = google::protobuf::util::JsonStringToMessage(request.body, message, options);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("request body: ", parsed.ToString()));
  }
  return absl::OkStatus();
}

// ?selector=, in kubectl's syntax (label_selector.h); absent: *selector is left empty.
absl::Status read_selector(const http::Request& request, v1::LabelSelector* selector) {
  std::optional<std::string> text = request.query_value("selector");
  if (!text.has_value()) return absl::OkStatus();
  absl::StatusOr<v1::LabelSelector> parsed = parse_label_selector(*text);
  if (!parsed.ok()) return parsed.status();
  *selector = *std::move(parsed);
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> query_number(const http::Request& request, absl::string_view key) {
  const std::optional<std::string> text = request.query_value(key);
  if (!text.has_value()) return 0;
  uint64_t value = 0;
  if (!absl::SimpleAtoi(*text, &value)) {
    return absl::InvalidArgumentError(absl::StrCat("query parameter ", key, " is not a number"));
  }
  return value;
}

// A POST handler: parses the body as `Request`, calls, answers with the response message.
template <typename Request, typename Call>
std::function<absl::Status(const http::Request&, http::Response&)> post_handler(Call call) {
  return [call](const http::Request& request, http::Response& response) -> absl::Status {
    Request message;
    if (absl::Status parsed = parse_body(request, &message); !parsed.ok()) return parsed;
    auto result = call(message);
    if (!result.ok()) return result.status();
    reply_message(response, *result);
    return absl::OkStatus();
  };
}

}  // namespace

RestApi::RestApi(Controller* controller, Store* store, ApiMetrics* metrics,
                 std::string operator_token)
    : controller_(controller),
      store_(store),
      metrics_(metrics),
      operator_token_(std::move(operator_token)),
      server_(std::make_unique<http::Server>(rest_server_limits())) {
  install_routes();
}

RestApi::~RestApi() { stop(); }

std::vector<std::pair<std::string, std::string>> RestApi::readiness_checks() {
  // Probes need no token, so anyone may ask: the answer is reused for a second, and a flood of
  // probes costs one store transaction a second.
  absl::MutexLock lock(&readiness_mutex_);
  if (absl::Now() - readiness_time_ < kReadinessReuse) return readiness_;
  std::vector<std::pair<std::string, std::string>> checks;
  // The store answers now: a transaction that only reads a counter still takes the store's
  // transaction (and SQLite's write lock, or a PostgreSQL connection), so a store that is locked
  // by another process, gone or unreachable fails here, after the backend's own wait (SQLite's
  // busy timeout, 5 s).
  const absl::Status store = store_->transact([](StoreTransaction& transaction) {
    return transaction.read_counter(kResourceVersionCounter).status();
  });
  checks.emplace_back("store", store.ok() ? "ok" : std::string(store.message()));
  // Controller::create reads every stored object into the object cache before it returns, and
  // main starts this server only after that, so whenever /readyz can be asked the cache is primed.
  checks.emplace_back("object-cache", "ok");
  readiness_ = checks;
  readiness_time_ = absl::Now();
  return checks;
}

void RestApi::install_routes() {
  // The server's own refusals (408, 413, 429, ...) in the API's error format.
  server_->set_error_renderer([](int status, absl::string_view message, http::Response& response) {
    reply_error(response, code_of_http_status(status), message);
  });
  // Once a request's head is in and before any body is read: methods the API does not have, and
  // /v1/ requests without the operator token, are refused (the connection then closes, so a
  // large body is never kept; a client that asked first with Expect: 100-continue is told no
  // before it sends any).
  server_->set_head_check([this](const http::Request& request) -> std::optional<http::Response> {
    http::Response response;
    if (request.method != "GET" && request.method != "POST" && request.method != "DELETE" &&
        request.method != "HEAD") {
      reply_status(response, absl::InvalidArgumentError(absl::StrCat("method ", request.method,
                                                                     " is not part of the API")));
      response.status = 405;
      response.headers.push_back({"Allow", "GET, HEAD, POST, DELETE"});
      return response;
    }
    // Only an API call (POST under /v1/, which needs the token) has a body: any other request
    // that announces one is refused before a byte of it is read.
    const std::string length = request.header("Content-Length");
    if (!length.empty() && length != "0" &&
        (request.method != "POST" || request.path.rfind("/v1/", 0) != 0)) {
      reply_status(response,
                   absl::InvalidArgumentError(absl::StrCat(
                       request.method, " ", request.path.substr(0, 80), " takes no request body")));
      return response;
    }
    if (request.path.rfind("/v1/", 0) != 0 ||
        operator_authorized(request.header("Authorization"), operator_token_)) {
      return std::nullopt;
    }
    reply_status(response, absl::UnauthenticatedError(
                               "no or wrong operator token (send 'Authorization: Bearer "
                               "<token>')"));
    metrics_->record("rest", "Unauthenticated", absl::StatusCode::kUnauthenticated,
                     absl::ZeroDuration());
    return response;
  });
  // Wraps a /v1/ handler (its caller is authenticated): metrics, and errors as JSON.
  auto route = [this](const char* name,
                      std::function<absl::Status(const http::Request&, http::Response&)> handler) {
    return [this, name, handler](const http::Request& request, http::Response& response) {
      const absl::Time start = absl::Now();
      const absl::Status status = handler(request, response);
      if (!status.ok()) reply_status(response, status);
      metrics_->record("rest", name, status.code(), absl::Now() - start);
    };
  };
  const std::string kinds = "(devices|apps|deployments|instances|compositions)";
  // Liveness: answering at all is the whole check (the HTTP thread pool serves).
  server_->route("GET", "/healthz",
                 [](const http::Request&, http::Response& response) { response.body = "ok\n"; });
  server_->route("GET", "/readyz", [this](const http::Request& request, http::Response& response) {
    const std::vector<std::pair<std::string, std::string>> checks = readiness_checks();
    bool ready = true;
    for (const auto& [name, result] : checks) ready = ready && result == "ok";
    response.status = ready ? 200 : 503;
    if (request.query_value("verbose").has_value()) {
      std::string text;
      for (const auto& [name, result] : checks) {
        absl::StrAppend(&text,
                        result == "ok" ? absl::StrCat("[+]", name, " ok")
                                       : absl::StrCat("[-]", name, " failed: ", result),
                        "\n");
      }
      absl::StrAppend(&text, "readyz check ", ready ? "passed" : "failed", "\n");
      response.body = std::move(text);
      return;
    }
    nlohmann::ordered_json body;
    body["ready"] = ready;
    body["checks"] = nlohmann::ordered_json::object();
    for (const auto& [name, result] : checks) body["checks"][name] = result;
    response.body = body.dump() + "\n";
    response.content_type = "application/json";
  });
  server_->route("GET", "/metrics", [this](const http::Request&, http::Response& response) {
    response.body = metrics_->render(controller_->snapshot());
    response.content_type = "text/plain; version=0.0.4; charset=utf-8";
  });
  server_->route("GET", "/v1/" + kinds,
                 route("List", [this](const http::Request& request, http::Response& response) {
                   v1::ListRequest list;
                   absl::StatusOr<v1::ObjectKind> kind = parse_kind(request.matches[1]);
                   if (!kind.ok()) return kind.status();
                   list.set_kind(*kind);
                   if (absl::Status read = read_selector(request, list.mutable_selector());
                       !read.ok()) {
                     return read;
                   }
                   list.set_device(request.query_value("device").value_or(""));
                   list.set_deployment(request.query_value("deployment").value_or(""));
                   absl::StatusOr<uint64_t> page_size = query_number(request, "page_size");
                   if (!page_size.ok()) return page_size.status();
                   if (*page_size > std::numeric_limits<uint32_t>::max()) {
                     return absl::InvalidArgumentError(
                         absl::StrCat("page_size ", *page_size, " does not fit 32 bits"));
                   }
                   list.set_page_size(static_cast<uint32_t>(*page_size));
                   list.set_page_token(request.query_value("page_token").value_or(""));
                   absl::StatusOr<v1::ListResponse> result = controller_->list(list);
                   if (!result.ok()) return result.status();
                   reply_message(response, *result);
                   return absl::OkStatus();
                 }));
  // A watch: one JSON WatchEvent per line, as changes happen, until the client goes away.
  server_->route(
      "GET", "/v1/watch/" + kinds,
      route("Watch", [this](const http::Request& request, http::Response& response) {
        v1::WatchRequest watch;
        absl::StatusOr<v1::ObjectKind> kind = parse_kind(request.matches[1]);
        if (!kind.ok()) return kind.status();
        watch.set_kind(*kind);
        if (absl::Status read = read_selector(request, watch.mutable_selector()); !read.ok()) {
          return read;
        }
        absl::StatusOr<uint64_t> version = query_number(request, "resource_version");
        if (!version.ok()) return version.status();
        watch.set_resource_version(*version != 0 ? *version : controller_->resource_version());
        // The first batch is read here, so that a version too old is an error status, not a
        // stream that ends at once.
        absl::StatusOr<WatchBatch> first = controller_->watch(watch, absl::ZeroDuration());
        if (!first.ok()) return first.status();
        response.content_type = "application/x-ndjson";
        response.stream = [this, watch, pending = std::make_shared<WatchBatch>(*std::move(first))](
                              http::StreamWriter& writer) mutable {
          while (pending->events.empty()) {
            watch.set_resource_version(pending->resource_version);
            absl::StatusOr<WatchBatch> next = controller_->watch(watch, kWatchBookmarkInterval);
            if (!next.ok()) return false;
            *pending = *std::move(next);
            if (pending->events.empty()) {
              v1::WatchEvent bookmark;
              bookmark.set_type(v1::WatchEvent::TYPE_BOOKMARK);
              bookmark.set_resource_version(pending->resource_version);
              pending->events.push_back(bookmark);
            }
          }
          std::string lines;
          for (const v1::WatchEvent& event : pending->events) {
            std::string line;
            google::protobuf::util::JsonPrintOptions options;
            options.preserve_proto_field_names = true;
            (void)google::protobuf::util::MessageToJsonString(event, &line, options);
            absl::StrAppend(&lines, line, "\n");
          }
          pending->events.clear();
          return writer.write(lines);
        };
        return absl::OkStatus();
      }));
  server_->route("GET", "/v1/instances/([a-z0-9-]+)/logs",
                 route("Logs", [this](const http::Request& request, http::Response& response) {
                   absl::StatusOr<uint64_t> tail = query_number(request, "tail_bytes");
                   if (!tail.ok()) return tail.status();
                   bool terminal = false;
                   absl::StatusOr<v1::ConsoleChunk> chunk = controller_->read_console(
                       request.matches[1], 0, *tail, absl::ZeroDuration(), &terminal);
                   if (!chunk.ok()) return chunk.status();
                   response.body = chunk->data();
                   return absl::OkStatus();
                 }));
  server_->route("GET", "/v1/" + kinds + "/([a-z0-9-]+)",
                 route("Get", [this](const http::Request& request, http::Response& response) {
                   v1::GetRequest get;
                   absl::StatusOr<v1::ObjectKind> kind = parse_kind(request.matches[1]);
                   if (!kind.ok()) return kind.status();
                   get.set_kind(*kind);
                   get.set_name(request.matches[2]);
                   absl::StatusOr<v1::Object> object = controller_->get(get);
                   if (!object.ok()) return object.status();
                   reply_message(response, *object);
                   return absl::OkStatus();
                 }));
  server_->route("DELETE", "/v1/" + kinds + "/([a-z0-9-]+)",
                 route("Delete", [this](const http::Request& request, http::Response& response) {
                   v1::DeleteRequest remove;
                   absl::StatusOr<v1::ObjectKind> kind = parse_kind(request.matches[1]);
                   if (!kind.ok()) return kind.status();
                   remove.set_kind(*kind);
                   remove.set_name(request.matches[2]);
                   remove.set_force(request.query_value("force") == "true");
                   absl::StatusOr<uint64_t> generation =
                       query_number(request, "expected_generation");
                   if (!generation.ok()) return generation.status();
                   remove.set_expected_generation(*generation);
                   absl::StatusOr<v1::DeleteResponse> result = controller_->remove(remove);
                   if (!result.ok()) return result.status();
                   reply_message(response, *result);
                   return absl::OkStatus();
                 }));
  // POST routes: the body is the request message, the answer the response message.
  server_->route(
      "POST", "/v1/apply",
      route("Apply", post_handler<v1::ApplyRequest>([this](const v1::ApplyRequest& request) {
              return controller_->apply(request);
            })));
  server_->route(
      "POST", "/v1/deployments/([a-z0-9-]+)/rollout",
      route("ControlRollout", [this](const http::Request& request, http::Response& response) {
        v1::ControlRolloutRequest control;
        if (absl::Status parsed = parse_body(request, &control); !parsed.ok()) return parsed;
        control.set_deployment(request.matches[1]);
        absl::StatusOr<v1::Deployment> result = controller_->control_rollout(control);
        if (!result.ok()) return result.status();
        reply_message(response, *result);
        return absl::OkStatus();
      }));
  server_->route(
      "POST", "/v1/diff",
      route("Diff", post_handler<v1::DiffRequest>([this](const v1::DiffRequest& request) {
              return controller_->diff(request);
            })));
  server_->route(
      "POST", "/v1/compose",
      route("Compose", post_handler<v1::ComposeRequest>([this](const v1::ComposeRequest& request) {
              return controller_->compose(request);
            })));
  server_->route(
      "POST", "/v1/bootstrap-tokens",
      route("CreateBootstrapToken", post_handler<v1::CreateBootstrapTokenRequest>(
                                        [this](const v1::CreateBootstrapTokenRequest& request) {
                                          return controller_->create_bootstrap_token(request);
                                        })));
}

absl::StatusOr<int> RestApi::start(const std::string& host, int port) {
  return server_->start(host, port);
}

void RestApi::stop() { server_->stop(); }

http::ServerCounters RestApi::counters() const { return server_->counters(); }

}  // namespace tenon::controller
