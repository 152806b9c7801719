// A Tenon instance on Mortise's native KVM engine; see kvm_instance.h.
#include "kvm_instance.h"

#include <pthread.h>
#include <signal.h>
#include <x86intrin.h>

#include <condition_variable>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "guest_setup.h"
#include "hypercall_dispatch.h"
#include "page_tables.h"
#include "tenon/abi.h"

namespace mortise {
namespace {

constexpr int kKickSignal = SIGUSR1;

// The kick signal only has to interrupt KVM_RUN; its handler does nothing.
void install_kick_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction action {};
    action.sa_handler = [](int) {};
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
    sigaction(kKickSignal, &action, nullptr);
  });
}

kvm_segment segment(uint16_t selector, uint8_t type, bool long_mode) {
  kvm_segment s{};
  s.base = 0;
  s.limit = 0xffffffff;
  s.selector = selector;
  s.type = type;
  s.present = 1;
  s.dpl = 0;
  s.db = long_mode ? 0 : 1;
  s.s = 1;
  s.l = long_mode ? 1 : 0;
  s.g = 1;
  return s;
}

constexpr uint64_t kCr0ProtectedMode = 1ull << 0;
constexpr uint64_t kCr0MonitorCoprocessor = 1ull << 1;
constexpr uint64_t kCr0ExtensionType = 1ull << 4;
constexpr uint64_t kCr0NumericError = 1ull << 5;
constexpr uint64_t kCr0WriteProtect = 1ull << 16;
constexpr uint64_t kCr0Paging = 1ull << 31;
constexpr uint64_t kCr4PhysicalAddressExtension = 1ull << 5;
constexpr uint64_t kEferLongModeEnable = 1ull << 8;
constexpr uint64_t kEferLongModeActive = 1ull << 10;
constexpr uint64_t kEferNoExecuteEnable = 1ull << 11;
constexpr uint32_t kMtrrDefaultTypeMsr = 0x2ff;
constexpr uint64_t kMtrrEnable = 1ull << 11;
constexpr uint64_t kMemoryTypeWriteBack = 6;

}  // namespace

uint64_t read_host_tsc() { return __rdtsc(); }

absl::StatusOr<std::vector<IvcAttachment>> attach_channels(const InstanceConfig& config,
                                                           uint64_t memory_size) {
  std::vector<IvcAttachment> attachments;
  if (config.channels.empty()) return attachments;
  if (config.channels.size() > tenon::abi::kIvcMaxChannels) {
    return absl::InvalidArgumentError(absl::StrCat("an instance has at most ",
                                                   tenon::abi::kIvcMaxChannels, " channels, got ",
                                                   config.channels.size()));
  }
  if (memory_size > tenon::abi::kIvcWindowBase) {
    return absl::InvalidArgumentError(
        absl::StrFormat("an instance with channels has at most %d bytes of memory (the channel "
                        "window starts there), got %d",
                        tenon::abi::kIvcWindowBase, memory_size));
  }
  for (size_t i = 0; i < config.channels.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (config.channels[i].name == config.channels[j].name) {
        return absl::InvalidArgumentError(
            absl::StrCat("channel ", config.channels[i].name, " is named twice"));
      }
    }
    absl::StatusOr<IvcAttachment> attachment =
        IvcAttachment::map(config.channels[i], static_cast<uint32_t>(i));
    if (!attachment.ok()) return attachment.status();
    attachments.push_back(std::move(*attachment));
  }
  return attachments;
}

const char* exit_kind_name(ExitKind kind) {
  switch (kind) {
    case ExitKind::kGuestExit:
      return "guest-exit";
    case ExitKind::kGuestFault:
      return "guest-fault";
    case ExitKind::kGuestPanic:
      return "guest-panic";
    case ExitKind::kViolation:
      return "hypercall-violation";
    case ExitKind::kTimeout:
      return "timeout";
    case ExitKind::kHypervisorError:
      return "hypervisor-error";
  }
  return "unknown";
}

KvmInstance::KvmInstance(GuestMemory memory, VirtualMachine vm, Vcpu vcpu, ConsoleSink& console)
    : memory_(std::move(memory)), vm_(std::move(vm)), vcpu_(std::move(vcpu)), console_(console) {}

KvmInstance::~KvmInstance() = default;

