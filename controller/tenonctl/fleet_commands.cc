// tenonctl's fleet commands; see fleet_commands.h. Manifests are parsed and validated here
// first, so a bad file is refused with file:line: path: message and nothing is sent.
#include "fleet_commands.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <iostream>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "flags/duration_flag.h"
#include "label_selector.h"
#include "object_manifest.h"
#include "object_meta.h"
#include "object_render.h"
#include "render.h"  // json_to_yaml
#include "tenon/v1/fleet.grpc.pb.h"
#include "time/proto_time.h"
#include "validate.h"

namespace tenon::controller {
namespace {

using tenon::v1::FleetService;
using tenon::v1::Object;
using tenon::v1::ObjectKind;

int exit_code_of(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return kExitOk;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return kExitBadInput;
    case grpc::StatusCode::NOT_FOUND:
      return kExitNotFound;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return kExitUnreachable;
    default:
      return kExitRefused;  // FAILED_PRECONDITION, ALREADY_EXISTS, ABORTED, RESOURCE_EXHAUSTED...
  }
}

// "tenonctl: <CODE>: <message>"; the exit status for the code.
int report_rpc(const grpc::Status& status, const ClientConfig& config) {
  const std::string code =
      absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()));
  std::cerr << "tenonctl: " << code << ": " << status.error_message();
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
      status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    std::cerr << " (controller at " << config.server << ")";
  }
  if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED && config.token.empty()) {
    std::cerr << " (no token given: --token, --token-file or the config file)";
  }
  std::cerr << "\n";
  return exit_code_of(status.error_code());
}

// A response message as `-o json` prints it: the proto JSON mapping with proto field names, as
// REST serves it.
std::string message_json(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions print;
  print.preserve_proto_field_names = true;
  print.add_whitespace = true;
  std::string text;
  (void)google::protobuf::util::MessageToJsonString(message, &text, print);
  return text;
}

int report_bad_input(const std::string& message) {
  std::cerr << "tenonctl: " << message << "\n";
  return kExitBadInput;
}

class FleetClient {
 public:
  explicit FleetClient(const ClientConfig& config)
      : config_(config), stub_(FleetService::NewStub(channel(config.server))) {}

  // gRPC's default 4 MiB for an answer is below what the controller accepts in one request
  // (16 MiB): an operation could succeed and its answer be refused here, as a failure.
  static std::shared_ptr<grpc::Channel> channel(const std::string& server) {
    grpc::ChannelArguments arguments;
    arguments.SetMaxReceiveMessageSize(kMaxAnswerBytes);
    return grpc::CreateCustomChannel(server, grpc::InsecureChannelCredentials(), arguments);
  }
  static constexpr int kMaxAnswerBytes = 64 << 20;

  // A context with the operator's token and, unless streaming without end, the deadline.
  std::unique_ptr<grpc::ClientContext> context(bool with_deadline = true) const {
    auto context = std::make_unique<grpc::ClientContext>();
    if (!config_.token.empty()) context->AddMetadata("authorization", "Bearer " + config_.token);
    if (with_deadline) context->set_deadline(absl::ToChronoTime(absl::Now() + config_.timeout));
    return context;
  }
  FleetService::Stub& stub() { return *stub_; }
  const ClientConfig& config() const { return config_; }

 private:
  const ClientConfig& config_;
  std::unique_ptr<FleetService::Stub> stub_;
};

std::string lower_kind(ObjectKind kind) { return absl::AsciiStrToLower(kind_name(kind)); }

std::string reference(const Object& object) {
  return absl::StrCat(lower_kind(object_kind(object)), "/", object_meta(object).name());
}

// Loads -f; with validate, every object is checked and each problem printed as
// file:line: path: message. Empty on failure (already reported).
std::optional<std::vector<ManifestObject>> load_objects(const FleetOptions& options,
                                                        bool validate) {
  if (options.file.empty()) {
    report_bad_input("-f FILE|DIR|- is required");
    return std::nullopt;
  }
  absl::StatusOr<std::vector<ManifestObject>> objects = load_manifests(options.file);
  if (!objects.ok()) {
    report_bad_input(std::string(objects.status().message()));
    return std::nullopt;
  }
  if (objects->empty()) {
    report_bad_input(absl::StrCat(options.file, ": no objects found"));
    return std::nullopt;
  }
  bool valid = true;
  for (const ManifestObject& object : *objects) {
    if (!validate) break;
    std::optional<ValidationError> problem = validate_object(object.object);
    if (!problem) continue;
    std::cerr << object.file << ":" << object.line_of(problem->path) << ": " << problem->path
              << ": " << problem->message << "\n";
    valid = false;
  }
  if (!valid) return std::nullopt;
  return std::move(*objects);
}

