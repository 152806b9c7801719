// tenon-controller: the fleet controller daemon. See README.md.
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "api_metrics.h"
#include "blob_store.h"
#include "controller.h"
#include "flags/duration_flag.h"
#include "fleet_composer.h"
#include "grpc_services.h"
#include "open_store.h"
#include "request_limits.h"
#include "rest_api.h"
#include "tenonctl_defaults.h"

namespace {

using namespace tenon::controller;

absl::Notification* g_stop = nullptr;

void on_signal(int) {
  // Notify is not async-signal-safe in theory; a self-pipe would be. Notification's fast path is
  // an atomic store, which is what matters here.
  if (g_stop != nullptr && !g_stop->HasBeenNotified()) g_stop->Notify();
}

void log_line(const std::string& text) {
  std::cerr << absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone())
            << " tenon-controller: " << text << std::endl;
}

// The operator token: read from the file, or created there (mode 0600) on first start.
absl::StatusOr<std::string> load_operator_token(const std::string& path) {
  std::ifstream in(path);
  if (in) {
    std::string token;
    std::getline(in, token);
    if (token.size() < 16) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": operator token shorter than 16 characters"));
    }
    return token;
  }
  std::ifstream random("/dev/urandom", std::ios::binary);
  std::string bytes(24, '\0');
  random.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!random) return absl::InternalError("cannot read /dev/urandom");
  std::string token = "tenon-operator-";
  for (unsigned char byte : bytes) absl::StrAppend(&token, absl::Hex(byte, absl::kZeroPad2));
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::trunc);
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", temporary));
    out << token << "\n";
  }
  ::chmod(temporary.c_str(), 0600);
  std::filesystem::rename(temporary, path);
  return token;
}

