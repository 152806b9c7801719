// Engine names, choice and probing; see engine.h.
#include "engine.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "guest_setup.h"
#include "kvm.h"
#include "kvm_instance.h"
#include "qemu_instance.h"

namespace mortise {
namespace {

// Real mode at guest-physical 0: `mov al, 0x2a; out 0x10, al; hlt`.
constexpr std::array<uint8_t, 5> kProbeCode = {0xb0, 0x2a, 0xe6, 0x10, 0xf4};
constexpr uint16_t kProbePort = 0x10;
constexpr uint8_t kProbeValue = 0x2a;

absl::Status run_kvm_probe() {
  absl::StatusOr<Kvm> kvm = Kvm::open();
  if (!kvm.ok()) return kvm.status();
  constexpr uint64_t kProbeMemory = 4096;
  alignas(4096) static uint8_t memory[kProbeMemory];
  std::memcpy(memory, kProbeCode.data(), kProbeCode.size());
  absl::StatusOr<VirtualMachine> vm = VirtualMachine::create(*kvm, kProbeMemory, memory);
  if (!vm.ok()) return vm.status();
  absl::StatusOr<Vcpu> vcpu = Vcpu::create(*kvm, *vm, 0);
  if (!vcpu.ok()) return vcpu.status();
  kvm_sregs sregs{};
  if (absl::Status status = vcpu->get_sregs(sregs); !status.ok()) return status;
  sregs.cs.base = 0;
  sregs.cs.selector = 0;
  if (absl::Status status = vcpu->set_sregs(sregs); !status.ok()) return status;
  kvm_regs regs{};
  regs.rip = 0;
  regs.rflags = 0x2;
  if (absl::Status status = vcpu->set_regs(regs); !status.ok()) return status;
  if (absl::Status status = vcpu->run(); !status.ok()) return status;
  const kvm_run& run = *vcpu->run_state();
  const auto* data = reinterpret_cast<const uint8_t*>(&run) + run.io.data_offset;
  if (run.exit_reason != KVM_EXIT_IO || run.io.port != kProbePort || *data != kProbeValue) {
    return absl::UnavailableError(absl::StrCat(
        "/dev/kvm opened but a probe guest did not run (exit reason ", run.exit_reason, ")"));
  }
  return absl::OkStatus();
}

// Runs `binary -version` and returns the version it prints.
absl::StatusOr<std::string> qemu_version(const std::string& binary) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
  const pid_t child = fork();
  if (child < 0) {
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    return absl::InternalError("fork failed");
  }
  if (child == 0) {
    dup2(pipe_fds[1], STDOUT_FILENO);
    const int null_fd = open("/dev/null", O_WRONLY);
    if (null_fd >= 0) dup2(null_fd, STDERR_FILENO);
    execlp(binary.c_str(), binary.c_str(), "-version", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(pipe_fds[1]);
  std::string output;
  char buffer[256];
  for (ssize_t n; (n = read(pipe_fds[0], buffer, sizeof(buffer))) > 0;) output.append(buffer, n);
  close(pipe_fds[0]);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::UnavailableError(
        WIFEXITED(status) && WEXITSTATUS(status) == 127
            ? absl::StrCat("QEMU binary '", binary,
                           "' not found (deploy/install-deps.sh installs it)")
            : absl::StrCat("QEMU binary '", binary, "' did not answer -version"));
  }
  const std::string marker = "version ";
  const size_t at = output.find(marker);
  if (at == std::string::npos) return std::string("unknown");
  const size_t start = at + marker.size();
  const size_t end = output.find_first_of(" \n", start);
  return output.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

}  // namespace

const char* engine_name(EngineKind engine) { return engine == EngineKind::kKvm ? "kvm" : "qemu"; }

EngineKind engine_for(tenon::abi::Platform platform) {
  return platform == tenon::abi::Platform::kQemu ? EngineKind::kQemu : EngineKind::kKvm;
}

const char* platform_library(tenon::abi::Platform platform) {
  return platform == tenon::abi::Platform::kQemu ? "plat-qemu" : "plat-mortise";
}

std::string engine_detail(EngineKind engine, const QemuSettings& qemu) {
  if (engine == EngineKind::kKvm) return "kvm";
  if (qemu.kvm_acceleration) return "qemu-kvm";
  return qemu.icount ? "qemu-icount" : "qemu-tcg";
}

absl::StatusOr<EngineChoice> parse_engine_choice(std::string_view text) {
  if (text == "auto") return EngineChoice::kAuto;
  if (text == "kvm") return EngineChoice::kKvm;
  if (text == "qemu") return EngineChoice::kQemu;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown engine '", std::string(text), "' (choose auto, kvm or qemu)"));
}

EngineProbe probe_engines(const QemuSettings& qemu) {
  EngineProbe probe;
  if (absl::Status status = run_kvm_probe(); status.ok()) {
    probe.kvm_usable = true;
  } else {
    probe.kvm_problem = std::string(status.message());
  }
  absl::StatusOr<std::string> version = qemu_version(qemu.binary);
  if (version.ok()) {
    probe.qemu_usable = true;
    probe.qemu_version = *version;
  } else {
    probe.qemu_problem = std::string(version.status().message());
  }
  return probe;
}

absl::StatusOr<EngineKind> resolve_engine(EngineChoice choice, const EngineProbe& probe) {
  switch (choice) {
    case EngineChoice::kKvm:
      if (probe.kvm_usable) return EngineKind::kKvm;
      return absl::FailedPreconditionError(
          absl::StrCat("the kvm engine cannot run here: ", probe.kvm_problem));
    case EngineChoice::kQemu:
      if (probe.qemu_usable) return EngineKind::kQemu;
      return absl::FailedPreconditionError(
          absl::StrCat("the qemu engine cannot run here: ", probe.qemu_problem));
    case EngineChoice::kAuto:
      if (probe.kvm_usable) return EngineKind::kKvm;
      if (probe.qemu_usable) return EngineKind::kQemu;
      return absl::FailedPreconditionError(absl::StrCat(
          "no engine can run here: kvm: ", probe.kvm_problem, "; qemu: ", probe.qemu_problem));
  }
  return absl::InternalError("unknown engine choice");
}

absl::StatusOr<EngineKind> engine_for_image(EngineChoice choice, tenon::abi::Platform platform) {
  const EngineKind needed = engine_for(platform);
  if (choice == EngineChoice::kAuto) return needed;
  const EngineKind chosen = choice == EngineChoice::kKvm ? EngineKind::kKvm : EngineKind::kQemu;
  if (chosen == needed) return chosen;
  return absl::FailedPreconditionError(
      absl::StrCat("the image is linked with ", platform_library(platform), ", which runs on the ",
                   engine_name(needed), " engine, not on the ", engine_name(chosen), " engine"));
}

absl::StatusOr<tenon::abi::Platform> image_platform(const std::string& image_path) {
  absl::StatusOr<std::vector<uint8_t>> file = read_image_file(image_path);
  if (!file.ok()) return file.status();
  ElfLimits limits;
  limits.lowest_address = tenon::abi::kImageBase;
  limits.highest_address = ~uint64_t{0};
  absl::StatusOr<ElfImage> image = parse_elf(*file, limits, tenon::abi::kVersion);
  if (!image.ok()) return image.status();
  return image->platform;
}

absl::StatusOr<std::unique_ptr<Instance>> create_instance(EngineKind engine,
                                                          const InstanceConfig& config,
                                                          const QemuSettings& qemu,
                                                          ConsoleSink& console,
                                                          uint64_t host_start_tsc) {
  if (engine == EngineKind::kQemu) {
    absl::StatusOr<std::unique_ptr<QemuInstance>> instance =
        QemuInstance::create(config, qemu, console, host_start_tsc);
    if (!instance.ok()) return instance.status();
    return std::unique_ptr<Instance>(std::move(*instance));
  }
  absl::StatusOr<Kvm> kvm = Kvm::open();
  if (!kvm.ok()) return kvm.status();
  absl::StatusOr<std::unique_ptr<KvmInstance>> instance =
      KvmInstance::create(*kvm, config, console, host_start_tsc);
  if (!instance.ok()) return instance.status();
  return std::unique_ptr<Instance>(std::move(*instance));
}

uint64_t host_tsc_khz() {
  static std::once_flag once;
  static uint64_t khz = 0;
  std::call_once(once, [] {
    auto now_ns = [] {
      timespec time{};
      clock_gettime(CLOCK_MONOTONIC_RAW, &time);
      return static_cast<uint64_t>(time.tv_sec) * 1'000'000'000ull +
             static_cast<uint64_t>(time.tv_nsec);
    };
    // The highest of a few short windows: a preemption between the paired clock reads only ever
    // lowers the ratio.
    double best = 0;
    for (int attempt = 0; attempt < 3; ++attempt) {
      const uint64_t start_ns = now_ns();
      const uint64_t start_tsc = __rdtsc();
      timespec pause{0, 10'000'000};
      nanosleep(&pause, nullptr);
      const uint64_t end_tsc = __rdtsc();
      const uint64_t end_ns = now_ns();
      const double rate =
          static_cast<double>(end_tsc - start_tsc) * 1e6 / static_cast<double>(end_ns - start_ns);
      if (rate > best) best = rate;
    }
    khz = static_cast<uint64_t>(best + 0.5);
  });
  return khz;
}

absl::Status check_snapshot_engine(snapshot::Engine taken_on, EngineKind here) {
  const snapshot::Engine wanted =
      here == EngineKind::kQemu ? snapshot::Engine::kQemu : snapshot::Engine::kKvm;
  if (taken_on == wanted) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("the snapshot was taken on the ", snapshot::engine_name(taken_on),
                   " engine and only that engine can restore it; this one runs the ",
                   engine_name(here), " engine"));
}

uint64_t qemu_guest_tsc_khz(const QemuSettings& qemu) {
  return qemu.icount ? 1'000'000 : host_tsc_khz();
}

}  // namespace mortise