absl::StatusOr<std::unique_ptr<KvmInstance>> KvmInstance::create(const Kvm& kvm,
                                                                 const InstanceConfig& config,
                                                                 ConsoleSink& console,
                                                                 uint64_t host_start_tsc) {
  if (host_start_tsc == 0) host_start_tsc = read_host_tsc();
  absl::StatusOr<std::vector<uint8_t>> file = read_image_file(config.image_path);
  if (!file.ok()) return file.status();
  absl::StatusOr<GuestMemory> memory = GuestMemory::create(config.memory_bytes);
  if (!memory.ok()) return memory.status();
  absl::StatusOr<std::vector<IvcAttachment>> channels = attach_channels(config, memory->size());
  if (!channels.ok()) return channels.status();
  std::vector<MemorySlot> channel_slots;
  for (const IvcAttachment& channel : *channels) channel_slots.push_back(channel.memory_slot());
  absl::StatusOr<VirtualMachine> vm =
      VirtualMachine::create(kvm, memory->size(), memory->host_base(), channel_slots);
  if (!vm.ok()) return vm.status();
  if (absl::Status status = wire_doorbells(kvm, *vm, *channels); !status.ok()) return status;
  uint32_t disabled_exits = 0;
  if (config.exit_control == ExitControl::kLowLatency) {
    disabled_exits = kvm.capabilities().disable_exits &
                     (KVM_X86_DISABLE_EXITS_HLT | KVM_X86_DISABLE_EXITS_PAUSE);
    if (absl::Status status = vm->disable_exits(disabled_exits); !status.ok()) return status;
  }
  absl::StatusOr<Vcpu> vcpu = Vcpu::create(kvm, *vm, 0);
  if (!vcpu.ok()) return vcpu.status();
  std::unique_ptr<KvmInstance> instance(
      new KvmInstance(std::move(*memory), std::move(*vm), std::move(*vcpu), console));
  instance->disabled_exits_ = disabled_exits;
  instance->channels_ = std::move(*channels);
  if (absl::Status status = instance->setup(kvm, *file, config, host_start_tsc); !status.ok()) {
    return status;
  }
  return instance;
}

absl::Status KvmInstance::setup(const Kvm& kvm, const std::vector<uint8_t>& file,
                                const InstanceConfig& config, uint64_t host_start_tsc) {
  // The guest reads the host's TSC where KVM lets us set the offset, so boot timing and later
  // telemetry timestamps compare directly with host timestamps.
  tsc_synchronized_ = kvm.capabilities().tsc_control && vcpu_.set_tsc_offset(0).ok();
  absl::StatusOr<uint64_t> tsc_khz = vcpu_.tsc_khz();
  if (!tsc_khz.ok()) return tsc_khz.status();
  tsc_khz_ = *tsc_khz;

  GuestSetup setup;
  setup.engine = EngineKind::kKvm;
  setup.stack_bytes = config.stack_bytes;
  setup.app_run_ns = config.app_run_ns;
  setup.host_start_tsc = host_start_tsc;
  setup.tsc_khz = tsc_khz_;
  for (const IvcAttachment& channel : channels_) setup.channels.push_back(channel.info());
  absl::StatusOr<PreparedGuest> guest = prepare_guest(memory_, file, setup);
  if (!guest.ok()) return guest.status();
  image_ = std::move(guest->image);
  layout_ = guest->layout;
  const uint64_t cr3 = guest->cr3;

  if (absl::Status status = vcpu_.set_cpuid(kvm.supported_cpuid()); !status.ok()) return status;
  // A vCPU starts with MTRRs disabled, which makes all of guest memory uncacheable. Firmware
  // would enable them with write-back as the default type; there is no firmware, so Mortise does.
  if (absl::Status status = vcpu_.set_msr(kMtrrDefaultTypeMsr, kMtrrEnable | kMemoryTypeWriteBack);
      !status.ok()) {
    return status;
  }
  kvm_sregs sregs{};
  if (absl::Status status = vcpu_.get_sregs(sregs); !status.ok()) return status;
  sregs.cr3 = cr3;
  sregs.cr4 = kCr4PhysicalAddressExtension;
  sregs.cr0 = kCr0ProtectedMode | kCr0MonitorCoprocessor | kCr0ExtensionType | kCr0NumericError |
              kCr0WriteProtect | kCr0Paging;
  sregs.efer = kEferLongModeEnable | kEferLongModeActive | kEferNoExecuteEnable;
  sregs.cs = segment(0x08, 0xb, /*long_mode=*/true);
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = segment(0x10, 0x3, false);
  sregs.tr = segment(0x18, 0xb, false);
  sregs.tr.s = 0;
  sregs.tr.limit = 0x67;
  sregs.tr.g = 0;
  if (absl::Status status = vcpu_.set_sregs(sregs); !status.ok()) return status;

  kvm_regs regs{};
  regs.rflags = 0x2;
  regs.rip = image_.entry;
  regs.rsp = layout_.stack_top;
  regs.rdi = tenon::abi::kBootInfoAddress;
  return vcpu_.set_regs(regs);
}