std::optional<ObjectKind> kind_argument(const std::string& text) {
  absl::StatusOr<ObjectKind> kind = parse_kind(text);
  if (!kind.ok()) {
    report_bad_input(std::string(kind.status().message()));
    return std::nullopt;
  }
  return *kind;
}

void print_objects(const std::vector<Object>& objects, ObjectKind kind, const std::string& output,
                   bool single) {
  if (output == "json") {
    if (single) {
      std::cout << object_to_json(objects.front()).dump(2) << "\n";
      return;
    }
    nlohmann::ordered_json items = nlohmann::ordered_json::array();
    for (const Object& object : objects) items.push_back(object_to_json(object));
    std::cout << nlohmann::ordered_json{{"items", items}}.dump(2) << "\n";
    return;
  }
  if (output == "yaml") {
    // A list is a multi-document stream: it is a valid manifest for apply -f.
    for (size_t i = 0; i < objects.size(); ++i) {
      if (i > 0) std::cout << "---\n";
      std::cout << object_to_yaml(objects[i]);
    }
    return;
  }
  if (objects.empty()) {
    std::cerr << "No " << lower_kind(kind) << "s found.\n";
    return;
  }
  const TableStyle style = output == "wide" ? TableStyle::kWide : TableStyle::kNormal;
  std::cout << format_table(object_table(kind, objects, style, absl::Now()));
}

const char* action_word(tenon::v1::ChangeAction action) {
  switch (action) {
    case tenon::v1::CHANGE_ACTION_CREATE:
      return "created";
    case tenon::v1::CHANGE_ACTION_UPDATE:
      return "configured";
    case tenon::v1::CHANGE_ACTION_UNCHANGED:
      return "unchanged";
    default:
      break;
  }
  return "applied";
}

}  // namespace

int run_apply(const ClientConfig& config, const FleetOptions& options) {
  std::optional<std::vector<ManifestObject>> objects = load_objects(options, /*validate=*/true);
  if (!objects) return kExitBadInput;
  tenon::v1::ApplyRequest request;
  request.set_dry_run(options.dry_run);
  for (const ManifestObject& object : *objects) *request.add_objects() = object.object;
  FleetClient client(config);
  tenon::v1::ApplyResponse response;
  const grpc::Status status = client.stub().Apply(client.context().get(), request, &response);
  if (!status.ok()) return report_rpc(status, config);
  for (const tenon::v1::ApplyResult& result : response.results()) {
    std::cout << reference(result.object()) << " " << action_word(result.action())
              << (options.dry_run ? " (dry run)" : "") << "\n";
  }
  return kExitOk;
}

namespace {

// Prints changes after `resource_version` until the stream ends: table rows (no header) or
// one JSON object per line ({"type": ..., "object": ...}) or YAML documents.
int watch_changes(const ClientConfig& config, FleetClient& client, ObjectKind kind,
                  const tenon::v1::LabelSelector& selector, const std::string& name,
                  uint64_t resource_version, const std::string& output) {
  tenon::v1::WatchRequest request;
  request.set_kind(kind);
  *request.mutable_selector() = selector;
  request.set_resource_version(resource_version);
  std::unique_ptr<grpc::ClientContext> context = client.context(/*with_deadline=*/false);
  std::unique_ptr<grpc::ClientReader<tenon::v1::WatchEvent>> reader =
      client.stub().Watch(context.get(), request);
  tenon::v1::WatchEvent event;
  while (reader->Read(&event)) {
    if (event.type() == tenon::v1::WatchEvent::TYPE_BOOKMARK) continue;
    if (!name.empty() && object_meta(event.object()).name() != name) continue;
    std::string type = tenon::v1::WatchEvent::Type_Name(event.type()).substr(sizeof("TYPE_") - 1);
    if (output == "json") {
      nlohmann::ordered_json line{{"type", type}, {"object", object_to_json(event.object())}};
      std::cout << line.dump() << std::endl;
    } else if (output == "yaml") {
      std::cout << "---\n# " << type << "\n" << object_to_yaml(event.object()) << std::flush;
    } else {
      Table table =
          object_table(kind, {event.object()},
                       output == "wide" ? TableStyle::kWide : TableStyle::kNormal, absl::Now());
      table.columns.clear();  // the list printed them
      std::cout << format_table(table) << std::flush;
    }
  }
  const grpc::Status status = reader->Finish();
  return status.ok() ? kExitOk : report_rpc(status, config);
}

}  // namespace

