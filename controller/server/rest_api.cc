// See rest_api.h.
#include "rest_api.h"

#include <httplib.h>

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
#include "label_selector.h"
#include "nlohmann/json.hpp"
#include "object_meta.h"
#include "request_limits.h"
#include "status_codes.h"

namespace tenon::controller {
namespace {

namespace v1 = tenon::v1;

void reply_status(httplib::Response& response, const absl::Status& status) {
  nlohmann::ordered_json body;
  body["code"] = static_cast<int>(status.code());
  body["status"] = code_name(status.code());
  body["message"] = std::string(status.message());
  response.status = http_status(status.code());
  response.set_content(body.dump() + "\n", "application/json");
}

void reply_message(httplib::Response& response, const google::protobuf::Message& message) {
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
  response.set_content(text, "application/json");
}

absl::Status parse_body(const httplib::Request& request, google::protobuf::Message* message) {
  if (absl::Status shape = check_json_shape(request.body); !shape.ok()) return shape;
  google::protobuf::util::JsonParseOptions options;
  const auto parsed = google::protobuf::util::JsonStringToMessage(request.body, message, options);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("request body: ", parsed.ToString()));
  }
  return absl::OkStatus();
}

// The raw value of a query parameter, %XX and '+' decoded, from the request target itself: the
// HTTP library cuts a value at its first '=', so "selector=a=b" would lose "=b".
std::optional<std::string> raw_query_value(const httplib::Request& request, absl::string_view key) {
  const size_t question = request.target.find('?');
  if (question == std::string::npos) return std::nullopt;
  for (absl::string_view part :
       absl::StrSplit(absl::string_view(request.target).substr(question + 1), '&')) {
    if (!absl::ConsumePrefix(&part, key) || !absl::ConsumePrefix(&part, "=")) continue;
    std::string value;
    for (size_t at = 0; at < part.size(); ++at) {
      int byte = 0;
      if (part[at] == '%' && at + 2 < part.size() &&
          absl::SimpleHexAtoi(part.substr(at + 1, 2), &byte)) {
        value.push_back(static_cast<char>(byte));
        at += 2;
      } else {
        value.push_back(part[at] == '+' ? ' ' : part[at]);
      }
    }
    return value;
  }
  return std::nullopt;
}

