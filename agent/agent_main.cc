// tenon-agent: the device side of the fleet. Enrols with the controller, keeps one stream to it,
// and makes the local mortised run what the controller asks. See README.md.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <iostream>
#include <string>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "agent.h"
#include "log.h"

namespace {

using namespace tenon::agent;

std::string default_device_name() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "";
  return name;
}

// A duration flag: Go-style text ("30s", "200ms", "1m30s").
bool parse_duration_flag(const std::string& text, const char* flag, absl::Duration* out) {
  if (!absl::ParseDuration(text, out) || *out <= absl::ZeroDuration()) {
    std::cerr << "tenon-agent: " << flag << " " << text
              << ": not a positive duration such as 500ms, 30s or 1m\n";
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli(
      "tenon-agent: enrols this device with the TenonOS controller, keeps one stream to it, and "
      "has the local mortised run the instances the controller asks for.");
  cli.footer(
      "Exit status: 0 stopped by SIGTERM or SIGINT (instances keep running); 1 fatal error "
      "(e.g. the state directory cannot be used); 2 usage error or unreadable bootstrap token "
      "file; 3 enrolment refused by the controller (the message says why); 4 credential "
      "rejected (revoked or device deleted): re-enroll with a new bootstrap token; 5 another "
      "agent connected as this device.");
  AgentOptions options;
  options.device_name = default_device_name();
  std::string max_backoff = "30s";
  std::string restart_backoff_max = "30s";
  std::string telemetry_interval;
  cli.add_option("--controller", options.controller_address,
                 "Controller address HOST:PORT (AgentService)")
      ->capture_default_str();
  cli.add_option("--device-name", options.device_name,
                 "Name to enrol as (default: the host name); ignored once enrolled")
      ->capture_default_str();
  cli.add_option("--bootstrap-token-file", options.bootstrap_token_file,
                 "File holding a bootstrap token (tenonctl/FleetService.CreateBootstrapToken); "
                 "needed only until the device is enrolled");
  cli.add_option("--state-dir", options.state_dir,
                 "Directory for agent.db (credential, desired state, records) and images/")
      ->capture_default_str();
  cli.add_option("--mortised-socket", options.mortised_socket, "mortised's unix socket")
      ->capture_default_str();
  cli.add_option("--max-backoff", max_backoff,
                 "Longest wait between reconnects and image retries (full jitter from 200ms)")
      ->capture_default_str();
  cli.add_option("--restart-backoff-max", restart_backoff_max,
                 "Longest wait before restarting a failed instance (doubling from 1s)")
      ->capture_default_str();
  cli.add_option("--telemetry-interval", telemetry_interval,
                 "Telemetry period; default: what the controller's Welcome says");
  try {
    cli.parse(argc, argv);
  } catch (const CLI::CallForHelp& help) {
    return cli.exit(help);
  } catch (const CLI::ParseError& error) {
    cli.exit(error);
    return kExitUsage;
  }
  if (!parse_duration_flag(max_backoff, "--max-backoff", &options.max_backoff) ||
      !parse_duration_flag(restart_backoff_max, "--restart-backoff-max",
                           &options.restart_backoff_max)) {
    return kExitUsage;
  }
  if (!telemetry_interval.empty()) {
    absl::Duration interval;
    if (!parse_duration_flag(telemetry_interval, "--telemetry-interval", &interval)) {
      return kExitUsage;
    }
    options.telemetry_interval = interval;
  }
  if (options.device_name.empty()) {
    std::cerr << "tenon-agent: --device-name is empty and the host name is unknown\n";
    return kExitUsage;
  }

  // Signals are taken by one thread with sigwait, so every other thread (gRPC's included, which
  // inherit this mask) runs undisturbed. SIGUSR1 is how main ends that thread.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  absl::StatusOr<std::unique_ptr<Agent>> agent = Agent::create(options);
  if (!agent.ok()) {
    log_line(absl::StrCat("cannot start: ", agent.status().message()));
    return kExitFatal;
  }
  std::thread signal_thread([&signals, &agent] {
    for (;;) {
      int number = 0;
      if (sigwait(&signals, &number) != 0) continue;
      if (number == SIGUSR1) return;
      log_line(absl::StrCat("received ", number == SIGTERM ? "SIGTERM" : "SIGINT", "; stopping"));
      (*agent)->stop();
    }
  });
  const int status = (*agent)->run();
  pthread_kill(signal_thread.native_handle(), SIGUSR1);
  signal_thread.join();
  agent->reset();
  return status;
}