absl::StatusOr<std::pair<std::string, int>> split_address(const std::string& address) {
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("'", address, "' is not HOST:PORT"));
  }
  return std::make_pair(address.substr(0, colon), port);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "tenon-controller: the TenonOS fleet controller. Serves the operator API (FleetService, "
      "gRPC, and REST under /v1/) and the agent API (AgentService, gRPC), keeps state in SQLite, "
      "composes and builds images for every device a deployment selects, and exports /metrics.",
      "tenon-controller"};
  std::string data_dir = "/var/lib/tenon-controller";
  std::string store_spec;
  std::string listen = "127.0.0.1:7440";
  std::string http_listen = "127.0.0.1:7441";
  std::string operator_token_file;
  std::string ready_file;
  std::string source_root = defaults::kSourceRoot;
  std::string archive_root = defaults::kArchiveRoot;
  std::string cache_dir;
  absl::Duration ping_interval = absl::Seconds(5);
  absl::Duration telemetry_interval = absl::Seconds(1);
  absl::Duration flush_interval = absl::Seconds(1);
  absl::Duration rollout_interval = absl::Seconds(1);
  uint64_t scheduling_overhead_ns = 2'000;
  size_t console_tail_bytes = 16 << 10;
  absl::Duration migration_step_timeout = absl::Seconds(60);
  app.add_option("--data-dir", data_dir,
                 "controller.db (SQLite), blobs/ (images) and the operator token")
      ->capture_default_str();
  app.add_option("--store", store_spec,
                 "sqlite (default: <data-dir>/controller.db), sqlite:PATH, or a PostgreSQL URL "
                 "postgres://USER@HOST:PORT/DB (a password in the URL is never logged)");
  app.add_option("--listen", listen, "gRPC address (FleetService and AgentService); port 0 picks")
      ->capture_default_str();
  app.add_option("--http-listen", http_listen, "REST, /metrics, /healthz and /readyz; port 0 picks")
      ->capture_default_str();
  app.add_option("--operator-token-file", operator_token_file,
                 "operator bearer token; created (0600) if missing [<data-dir>/operator-token]");
  app.add_option("--ready-file", ready_file,
                 "once serving, write {grpc_address, http_address, pid} here as JSON");
  app.add_option("--source-root", source_root, "tree with the catalog's manifests")
      ->capture_default_str();
  app.add_option("--archive-root", archive_root, "built micro-library archives")
      ->capture_default_str();
  app.add_option("--image-cache", cache_dir, "linked image cache [<data-dir>/image-cache]");
  tenon::flags::add_duration_option(app, "--ping-interval", &ping_interval,
                                    "time between pings to agents");
  tenon::flags::add_duration_option(app, "--telemetry-interval", &telemetry_interval,
                                    "time between telemetry reports agents are asked for");
  tenon::flags::add_duration_option(app, "--flush-interval", &flush_interval,
                                    "time between writes of reported device and instance state");
  tenon::flags::add_duration_option(
      app, "--rollout-interval", &rollout_interval,
      "time between checks of staged rollouts' health gates and waves");
  app.add_option("--scheduling-overhead-ns", scheduling_overhead_ns,
                 "per-job scheduler cost charged in schedulability analysis")
      ->capture_default_str();
  app.add_option("--console-tail-bytes", console_tail_bytes,
                 "console bytes held per instance for logs")
      ->capture_default_str();
  tenon::flags::add_duration_option(
      app, "--migration-step-timeout", &migration_step_timeout,
      "how long each migration step (snapshot, restore) may take before it is rolled back");
  app.footer(
      "Exit status: 0 after SIGTERM/SIGINT, 1 when it cannot start (the message says why).\n"
      "Clients authenticate with 'authorization: Bearer <token>' (the operator token file).");
  CLI11_PARSE(app, argc, argv);

  std::error_code error;
  std::filesystem::create_directories(data_dir, error);
  if (error) {
    log_line(absl::StrCat("cannot create ", data_dir, ": ", error.message()));
    return 1;
  }
  if (operator_token_file.empty()) operator_token_file = data_dir + "/operator-token";
  if (cache_dir.empty()) cache_dir = data_dir + "/image-cache";
  absl::StatusOr<std::string> operator_token = load_operator_token(operator_token_file);
  absl::StatusOr<std::unique_ptr<Store>> store = open_store(store_spec, data_dir);
  absl::StatusOr<BlobStore> blobs = BlobStore::open(data_dir + "/blobs");
  absl::StatusOr<std::pair<std::string, int>> grpc_address = split_address(listen);
  absl::StatusOr<std::pair<std::string, int>> http_address = split_address(http_listen);
  for (const absl::Status& status : {operator_token.status(), store.status(), blobs.status(),
                                     grpc_address.status(), http_address.status()}) {
    if (!status.ok()) {
      log_line(std::string(status.message()));
      return 1;
    }
  }
  FleetComposerConfig composer_config;
  composer_config.catalog.source_root = source_root;
  composer_config.catalog.archive_root = archive_root;
  composer_config.builder.compiler = defaults::kCompiler;
  for (const char* option : defaults::kLinkOptions) {
    composer_config.builder.link_options.push_back(option);
  }
  composer_config.builder.linker_script = defaults::kLinkerScript;
  composer_config.builder.cache_dir = cache_dir;
  composer_config.scheduling_overhead_ns = scheduling_overhead_ns;
  absl::StatusOr<std::unique_ptr<FleetComposer>> composer =
      FleetComposer::create(composer_config, &*blobs);
  if (!composer.ok()) {
    log_line(absl::StrCat("catalog: ", composer.status().message()));
    return 1;
  }
  ControllerConfig config;
  config.ping_interval = ping_interval;
  config.telemetry_interval = telemetry_interval;
  config.console_tail_bytes = console_tail_bytes;
  absl::StatusOr<std::unique_ptr<Controller>> created =
      Controller::create(config, store->get(), &*blobs, composer->get());
  if (!created.ok()) {
    log_line(absl::StrCat("reading the store: ", created.status().message()));
    return 1;
  }
  Controller& controller = **created;
  ApiMetrics metrics;
  FleetServiceImpl fleet_service(&controller, &metrics, *operator_token, migration_step_timeout);
  AgentServiceImpl agent_service(&controller, &metrics);

  grpc::ServerBuilder builder;
  int grpc_port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &grpc_port);
  builder.RegisterService(&fleet_service);
  builder.RegisterService(&agent_service);
  builder.SetMaxReceiveMessageSize(static_cast<int>(kMaxRequestBytes));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || grpc_port == 0) {
    log_line(absl::StrCat("cannot listen on ", listen));
    return 1;
  }
  RestApi rest(&controller, store->get(), &metrics, *operator_token);
  absl::StatusOr<int> http_port = rest.start(http_address->first, http_address->second);
  if (!http_port.ok()) {
    log_line(std::string(http_port.status().message()));
    server->Shutdown();
    return 1;
  }
  const std::string grpc_bound = absl::StrCat(grpc_address->first, ":", grpc_port);
  const std::string http_bound = absl::StrCat(http_address->first, ":", *http_port);
  log_line(absl::StrCat("serving gRPC on ", grpc_bound, ", HTTP on ", http_bound, ", state in ",
                        (*store)->describe()));
  if (!ready_file.empty()) {
    const std::string temporary = ready_file + ".tmp";
    {
      std::ofstream out(temporary, std::ios::trunc);
      out << "{\"grpc_address\": \"" << grpc_bound << "\", \"http_address\": \"" << http_bound
          << "\", \"pid\": " << ::getpid() << "}\n";
    }
    std::filesystem::rename(temporary, ready_file, error);
  }

  absl::Notification stop;
  g_stop = &stop;
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  absl::Time next_ping = absl::Now() + config.ping_interval;
  absl::Time next_flush = absl::Now() + flush_interval;
  absl::Time next_rollout_check = absl::Now() + rollout_interval;
  while (!stop.WaitForNotificationWithTimeout(
      std::max(absl::Milliseconds(10),
               std::min({next_ping, next_flush, next_rollout_check}) - absl::Now()))) {
    const absl::Time now = absl::Now();
    if (now >= next_flush) {
      if (absl::Status flushed = controller.flush_reported_state(); !flushed.ok()) {
        log_line(absl::StrCat("flush: ", flushed.message()));
      }
      next_flush = now + flush_interval;
    }
    if (now >= next_ping) {
      controller.ping_all();
      next_ping = now + config.ping_interval;
    }
    if (now >= next_rollout_check) {
      if (absl::Status advanced = controller.advance_rollouts(now); !advanced.ok()) {
        log_line(absl::StrCat("rollouts: ", advanced.message()));
      }
      next_rollout_check = now + rollout_interval;
    }
  }
  log_line("stopping");
  rest.stop();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  (void)controller.flush_reported_state();
  return 0;
}