int run_get(const ClientConfig& config, const FleetOptions& options) {
  std::optional<ObjectKind> kind = kind_argument(options.kind);
  if (!kind) return kExitBadInput;
  FleetClient client(config);
  std::vector<Object> objects;
  tenon::v1::ListRequest request;
  request.set_kind(*kind);
  if (!options.selector.empty()) {
    absl::StatusOr<tenon::v1::LabelSelector> selector = parse_label_selector(options.selector);
    if (!selector.ok()) return report_bad_input(std::string(selector.status().message()));
    *request.mutable_selector() = std::move(*selector);
  }
  uint64_t resource_version = 0;  // where a watch starts: no change after the read is missed
  if (!options.name.empty()) {
    if (!options.selector.empty() || !options.device.empty() || !options.deployment.empty()) {
      return report_bad_input("-l, --device and --deployment filter lists; not with a NAME");
    }
    if (options.watch) {
      tenon::v1::ListRequest probe;
      probe.set_kind(*kind);
      probe.set_page_size(1);
      tenon::v1::ListResponse response;
      const grpc::Status status = client.stub().List(client.context().get(), probe, &response);
      if (!status.ok()) return report_rpc(status, config);
      resource_version = response.resource_version();
    }
    tenon::v1::GetRequest get;
    get.set_kind(*kind);
    get.set_name(options.name);
    Object object;
    const grpc::Status status = client.stub().Get(client.context().get(), get, &object);
    if (!status.ok()) return report_rpc(status, config);
    objects.push_back(std::move(object));
    print_objects(objects, *kind, options.output, /*single=*/true);
  } else {
    request.set_device(options.device);
    request.set_deployment(options.deployment);
    do {
      tenon::v1::ListResponse response;
      const grpc::Status status = client.stub().List(client.context().get(), request, &response);
      if (!status.ok()) return report_rpc(status, config);
      if (resource_version == 0) resource_version = response.resource_version();
      for (Object& object : *response.mutable_objects()) objects.push_back(std::move(object));
      request.set_page_token(response.next_page_token());
    } while (!request.page_token().empty());
    print_objects(objects, *kind, options.output, /*single=*/false);
  }
  if (!options.watch) return kExitOk;
  if (!options.device.empty() || !options.deployment.empty()) {
    return report_bad_input("--watch filters by -l or NAME; not by --device or --deployment");
  }
  return watch_changes(config, client, *kind, request.selector(), options.name, resource_version,
                       options.output);
}

int run_describe(const ClientConfig& config, const FleetOptions& options) {
  std::optional<ObjectKind> kind = kind_argument(options.kind);
  if (!kind) return kExitBadInput;
  FleetClient client(config);
  tenon::v1::GetRequest request;
  request.set_kind(*kind);
  request.set_name(options.name);
  Object object;
  const grpc::Status status = client.stub().Get(client.context().get(), request, &object);
  if (!status.ok()) return report_rpc(status, config);
  std::cout << describe_object(object);
  return kExitOk;
}

int run_delete(const ClientConfig& config, const FleetOptions& options) {
  std::vector<std::pair<ObjectKind, std::string>> targets;
  if (!options.file.empty()) {
    if (!options.kind.empty()) return report_bad_input("give KIND NAME or -f FILE, not both");
    std::optional<std::vector<ManifestObject>> objects = load_objects(options, /*validate=*/false);
    if (!objects) return kExitBadInput;
    // Reverse order: what a file creates last (deployments) usually depends on what it creates
    // first (apps), so it goes first.
    for (auto object = objects->rbegin(); object != objects->rend(); ++object) {
      targets.emplace_back(object_kind(object->object), object_meta(object->object).name());
    }
  } else {
    if (options.kind.empty() || options.name.empty()) {
      return report_bad_input("delete needs KIND NAME or -f FILE");
    }
    std::optional<ObjectKind> kind = kind_argument(options.kind);
    if (!kind) return kExitBadInput;
    targets.emplace_back(*kind, options.name);
  }
  FleetClient client(config);
  for (const auto& [kind, name] : targets) {
    if (kind == tenon::v1::OBJECT_KIND_INSTANCE || kind == tenon::v1::OBJECT_KIND_COMPOSITION) {
      return report_bad_input(absl::StrCat(kind_name(kind),
                                           " objects are derived by the controller and cannot "
                                           "be deleted; delete the deployment or app instead"));
    }
    tenon::v1::DeleteRequest request;
    request.set_kind(kind);
    request.set_name(name);
    request.set_force(options.force);
    tenon::v1::DeleteResponse response;
    const grpc::Status status = client.stub().Delete(client.context().get(), request, &response);
    if (!status.ok()) return report_rpc(status, config);
    std::cout << lower_kind(kind) << "/" << name << " deleted\n";
  }
  return kExitOk;
}

