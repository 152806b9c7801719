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
#include <string_view>
#include <vector>

#include "instance.h"
#include "vmm_runner.h"

namespace {

// NAME:SIDE:REGION_FD:RING_FD:DOORBELL_FD
std::optional<mortise::IvcEndpointConfig> parse_channel(const std::string& text) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t colon; (colon = text.find(':', start)) != std::string::npos; start = colon + 1) {
    parts.push_back(text.substr(start, colon - start));
  }
  parts.push_back(text.substr(start));
  if (parts.size() != 5) return std::nullopt;
  mortise::IvcEndpointConfig channel;
  channel.name = parts[0];
  int numbers[4];
  for (int i = 0; i < 4; ++i) {
    const std::string& part = parts[1 + i];
    if (part.empty() || part.size() > 6 ||
        part.find_first_not_of("0123456789") != std::string::npos) {
      return std::nullopt;
    }
    numbers[i] = std::stoi(part);
  }
  if (numbers[0] > 1) return std::nullopt;
  channel.side = static_cast<uint32_t>(numbers[0]);
  channel.region_fd = numbers[1];
  channel.ring_fd = numbers[2];
  channel.doorbell_fd = numbers[3];
  return channel;
}

}  // namespace

int main(int argc, char** argv) {
  const mortise::ProcessStart start{mortise::read_host_tsc(), std::chrono::steady_clock::now()};
  // A dead peer is reported by send() as EPIPE (MSG_NOSIGNAL); this covers any other write.
  signal(SIGPIPE, SIG_IGN);
  // Nothing but what mortised handed over on purpose (stdio, control socket 3, image or snapshot 4)
  // stays open here, whatever mortised itself may have inherited: a guest that takes this process
  // over finds no other descriptor.
  // Inter-VM channels add three descriptors each, from 5 on (checked after parsing).
  unsigned channel_count = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--ivc-channel" ||
        std::string_view(argv[i]).starts_with("--ivc-channel=")) {
      ++channel_count;
    }
  }
  syscall(SYS_close_range, 5u + 3u * channel_count, ~0u, 0u);

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
  auto* snapshot_fd = app.add_option("--snapshot-fd", options.snapshot_fd,
                                     "restore the snapshot in this descriptor instead of loading "
                                     "an image (closed once read); the instance starts paused");
  image->excludes(image_fd);
  snapshot_fd->excludes(image)->excludes(image_fd);
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
  std::vector<std::string> channels;
  app.add_option("--ivc-channel", channels,
                 "NAME:SIDE:REGION_FD:RING_FD:DOORBELL_FD of an inter-VM channel endpoint "
                 "(repeatable, descriptors from 5 on)");
  std::string engine = "kvm";
  app.add_option("--engine", engine, "kvm or qemu")->check(CLI::IsMember({"kvm", "qemu"}));
  app.add_option("--qemu-binary", options.qemu.binary, "QEMU executable for the qemu engine");
  app.add_flag("--icount", options.qemu.icount,
               "qemu engine: deterministic virtual time (-icount shift=0)");
  app.add_flag("--qemu-kvm", options.qemu.kvm_acceleration,
               "qemu engine: run QEMU on /dev/kvm (-accel kvm) instead of TCG");
  app.add_option("--console-buffer", options.console_buffer_bytes,
                 "console bytes held while the control socket is busy");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;
  }
  if (options.image_path.empty() && options.image_fd < 0 && options.snapshot_fd < 0) {
    std::cerr << "mortise-vmm: --image, --image-fd or --snapshot-fd is required" << std::endl;
    return 2;
  }
  options.vcpu_cpu = vcpu_cpu;
  options.engine = engine == "qemu" ? mortise::EngineKind::kQemu : mortise::EngineKind::kKvm;
  for (size_t i = 0; i < channels.size(); ++i) {
    std::optional<mortise::IvcEndpointConfig> channel = parse_channel(channels[i]);
    const int base = 5 + 3 * static_cast<int>(i);
    if (!channel || channel->region_fd != base || channel->ring_fd != base + 1 ||
        channel->doorbell_fd != base + 2) {
      std::cerr << "mortise-vmm: bad --ivc-channel '" << channels[i] << "'" << std::endl;
      return 2;
    }
    options.channels.push_back(*channel);
  }
  options.cpu_policy = policy == "dedicated"  ? tenon::v1::CPU_POLICY_DEDICATED
                       : policy == "realtime" ? tenon::v1::CPU_POLICY_REALTIME
                                              : tenon::v1::CPU_POLICY_ANYWHERE;
  return mortise::run_vmm(options, start);
}