// ?selector=, in kubectl's syntax (label_selector.h); absent: *selector is left empty.
absl::Status read_selector(const httplib::Request& request, v1::LabelSelector* selector) {
  std::optional<std::string> text = raw_query_value(request, "selector");
  if (!text.has_value()) return absl::OkStatus();
  absl::StatusOr<v1::LabelSelector> parsed = parse_label_selector(*text);
  if (!parsed.ok()) return parsed.status();
  *selector = *std::move(parsed);
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> query_number(const httplib::Request& request, const std::string& key) {
  if (!request.has_param(key)) return 0;
  uint64_t value = 0;
  if (!absl::SimpleAtoi(request.get_param_value(key), &value)) {
    return absl::InvalidArgumentError(absl::StrCat("query parameter ", key, " is not a number"));
  }
  return value;
}

// A POST handler: parses the body as `Request`, calls, answers with the response message.
template <typename Request, typename Call>
std::function<absl::Status(const httplib::Request&, httplib::Response&)> post_handler(Call call) {
  return [call](const httplib::Request& request, httplib::Response& response) -> absl::Status {
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
      server_(std::make_unique<httplib::Server>()) {
  install_routes();
}

RestApi::~RestApi() { stop(); }

std::vector<std::pair<std::string, std::string>> RestApi::readiness_checks() {
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
  return checks;
}

void RestApi::install_routes() {
  // The operator token is checked once the headers are in, before any body is read (httplib
  // reads a body only for the route it dispatches to); a body beyond the limit is refused with
  // 413 without being kept.
  server_->set_payload_max_length(kMaxRequestBytes);
  // Slow or idle clients: each connection has a worker while it is open, so the pool is larger
  // than a few stalled clients, and a connection that sends or takes nothing for the timeout, or
  // stays idle between requests, is closed.
  server_->new_task_queue = [] { return new httplib::ThreadPool(kRestWorkers); };
  server_->set_read_timeout(kRestIoTimeoutSeconds, 0);
  server_->set_write_timeout(kRestIoTimeoutSeconds, 0);
  server_->set_keep_alive_timeout(kRestIoTimeoutSeconds);
  // A client that asks before sending its body (Expect: 100-continue, as curl does for large
  // ones) and has no token is told no before it sends any of it. (An authorized one is let go on:
  // the payload limit then refuses an oversized body without keeping it.)
  server_->set_expect_100_continue_handler(
      [this](const httplib::Request& request, httplib::Response& response) {
        if (operator_authorized(request.get_header_value("Authorization"), operator_token_)) {
          return 100;
        }
        reply_status(response, absl::UnauthenticatedError("no or wrong operator token"));
        return 401;
      });
  server_->set_pre_routing_handler(
      [this](const httplib::Request& request, httplib::Response& response) {
        // Methods the API does not have are refused before any body is waited for.
        if (request.method != "GET" && request.method != "POST" && request.method != "DELETE" &&
            request.method != "HEAD") {
          reply_status(response, absl::InvalidArgumentError(absl::StrCat(
                                     "method ", request.method, " is not part of the API")));
          response.status = 405;
          response.set_header("Allow", "GET, POST, DELETE");
          return httplib::Server::HandlerResponse::Handled;
        }
        if (request.path.rfind("/v1/", 0) != 0 ||
            operator_authorized(request.get_header_value("Authorization"), operator_token_)) {
          return httplib::Server::HandlerResponse::Unhandled;
        }
        reply_status(response, absl::UnauthenticatedError(
                                   "no or wrong operator token (send 'Authorization: Bearer "
                                   "<token>')"));
        metrics_->record("rest", "Unauthenticated", absl::StatusCode::kUnauthenticated,
                         absl::ZeroDuration());
        return httplib::Server::HandlerResponse::Handled;
      });
  // Wraps a /v1/ handler (its caller is authenticated): metrics, and errors as JSON.
  auto route =
      [this](const char* name,
             std::function<absl::Status(const httplib::Request&, httplib::Response&)> handler) {
        return [this, name, handler](const httplib::Request& request, httplib::Response& response) {
          const absl::Time start = absl::Now();
          const absl::Status status = handler(request, response);
          if (!status.ok()) reply_status(response, status);
          metrics_->record("rest", name, status.code(), absl::Now() - start);
        };
      };
  const std::string kinds = "(devices|apps|deployments|instances|compositions)";
  // Liveness: answering at all is the whole check (the HTTP thread pool serves).
  server_->Get("/healthz", [](const httplib::Request&, httplib::Response& response) {
    response.set_content("ok\n", "text/plain");
  });
  server_->Get("/readyz", [this](const httplib::Request& request, httplib::Response& response) {
    const std::vector<std::pair<std::string, std::string>> checks = readiness_checks();
    bool ready = true;
    for (const auto& [name, result] : checks) ready = ready && result == "ok";
    response.status = ready ? 200 : 503;
    if (request.has_param("verbose")) {
      std::string text;
      for (const auto& [name, result] : checks) {
        absl::StrAppend(&text,
                        result == "ok" ? absl::StrCat("[+]", name, " ok")
                                       : absl::StrCat("[-]", name, " failed: ", result),
                        "\n");
      }
      absl::StrAppend(&text, "readyz check ", ready ? "passed" : "failed", "\n");
      response.set_content(text, "text/plain");
      return;
    }
    nlohmann::ordered_json body;
    body["ready"] = ready;
    body["checks"] = nlohmann::ordered_json::object();
    for (const auto& [name, result] : checks) body["checks"][name] = result;
    response.set_content(body.dump() + "\n", "application/json");
  });
  server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& response) {
    response.set_content(metrics_->render(controller_->snapshot()),
                         "text/plain; version=0.0.4; charset=utf-8");
  });
  server_->Get("/v1/" + kinds,
               route("List", [this](const httplib::Request& request, httplib::Response& response) {
                 v1::ListRequest list;
                 absl::StatusOr<v1::ObjectKind> kind = parse_kind(request.matches[1].str());
                 if (!kind.ok()) return kind.status();
                 list.set_kind(*kind);
                 if (absl::Status read = read_selector(request, list.mutable_selector());
                     !read.ok()) {
                   return read;
                 }
                 list.set_device(request.get_param_value("device"));
                 list.set_deployment(request.get_param_value("deployment"));
                 absl::StatusOr<uint64_t> page_size = query_number(request, "page_size");
                 if (!page_size.ok()) return page_size.status();
                 if (*page_size > std::numeric_limits<uint32_t>::max()) {
                   return absl::InvalidArgumentError(
                       absl::StrCat("page_size ", *page_size, " does not fit 32 bits"));
                 }
                 list.set_page_size(static_cast<uint32_t>(*page_size));
                 list.set_page_token(request.get_param_value("page_token"));
                 absl::StatusOr<v1::ListResponse> result = controller_->list(list);
                 if (!result.ok()) return result.status();
                 reply_message(response, *result);
                 return absl::OkStatus();
               }));
  // A watch: one JSON WatchEvent per line, as changes happen, until the client goes away.
  server_->Get(
      "/v1/watch/" + kinds,
      route("Watch", [this](const httplib::Request& request, httplib::Response& response) {
        v1::WatchRequest watch;
        absl::StatusOr<v1::ObjectKind> kind = parse_kind(request.matches[1].str());
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
        response.set_chunked_content_provider(
            "application/x-ndjson",
            [this, watch, pending = std::make_shared<WatchBatch>(*std::move(first))](
                size_t, httplib::DataSink& sink) mutable {
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
              return sink.write(lines.data(), lines.size());
            });
        return absl::OkStatus();
      }));
  server_->Get("/v1/instances/([a-z0-9-]+)/logs",
               route("Logs", [this](const httplib::Request& request, httplib::Response& response) {
                 absl::StatusOr<uint64_t> tail = query_number(request, "tail_bytes");
                 if (!tail.ok()) return tail.status();
                 bool terminal = false;
                 absl::StatusOr<v1::ConsoleChunk> chunk = controller_->read_console(
                     request.matches[1].str(), 0, *tail, absl::ZeroDuration(), &terminal);
                 if (!chunk.ok()) return chunk.status();
                 response.set_content(chunk->data(), "text/plain");
                 return absl::OkStatus();
               }));
  server_->Get("/v1/" + kinds + "/([a-z0-9-]+)",
               route("Get", [this](const httplib::Request& request, httplib::Response& response) {
                 v1::GetRequest get;
                 absl::StatusOr<v1::ObjectKind> kind = parse_kind(request.matches[1].str());
                 if (!kind.ok()) return kind.status();
                 get.set_kind(*kind);
                 get.set_name(request.matches[2].str());
                 absl::StatusOr<v1::Object> object = controller_->get(get);
                 if (!object.ok()) return object.status();
                 reply_message(response, *object);
                 return absl::OkStatus();
               }));
  server_->Delete(
      "/v1/" + kinds + "/([a-z0-9-]+)",
      route("Delete", [this](const httplib::Request& request, httplib::Response& response) {
        v1::DeleteRequest remove;
        absl::StatusOr<v1::ObjectKind> kind = parse_kind(request.matches[1].str());
        if (!kind.ok()) return kind.status();
        remove.set_kind(*kind);
        remove.set_name(request.matches[2].str());
        remove.set_force(request.get_param_value("force") == "true");
        absl::StatusOr<uint64_t> generation = query_number(request, "expected_generation");
        if (!generation.ok()) return generation.status();
        remove.set_expected_generation(*generation);
        absl::StatusOr<v1::DeleteResponse> result = controller_->remove(remove);
        if (!result.ok()) return result.status();
        reply_message(response, *result);
        return absl::OkStatus();
      }));
  // POST routes: the body is the request message, the answer the response message.
  server_->Post(
      "/v1/apply",
      route("Apply", post_handler<v1::ApplyRequest>([this](const v1::ApplyRequest& request) {
              return controller_->apply(request);
            })));
  server_->Post("/v1/diff",
                route("Diff", post_handler<v1::DiffRequest>([this](const v1::DiffRequest& request) {
                        return controller_->diff(request);
                      })));
  server_->Post(
      "/v1/compose",
      route("Compose", post_handler<v1::ComposeRequest>([this](const v1::ComposeRequest& request) {
              return controller_->compose(request);
            })));
  server_->Post(
      "/v1/bootstrap-tokens",
      route("CreateBootstrapToken", post_handler<v1::CreateBootstrapTokenRequest>(
                                        [this](const v1::CreateBootstrapTokenRequest& request) {
                                          return controller_->create_bootstrap_token(request);
                                        })));
}

absl::StatusOr<int> RestApi::start(const std::string& host, int port) {
  const int bound = port == 0 ? server_->bind_to_any_port(host) : port;
  if (port != 0 && !server_->bind_to_port(host, port)) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", host, ":", port));
  }
  if (bound <= 0) return absl::UnavailableError(absl::StrCat("cannot listen on ", host));
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  return bound;
}

void RestApi::stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace tenon::controller