int run_diff(const ClientConfig& config, const FleetOptions& options) {
  std::optional<std::vector<ManifestObject>> objects = load_objects(options, /*validate=*/true);
  if (!objects) return kExitBadInput;
  tenon::v1::DiffRequest request;
  for (const ManifestObject& object : *objects) *request.add_objects() = object.object;
  FleetClient client(config);
  tenon::v1::DiffResponse response;
  const grpc::Status status = client.stub().Diff(client.context().get(), request, &response);
  if (!status.ok()) return report_rpc(status, config);
  bool differences = false;
  for (const tenon::v1::ObjectDiff& diff : response.diffs()) {
    if (diff.action() == tenon::v1::CHANGE_ACTION_UNCHANGED) continue;
    differences = true;
    const bool create = diff.action() == tenon::v1::CHANGE_ACTION_CREATE;
    std::cout << lower_kind(diff.kind()) << "/" << diff.name() << ": "
              << (create ? "would be created" : "would be configured") << "\n";
    for (const tenon::v1::FieldChange& change : diff.changes()) {
      if (change.old_value().empty()) {
        std::cout << "  + " << change.path() << ": " << change.new_value() << "\n";
      } else if (change.new_value().empty()) {
        std::cout << "  - " << change.path() << ": " << change.old_value() << "\n";
      } else {
        std::cout << "  ~ " << change.path() << ": " << change.old_value() << " -> "
                  << change.new_value() << "\n";
      }
    }
    for (const std::string& effect : diff.effects()) std::cout << "  effect: " << effect << "\n";
  }
  return differences ? kExitRefused : kExitOk;
}

int run_logs(const ClientConfig& config, const FleetOptions& options) {
  FleetClient client(config);
  tenon::v1::GetInstanceLogsRequest request;
  request.set_instance(options.name);
  request.set_follow(options.follow);
  request.set_tail_bytes(options.tail_bytes);
  // A following stream lasts until the instance ends or the operator interrupts it.
  std::unique_ptr<grpc::ClientContext> context = client.context(/*with_deadline=*/!options.follow);
  std::unique_ptr<grpc::ClientReader<tenon::v1::ConsoleChunk>> reader =
      client.stub().GetInstanceLogs(context.get(), request);
  tenon::v1::ConsoleChunk chunk;
  std::optional<uint64_t> next_offset;
  while (reader->Read(&chunk)) {
    if (next_offset && chunk.offset() > *next_offset) {
      std::cout.flush();
      std::cerr << "tenonctl: " << chunk.offset() - *next_offset
                << " bytes of output were dropped here\n";
    }
    std::cout.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
    std::cout.flush();
    next_offset = chunk.offset() + chunk.data().size();
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok()) return report_rpc(status, config);
  return kExitOk;
}