void KvmInstance::stop() {
  {
    std::lock_guard lock(pause_mutex_);
    stop_requested_.store(true);
  }
  pause_changed_.notify_all();
  vcpu_.run_state()->immediate_exit = 1;
  if (running_.load()) pthread_kill(vcpu_thread_.load(), kKickSignal);
}

void KvmInstance::pause() {
  std::unique_lock lock(pause_mutex_);
  pause_requested_.store(true);
  vcpu_.run_state()->immediate_exit = 1;
  if (running_.load()) pthread_kill(vcpu_thread_.load(), kKickSignal);
  // Returns once run() has parked (or has ended, or was never started).
  pause_changed_.wait(lock, [&] { return paused_.load() || !running_.load(); });
}

void KvmInstance::resume() {
  {
    std::lock_guard lock(pause_mutex_);
    if (!pause_requested_.load()) return;
    // Tell the guest about the pause before it runs again: the boot info page is read-only to it
    // and written only here while the vCPU is out of the guest.
    note_resume(memory_, read_host_tsc() + static_cast<uint64_t>(tsc_offset_));
    pause_requested_.store(false);
  }
  pause_changed_.notify_all();
}

bool KvmInstance::wait_while_paused() {
  std::unique_lock lock(pause_mutex_);
  paused_.store(true);
  pause_changed_.notify_all();
  pause_changed_.wait(lock, [&] { return !pause_requested_.load() || stop_requested_.load(); });
  paused_.store(false);
  if (stop_requested_.load()) return false;
  vcpu_.run_state()->immediate_exit = 0;
  return true;
}

absl::StatusOr<TelemetrySnapshot> KvmInstance::telemetry() const {
  return read_telemetry(memory_, tsc_khz_);
}

ExitReason KvmInstance::run(std::optional<std::chrono::nanoseconds> time_limit) {
  install_kick_handler();
  vcpu_thread_.store(pthread_self());
  running_.store(true);
  // A signal raced with the flag above would be lost; immediate_exit covers that window.
  if (stop_requested_.load()) vcpu_.run_state()->immediate_exit = 1;
  // A restored instance (or one paused before it ever ran) parks before entering the guest.
  // (paused_ without pause_requested_: resumed before this thread got here; it clears paused_.)
  if ((pause_requested_.load() || paused_.load()) && !wait_while_paused()) {
    vcpu_.run_state()->immediate_exit = 1;
  }

  std::mutex mutex;
  std::condition_variable finished;
  bool done = false;
  std::thread watchdog;
  if (time_limit) {
    watchdog = std::thread([&] {
      std::unique_lock lock(mutex);
      if (!finished.wait_for(lock, *time_limit, [&] { return done; })) stop();
    });
  }
  ExitReason reason;
  for (;;) {
    absl::Status status = vcpu_.run();
    vcpu_exits_.fetch_add(1, std::memory_order_relaxed);
    if (absl::IsCancelled(status)) {
      if (pause_requested_.load() && !stop_requested_.load() && wait_while_paused()) continue;
      if (!stop_requested_.load()) {
        vcpu_.run_state()->immediate_exit = 0;
        continue;
      }
      kvm_regs regs{};
      (void)vcpu_.get_regs(regs);
      reason = {
          ExitKind::kTimeout, 0,
          time_limit
              ? absl::StrFormat(
                    "stopped after the time limit of %d ms, guest at rip %#x",
                    std::chrono::duration_cast<std::chrono::milliseconds>(*time_limit).count(),
                    regs.rip)
              : absl::StrFormat("stopped on request, guest at rip %#x", regs.rip)};
      break;
    }
    if (!status.ok()) {
      reason = {ExitKind::kHypervisorError, 0, std::string(status.message())};
      break;
    }
    if (std::optional<ExitReason> outcome = handle_exit()) {
      reason = std::move(*outcome);
      break;
    }
  }
  {
    std::lock_guard lock(pause_mutex_);
    running_.store(false);
  }
  pause_changed_.notify_all();
  if (watchdog.joinable()) {
    {
      std::lock_guard lock(mutex);
      done = true;
    }
    finished.notify_all();
    watchdog.join();
  }
  return reason;
}

