// `mortise-vmm`: the process that runs one Tenon instance for mortised. Started by mortised with
// one end of a socketpair (--control-fd) and the instance's configuration; not meant to be run by
// hand (use `mortise run` for that).
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "instance.h"
#include "vmm_runner.h"

int main(int argc, char** argv) {
  const mortise::ProcessStart start{mortise::read_host_tsc(), std::chrono::steady_clock::now()};
  // A dead peer is reported by send() as EPIPE (MSG_NOSIGNAL); this covers any other write.
  signal(SIGPIPE, SIG_IGN);
  // Nothing but what mortised handed over on purpose (stdio, control socket 3, image 4) stays
  // open here, whatever mortised itself may have inherited: a guest that takes this process
  // over finds no other descriptor.
  syscall(SYS_close_range, 5u, ~0u, 0u);

  CLI::App app{"mortise-vmm: runs one Tenon instance for mortised over a control socket"};
  mortise::VmmOptions options;
  std::string policy = "anywhere";
  std::optional<int> vcpu_cpu;
  app.add_option("--name", options.name, "the VM's name (diagnostics only)")->required();
  app.add_option("--control-fd", options.control_fd, "connected control socket from mortised")
      ->required()
      ->check(CLI::NonNegativeNumber);
  auto* image = app.add_option("--image", options.image_path, "Tenon ELF image");
  auto* image_fd = app.add_option("--image-fd", options.image_fd,
                                  "descriptor to read the image from (closed once loaded)");
  image->excludes(image_fd);
  app.add_option("--memory", options.memory_bytes, "guest memory in bytes")->required();
  app.add_option("--stack", options.stack_bytes, "guest boot stack in bytes");
  app.add_option("--app-run-ns", options.app_run_ns, "boot info app_run_ns (0: forever)");
  app.add_option("--cpu-policy", policy, "anywhere, realtime or dedicated")
      ->check(CLI::IsMember({"anywhere", "realtime", "dedicated"}));
  app.add_option("--management-cpus", options.management_cpus,
                 "CPUs every thread starts on (the management partition)")
      ->delimiter(',');
  app.add_option("--vcpu-cpu", vcpu_cpu, "pin the vCPU thread to this CPU");
  app.add_option("--rt-priority", options.rt_priority, "SCHED_FIFO priority of the vCPU; 0: none")
      ->check(CLI::Range(0, 99));
  app.add_option("--console-buffer", options.console_buffer_bytes,
                 "console bytes held while the control socket is busy");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;
  }
  if (options.image_path.empty() && options.image_fd < 0) {
    std::cerr << "mortise-vmm: --image or --image-fd is required" << std::endl;
    return 2;
  }
  options.vcpu_cpu = vcpu_cpu;
  options.cpu_policy = policy == "dedicated"  ? tenon::v1::CPU_POLICY_DEDICATED
                       : policy == "realtime" ? tenon::v1::CPU_POLICY_REALTIME
                                              : tenon::v1::CPU_POLICY_ANYWHERE;
  return mortise::run_vmm(options, start);
}
