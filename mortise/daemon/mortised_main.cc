// `mortised`: the Mortise daemon, one per device. Serves tenon.v1.MortiseService on a unix socket
// and runs each VM in a mortise-vmm child process of its own. See README.md.
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <limits.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "mortise_service.h"
#include "placement.h"
#include "supervisor.h"
#include "unix_listener.h"

namespace {

constexpr int kUsage = 64;
constexpr int kStartupFailure = 1;
// Create carries images of up to 16 MiB (CreateVmRequest.image_bytes); the rest is headroom
// for the other fields.
constexpr int kMaxReceiveMessageBytes = (16 << 20) + (64 << 10);

absl::Status make_directory(const std::string& path, mode_t mode) {
  std::error_code error;
  std::filesystem::create_directories(path, error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create directory ", path, ": ", error.message()));
  }
  chmod(path.c_str(), mode);
  return absl::OkStatus();
}

std::optional<std::string> resolved(const std::string& path) {
  char buffer[PATH_MAX];
  if (realpath(path.c_str(), buffer) == nullptr) return std::nullopt;
  return std::string(buffer);
}

// Each VM costs mortised two descriptors (control socket, pidfd): lift the soft limit.
void raise_descriptor_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

uint64_t default_guest_memory_budget() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return 1ull << 30;
  // Half of the host: the rest is Linux's, mortised's and the agent's.
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size) / 2 / 4096 * 4096;
}

int fail(const std::string& message) {
  std::cerr << "mortised: " << message << std::endl;
  return kStartupFailure;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mortised: the Mortise daemon; serves tenon.v1.MortiseService on a unix socket"};
  std::string socket_path = "/run/mortise/mortised.sock";
  std::string state_directory = "/var/lib/mortise";
  std::string image_directory;
  std::string vmm_binary;
  std::optional<uint64_t> guest_memory_budget;
  std::vector<uid_t> allowed_uids;
  size_t console_ring_bytes = 64 << 10;
  app.add_option("--socket", socket_path, "unix socket to serve on")->capture_default_str();
  app.add_option("--state-dir", state_directory,
                 "mortised's directory: images/ and snapshots/ live here")
      ->capture_default_str();
  app.add_option("--image-dir", image_directory,
                 "where Create's image_path must lie (default: <state-dir>/images)");
  app.add_option("--vmm-binary", vmm_binary,
                 "the mortise-vmm executable (default: next to mortised)");
  app.add_option("--guest-memory-budget", guest_memory_budget,
                 "bytes of guest memory for all VMs together (default: half of the host's)");
  app.add_option("--allow-uid", allowed_uids,
                 "a uid that may call mortised besides root and mortised's own (repeatable)");
  app.add_option("--console-buffer", console_ring_bytes, "console bytes kept per VM")
      ->capture_default_str();
  std::string engine = "auto";
  mortise::QemuSettings qemu;
  app.add_option("--engine", engine,
                 "auto (KVM where a probe guest runs on it, else QEMU), kvm or qemu")
      ->check(CLI::IsMember({"auto", "kvm", "qemu"}))
      ->capture_default_str();
  app.add_option("--qemu-binary", qemu.binary, "QEMU executable for the qemu engine")
      ->capture_default_str();
  app.add_flag("--icount", qemu.icount,
               "qemu engine: deterministic virtual time, one instruction per nanosecond");
  app.add_flag("--qemu-kvm", qemu.kvm_acceleration,
               "qemu engine: run QEMU on /dev/kvm (-accel kvm) instead of TCG")
      ->excludes("--icount");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : kUsage;
  }

  // The shutdown signals are taken by sigwait below; blocked before any thread starts, so that
  // every thread inherits the mask and none runs a handler.
  sigset_t shutdown_signals;
  sigemptyset(&shutdown_signals);
  sigaddset(&shutdown_signals, SIGINT);
  sigaddset(&shutdown_signals, SIGTERM);
  sigaddset(&shutdown_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &shutdown_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  raise_descriptor_limit();

  if (image_directory.empty()) image_directory = state_directory + "/images";
  const std::string snapshot_directory = state_directory + "/snapshots";
  for (const auto& [path, mode] :
       {std::pair{state_directory, 0700}, {image_directory, 0700}, {snapshot_directory, 0700}}) {
    if (absl::Status status = make_directory(path, static_cast<mode_t>(mode)); !status.ok()) {
      return fail(std::string(status.message()));
    }
  }
  const std::string socket_directory = std::filesystem::path(socket_path).parent_path();
  if (!socket_directory.empty()) {
    if (absl::Status status = make_directory(socket_directory, 0755); !status.ok()) {
      return fail(std::string(status.message()));
    }
  }
  if (vmm_binary.empty()) {
    std::error_code error;
    vmm_binary =
        (std::filesystem::read_symlink("/proc/self/exe", error).parent_path() / "mortise-vmm")
            .string();
  }
  if (access(vmm_binary.c_str(), X_OK) != 0) {
    return fail(absl::StrCat("mortise-vmm binary ", vmm_binary, ": ", std::strerror(errno)));
  }

  mortise::SupervisorOptions options;
  options.vmm_binary = vmm_binary;
  options.image_directory = resolved(image_directory).value_or(image_directory);
  options.snapshot_directory = resolved(snapshot_directory).value_or(snapshot_directory);
  options.guest_memory_budget = guest_memory_budget.value_or(default_guest_memory_budget());
  options.partition = mortise::default_partition();
  options.console_ring_bytes = console_ring_bytes;
  options.engine = *mortise::parse_engine_choice(engine);
  options.qemu = qemu;
  absl::StatusOr<std::unique_ptr<mortise::Supervisor>> supervisor =
      mortise::Supervisor::create(options);
  if (!supervisor.ok()) return fail(std::string(supervisor.status().message()));

  absl::StatusOr<std::unique_ptr<mortise::UnixListener>> listener =
      mortise::UnixListener::bind(socket_path);
  if (!listener.ok()) return fail(std::string(listener.status().message()));

  mortise::MortiseService service(**supervisor, **listener,
                                  std::set<uid_t>(allowed_uids.begin(), allowed_uids.end()));
  grpc::ServerBuilder builder;
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) return fail("cannot start the gRPC server");
  (*listener)->serve(server.get());
  const tenon::v1::HostInfo host = (*supervisor)->host_info();
  std::cerr << "mortised: serving MortiseService on unix:" << socket_path << " (pid " << getpid()
            << "; " << mortise::describe(options.partition) << "; images in "
            << options.image_directory << "; engine "
            << (host.engine().empty() ? "none: " + host.engine_unavailable_reason()
                                      : host.engine_detail())
            << (host.kvm_unavailable_reason().empty()
                    ? ""
                    : "; KVM unavailable: " + host.kvm_unavailable_reason())
            << ")" << std::endl;

  int signal_number = 0;
  sigwait(&shutdown_signals, &signal_number);
  std::cerr << "mortised: " << strsignal(signal_number) << ": destroying every VM and stopping"
            << std::endl;
  (*listener)->stop();
  // VMs first: their console and telemetry streams end with them.
  (*supervisor)->shutdown();
  // gRPC waits for connected clients until the deadline even when no call is in flight, so the
  // deadline is short; what is still running then (streams of every VM) is cancelled.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  server->Wait();
  return 0;
}