std::optional<ExitReason> KvmInstance::handle_exit() {
  const kvm_run& run = *vcpu_.run_state();
  switch (run.exit_reason) {
    case KVM_EXIT_IO: {
      if (run.io.direction != KVM_EXIT_IO_OUT || run.io.count != 1 ||
          !is_hypercall_port(run.io.port)) {
        return ExitReason{
            ExitKind::kViolation, 0,
            absl::StrFormat("I/O %s port %#x (%d bytes) is not a hypercall",
                            run.io.direction == KVM_EXIT_IO_OUT ? "write to" : "read from",
                            run.io.port, run.io.size)};
      }
      uint32_t value = 0;
      const auto* data = reinterpret_cast<const uint8_t*>(&run) + run.io.data_offset;
      std::memcpy(&value, data, std::min<uint32_t>(run.io.size, sizeof(value)));
      HypercallOutcome outcome =
          dispatch_hypercall(run.io.port, value, run.io.size, memory_, console_);
      switch (outcome.kind) {
        case HypercallOutcomeKind::kContinue:
          return std::nullopt;
        case HypercallOutcomeKind::kExit:
          return ExitReason{ExitKind::kGuestExit, outcome.exit_status,
                            absl::StrCat("guest exited with status ", outcome.exit_status)};
        case HypercallOutcomeKind::kFault:
          return ExitReason{ExitKind::kGuestFault, 0, describe_guest_fault(outcome.fault, layout_)};
        case HypercallOutcomeKind::kPanic:
          return ExitReason{ExitKind::kGuestPanic, 0,
                            absl::StrCat("guest panic: ", outcome.message)};
        case HypercallOutcomeKind::kViolation:
          return ExitReason{ExitKind::kViolation, 0, outcome.message};
      }
      return ExitReason{ExitKind::kHypervisorError, 0, "unhandled hypercall outcome"};
    }
    case KVM_EXIT_MMIO:
      return ExitReason{ExitKind::kViolation, 0,
                        absl::StrFormat("%s of guest-physical address %#x outside guest memory",
                                        run.mmio.is_write ? "write" : "read", run.mmio.phys_addr)};
    case KVM_EXIT_SHUTDOWN: {
      kvm_regs regs{};
      (void)vcpu_.get_regs(regs);
      return ExitReason{ExitKind::kGuestFault, 0,
                        absl::StrFormat("triple fault (the guest could not handle an exception), "
                                        "last rip %#x",
                                        regs.rip)};
    }
    case KVM_EXIT_HLT:
      return ExitReason{ExitKind::kGuestFault, 0, "guest halted with no interrupt source"};
    case KVM_EXIT_FAIL_ENTRY:
      return ExitReason{ExitKind::kGuestFault, 0,
                        absl::StrFormat("VM entry failed, hardware reason %#x",
                                        run.fail_entry.hardware_entry_failure_reason)};
    case KVM_EXIT_INTERNAL_ERROR: {
      kvm_regs regs{};
      kvm_sregs sregs{};
      (void)vcpu_.get_regs(regs);
      (void)vcpu_.get_sregs(sregs);
      const char* what = run.internal.suberror == KVM_INTERNAL_ERROR_EMULATION ? "emulation failure"
                         : run.internal.suberror == KVM_INTERNAL_ERROR_SIMUL_EX
                             ? "exception while delivering an exception"
                             : "internal error";
      // An interrupt table too short for the 32 exception vectors cannot deliver any exception:
      // hardware would shut down (triple fault); an emulating KVM reports that as an internal
      // error instead.
      constexpr uint16_t kExceptionTableLimit = 32 * 16 - 1;
      if (sregs.idt.limit < kExceptionTableLimit) {
        return ExitReason{
            ExitKind::kGuestFault, 0,
            absl::StrFormat("triple fault (the guest's interrupt table, limit %u, cannot deliver "
                            "exceptions), last rip %#x; KVM reported %s (%d)",
                            sregs.idt.limit, regs.rip, what, run.internal.suberror)};
      }
      return ExitReason{ExitKind::kGuestFault, 0,
                        absl::StrFormat("KVM could not handle the guest at rip %#x: %s (%d)",
                                        regs.rip, what, run.internal.suberror)};
    }
    default:
      return ExitReason{ExitKind::kViolation, 0,
                        absl::StrFormat("unexpected KVM exit reason %d", run.exit_reason)};
  }
}

BootTiming KvmInstance::boot_timing() const {
  return read_boot_timing(memory_, tsc_synchronized_, tsc_khz_);
}

}  // namespace mortise
