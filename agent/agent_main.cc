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
#include "agent.h"
#include "flags/duration_flag.h"
#include "log.h"

namespace {

using namespace tenon::agent;

std::string default_device_name() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "";
  return name;
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
  tenon::flags::add_duration_option(
      cli, "--max-backoff", &options.max_backoff,
      "Longest wait between reconnects and image retries (full jitter from 200ms)");
  tenon::flags::add_duration_option(
      cli, "--restart-backoff-max", &options.restart_backoff_max,
      "Longest wait before restarting a failed instance (doubling from 1s)");
  tenon::flags::add_duration_option(
      cli, "--telemetry-interval", &options.telemetry_interval,
      "Telemetry period, e.g. 1s; default: what the controller's Welcome says");
  try {
    cli.parse(argc, argv);
  } catch (const CLI::CallForHelp& help) {
    return cli.exit(help);
  } catch (const CLI::ParseError& error) {
    cli.exit(error);
    return kExitUsage;
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