int run_token_create(const ClientConfig& config, const FleetOptions& options) {
  tenon::v1::CreateBootstrapTokenRequest request;
  request.set_device_name(options.token_device);
  request.set_max_uses(options.token_uses);
  absl::StatusOr<absl::Duration> ttl =
      tenon::flags::parse_duration_flag("--ttl", options.token_ttl);
  if (!ttl.ok()) return report_bad_input(std::string(ttl.status().message()));
  *request.mutable_ttl() = tenon::time::to_proto(*ttl);
  for (const std::string& label : options.token_labels) {
    const size_t equals = label.find('=');
    if (equals == std::string::npos) {
      return report_bad_input(absl::StrCat("--label ", label, ": expected key=value"));
    }
    const std::string key = label.substr(0, equals);
    const std::string value = label.substr(equals + 1);
    if (std::string problem = label_key_problem(key); !problem.empty()) {
      return report_bad_input(absl::StrCat("--label ", label, ": label key ", problem));
    }
    if (std::string problem = label_value_problem(value); !problem.empty()) {
      return report_bad_input(absl::StrCat("--label ", label, ": label value ", problem));
    }
    (*request.mutable_labels())[key] = value;
  }
  FleetClient client(config);
  tenon::v1::CreateBootstrapTokenResponse response;
  const grpc::Status status =
      client.stub().CreateBootstrapToken(client.context().get(), request, &response);
  if (!status.ok()) return report_rpc(status, config);
  if (options.output == "json" || options.output == "yaml") {
    google::protobuf::util::JsonPrintOptions print_options;
    print_options.preserve_proto_field_names = true;
    std::string text;
    if (!google::protobuf::util::MessageToJsonString(response, &text, print_options).ok()) {
      std::cerr << "tenonctl: cannot render the response as JSON\n";
      return kExitRefused;
    }
    const nlohmann::ordered_json document = nlohmann::ordered_json::parse(text);
    std::cout << (options.output == "json" ? document.dump(2) + "\n" : json_to_yaml(document));
    return kExitOk;
  }
  // The secret alone on stdout, so that scripts can capture it.
  std::cout << response.token() << "\n";
  if (absl::StatusOr<absl::Time> expires =
          tenon::time::from_proto(response.expire_time(), "expire_time");
      response.has_expire_time() && expires.ok()) {
    std::cerr << "expires " << absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", *expires, absl::UTCTimeZone())
              << "\n";
  }
  return kExitOk;
}

}  // namespace tenon::controller

namespace tenon::controller {

int run_migrate(const ClientConfig& config, const FleetOptions& options) {
  tenon::v1::MigrateRequest request;
  request.set_instance(options.name);
  request.set_target_device(options.target_device);
  FleetClient client(config);
  tenon::v1::MigrateResponse response;
  std::cerr << "migrating " << options.name << " to " << options.target_device
            << ": pause and snapshot at the source, transfer, restore and resume at the target\n";
  // Each step may take up to a minute on the controller's side: no shorter deadline here.
  std::unique_ptr<grpc::ClientContext> context = client.context(/*with_deadline=*/false);
  context->set_deadline(
      absl::ToChronoTime(absl::Now() + std::max(config.timeout, absl::Minutes(4))));
  const grpc::Status status = client.stub().Migrate(context.get(), request, &response);
  if (!status.ok()) return report_rpc(status, config);
  const tenon::v1::MigrationReport& report = response.report();
  auto ms = [](const google::protobuf::Duration& duration) {
    return absl::StrFormat("%.1f ms", duration.seconds() * 1e3 + duration.nanos() / 1e6);
  };
  if (options.output == "json") {
    std::cout << message_json(response);
    return kExitOk;
  }
  std::cout << "instance/" << options.name << " migrated " << report.source_device() << " -> "
            << report.target_device() << "\n"
            << "  downtime " << ms(report.downtime()) << " (snapshot " << ms(report.snapshot_time())
            << ", transfer " << ms(report.transfer_time()) << ", restore and resume "
            << ms(report.restore_time()) << ")\n"
            << "  snapshot " << report.snapshot_bytes() << " bytes, " << report.snapshot_digest()
            << "\n";
  return kExitOk;
}

}  // namespace tenon::controller

namespace tenon::controller {

int run_rollout_status(const ClientConfig& config, const FleetOptions& options) {
  absl::StatusOr<absl::Duration> deadline =
      tenon::flags::parse_duration_flag("--deadline", options.rollout_deadline);
  if (!deadline.ok()) return report_bad_input(std::string(deadline.status().message()));
  FleetClient client(config);
  const absl::Time give_up = absl::Now() + *deadline;
  std::string last_line;
  while (true) {
    tenon::v1::GetRequest request;
    request.set_kind(tenon::v1::OBJECT_KIND_DEPLOYMENT);
    request.set_name(options.name);
    Object object;
    const grpc::Status status = client.stub().Get(client.context().get(), request, &object);
    if (!status.ok()) return report_rpc(status, config);
    const tenon::v1::DeploymentStatus& rollout = object.deployment().status();
    const std::string phase =
        enum_display_name(tenon::v1::RolloutPhase_descriptor(), rollout.phase());
    const std::string line = absl::StrCat("deployment/", options.name, " revision ",
                                          rollout.revision(), ": ", phase, ": ", rollout.message());
    if (line != last_line && options.output != "json") std::cout << line << std::endl;
    last_line = line;
    int exit_code = -1;
    switch (rollout.phase()) {
      case tenon::v1::ROLLOUT_PHASE_COMPLETE:
        exit_code = kExitOk;
        break;
      case tenon::v1::ROLLOUT_PHASE_HALTED:
        exit_code = kExitRolloutHalted;
        break;
      case tenon::v1::ROLLOUT_PHASE_ROLLED_BACK:
        exit_code = kExitRolloutRolledBack;
        break;
      default:
        if (absl::Now() >= give_up) {
          std::cerr << "tenonctl: deployment/" << options.name << ": rollout not done after "
                    << absl::FormatDuration(*deadline) << "\n";
          exit_code = kExitRolloutTimedOut;
        }
        break;
    }
    if (exit_code >= 0) {
      if (options.output == "json") {
        std::cout << message_json(rollout);
      }
      return exit_code;
    }
    absl::SleepFor(absl::Milliseconds(500));
  }
}

int run_rollout_control(const ClientConfig& config, const FleetOptions& options) {
  tenon::v1::ControlRolloutRequest request;
  request.set_deployment(options.name);
  if (options.rollout_action == "pause") {
    request.set_action(tenon::v1::ControlRolloutRequest::ACTION_PAUSE);
  } else if (options.rollout_action == "resume") {
    request.set_action(tenon::v1::ControlRolloutRequest::ACTION_RESUME);
  } else if (options.rollout_action == "abort") {
    request.set_action(tenon::v1::ControlRolloutRequest::ACTION_ABORT);
  } else if (options.rollout_action == "undo") {
    request.set_action(tenon::v1::ControlRolloutRequest::ACTION_UNDO);
    request.set_revision(options.to_revision);
  } else {
    return report_bad_input("rollout: pause, resume, abort or undo");
  }
  FleetClient client(config);
  tenon::v1::Deployment deployment;
  const grpc::Status status =
      client.stub().ControlRollout(client.context().get(), request, &deployment);
  if (!status.ok()) return report_rpc(status, config);
  const tenon::v1::DeploymentStatus& rollout = deployment.status();
  std::cout << "deployment/" << options.name << " revision " << rollout.revision() << ": "
            << enum_display_name(tenon::v1::RolloutPhase_descriptor(), rollout.phase()) << ": "
            << rollout.message() << "\n";
  return kExitOk;
}

int run_rollout_history(const ClientConfig& config, const FleetOptions& options) {
  FleetClient client(config);
  tenon::v1::GetRequest request;
  request.set_kind(tenon::v1::OBJECT_KIND_DEPLOYMENT);
  request.set_name(options.name);
  Object object;
  const grpc::Status status = client.stub().Get(client.context().get(), request, &object);
  if (!status.ok()) return report_rpc(status, config);
  const tenon::v1::DeploymentStatus& rollout = object.deployment().status();
  if (options.output == "json") {
    std::cout << message_json(rollout);
    return kExitOk;
  }
  auto when = [](const google::protobuf::Timestamp& timestamp) {
    absl::StatusOr<absl::Time> time = tenon::time::from_proto(timestamp, "time");
    return time.ok() ? absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", *time, absl::UTCTimeZone())
                     : std::string("<invalid>");
  };
  std::cout << absl::StrFormat("%-9s %-21s %-8s %s\n", "REVISION", "CREATED", "APP", "DIGEST");
  for (const tenon::v1::DeploymentRevision& revision : rollout.revisions()) {
    std::cout << absl::StrFormat(
        "%-9s %-21s %-8s %s\n",
        absl::StrCat(revision.number(), revision.number() == rollout.revision() ? "*" : ""),
        when(revision.create_time()), revision.spec().app(), revision.digest().substr(0, 19));
  }
  std::cout << "\n"
            << absl::StrFormat("%-21s %-4s %-5s %-16s %s\n", "TIME", "REV", "WAVE", "REASON",
                               "MESSAGE");
  for (const tenon::v1::RolloutEvent& event : rollout.events()) {
    std::cout << absl::StrFormat("%-21s %-4d %-5d %-16s %s\n", when(event.time()), event.revision(),
                                 event.wave(), event.reason(), event.message());
  }
  return kExitOk;
}

}  // namespace tenon::controller
