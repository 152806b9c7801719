// mortised's VMs and resources; see supervisor.h.
#include "supervisor.h"

#include <google/protobuf/util/time_util.h>
#include <sys/mman.h>

#include <algorithm>
#include <iostream>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "image_source.h"
#include "kvm.h"
#include "page_tables.h"
#include "snapshot_source.h"
#include "tenon/abi.h"
#include "time/proto_time.h"
#include "vmm_child.h"

namespace mortise {
namespace {

constexpr size_t kMaxNameLength = 63;
constexpr size_t kConsoleChunkBytes = 16 << 10;
constexpr absl::Duration kMinimumTelemetryInterval = absl::Milliseconds(10);
constexpr absl::Duration kDefaultTelemetryInterval = absl::Seconds(1);
// How often a waiting stream looks whether its caller has gone.
constexpr absl::Duration kCancellationPoll = absl::Milliseconds(100);

absl::Status check_name(const std::string& name) {
  if (name.empty() || name.size() > kMaxNameLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("name '", name, "' must have 1 to ", kMaxNameLength, " characters"));
  }
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
      return absl::InvalidArgumentError(
          absl::StrCat("name '", name, "' may only hold a-z, 0-9 and '-'"));
    }
  }
  return absl::OkStatus();
}

std::string new_uid() {
  static absl::Mutex mutex(absl::kConstInit);
  static absl::BitGen* generator = new absl::BitGen();
  absl::MutexLock lock(&mutex);
  const uint64_t high = absl::Uniform<uint64_t>(*generator);
  const uint64_t low = absl::Uniform<uint64_t>(*generator);
  // A random (version 4) UUID.
  return absl::StrFormat("%08x-%04x-4%03x-%04x-%012x", high >> 32, (high >> 16) & 0xffff,
                         high & 0xfff, 0x8000 | ((low >> 48) & 0x3fff), low & 0xffffffffffffull);
}

bool contains(const std::vector<int>& cpus, int cpu) {
  return std::find(cpus.begin(), cpus.end(), cpu) != cpus.end();
}

std::string cpu_list(const std::vector<int>& cpus) {
  return absl::StrCat("[", absl::StrJoin(cpus, ","), "]");
}

// Mortise's own statuses for a load failure, in MortiseService.Create's terms.
absl::Status as_create_status(const absl::Status& status) {
  if (status.code() == absl::StatusCode::kUnavailable) {
    // Kvm::open: KVM is missing or unusable on this host.
    return absl::FailedPreconditionError(status.message());
  }
  return status;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Supervisor>> Supervisor::create(SupervisorOptions options) {
  std::unique_ptr<Supervisor> supervisor(new Supervisor(std::move(options)));
  absl::StatusOr<std::unique_ptr<ChildMonitor>> monitor = ChildMonitor::create();
  if (!monitor.ok()) return monitor.status();
  supervisor->monitor_ = std::move(*monitor);

  const EngineProbe probe = probe_engines(supervisor->options_.qemu);
  supervisor->kvm_unavailable_reason_ = probe.kvm_problem;
  supervisor->qemu_version_ = probe.qemu_version;
  absl::StatusOr<EngineKind> engine = resolve_engine(supervisor->options_.engine, probe);
  if (!engine.ok()) {
    supervisor->engine_unavailable_reason_ = std::string(engine.status().message());
    return supervisor;
  }
  supervisor->engine_ = *engine;
  std::vector<std::string>& features = supervisor->hypervisor_features_;
  if (*engine == EngineKind::kQemu) {
    // What the QEMU engine's machine offers Tenon: the xAPIC over MMIO and its one-shot timer.
    features = {"qemu", "xapic-mmio"};
    if (supervisor->options_.qemu.icount) features.push_back("icount");
    std::sort(features.begin(), features.end());
    supervisor->tsc_frequency_khz_ = qemu_guest_tsc_khz(supervisor->options_.qemu);
    return supervisor;
  }
  absl::StatusOr<Kvm> kvm = Kvm::open();
  if (!kvm.ok()) {
    supervisor->engine_ = std::nullopt;
    supervisor->engine_unavailable_reason_ = std::string(kvm.status().message());
    return supervisor;
  }
  features.push_back("kvm");
  const KvmCapabilities& capabilities = kvm->capabilities();
  if (capabilities.irqchip) features.push_back("irqchip");
  if (capabilities.tsc_deadline_timer) features.push_back("tsc-deadline-timer");
  if (capabilities.x2apic) features.push_back("x2apic");
  if (capabilities.tsc_control) features.push_back("tsc-control");
  if (capabilities.disable_exits & KVM_X86_DISABLE_EXITS_HLT)
    features.push_back("disable-exits-hlt");
  if (capabilities.disable_exits & KVM_X86_DISABLE_EXITS_PAUSE) {
    features.push_back("disable-exits-pause");
  }
  // KVM tells a vCPU's TSC frequency only to a vCPU: make a throwaway one-page VM to ask.
  void* page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page != MAP_FAILED) {
    absl::StatusOr<VirtualMachine> vm = VirtualMachine::create(*kvm, 4096, page);
    if (vm.ok()) {
      absl::StatusOr<Vcpu> vcpu = Vcpu::create(*kvm, *vm, 0);
      if (vcpu.ok()) {
        absl::StatusOr<uint64_t> khz = vcpu->tsc_khz();
        if (khz.ok()) supervisor->tsc_frequency_khz_ = *khz;
      }
    }
    munmap(page, 4096);
  }
  return supervisor;
}

Supervisor::~Supervisor() {
  shutdown();
  monitor_.reset();
}

void Supervisor::shutdown() {
  {
    std::lock_guard lock(registry_mutex_);
    shutting_down_ = true;
  }
  const std::vector<std::shared_ptr<ManagedVm>> vms = all_vms();
  // Every guest is told to stop first, so that they wind down together.
  for (const std::shared_ptr<ManagedVm>& vm : vms) vm->begin_stop();
  for (const std::shared_ptr<ManagedVm>& vm : vms) (void)destroy_vm(vm->identity().name);
}

std::vector<std::shared_ptr<ManagedVm>> Supervisor::all_vms() const {
  std::lock_guard lock(registry_mutex_);
  std::vector<std::shared_ptr<ManagedVm>> vms;
  for (const auto& [name, vm] : vms_) vms.push_back(vm);
  return vms;
}

absl::StatusOr<std::shared_ptr<ManagedVm>> Supervisor::find(const std::string& name) const {
  std::lock_guard lock(registry_mutex_);
  auto found = vms_.find(name);
  if (found == vms_.end()) return absl::NotFoundError(absl::StrCat("no VM named ", name));
  return found->second;
}

absl::StatusOr<Supervisor::CpuChoice> Supervisor::choose_cpu(
    const tenon::v1::CpuRequest& request) const {
  const HostPartition& partition = options_.partition;
  CpuChoice choice;
  const std::optional<int> host_cpu = request.has_host_cpu()
                                          ? std::optional<int>(static_cast<int>(request.host_cpu()))
                                          : std::nullopt;
  switch (request.policy()) {
    case tenon::v1::CPU_POLICY_UNSPECIFIED:
    case tenon::v1::CPU_POLICY_ANYWHERE:
      if (host_cpu && !contains(partition.management_cpus, *host_cpu)) {
        return absl::InvalidArgumentError(absl::StrCat("host_cpu ", *host_cpu,
                                                       " is not a CPU of the management partition ",
                                                       cpu_list(partition.management_cpus)));
      }
      choice.vcpu_cpu = host_cpu;
      if (request.rt_priority() != 0) {
        choice.note =
            "rt_priority applies to the real-time policies only; CPU_POLICY_ANYWHERE "
            "runs under ordinary scheduling";
      }
      return choice;
    case tenon::v1::CPU_POLICY_REALTIME: {
      choice.rt_priority = request.rt_priority();
      if (host_cpu) {
        if (!contains(partition.realtime_cpus, *host_cpu)) {
          return absl::InvalidArgumentError(
              absl::StrCat("host_cpu ", *host_cpu, " is not a CPU of the real-time partition ",
                           cpu_list(partition.realtime_cpus)));
        }
        if (dedicated_cpus_.count(*host_cpu) != 0) {
          return absl::ResourceExhaustedError(
              absl::StrCat("host_cpu ", *host_cpu, " is held by a dedicated VM"));
        }
        choice.vcpu_cpu = host_cpu;
        return choice;
      }
      // The least shared real-time core.
      for (int cpu : partition.realtime_cpus) {
        if (dedicated_cpus_.count(cpu) != 0) continue;
        auto users = [&](int candidate) {
          auto found = realtime_users_.find(candidate);
          return found == realtime_users_.end() ? 0 : found->second;
        };
        if (!choice.vcpu_cpu || users(cpu) < users(*choice.vcpu_cpu)) choice.vcpu_cpu = cpu;
      }
      if (!choice.vcpu_cpu) {
        return absl::ResourceExhaustedError(absl::StrCat("every real-time CPU ",
                                                         cpu_list(partition.realtime_cpus),
                                                         " is held by a dedicated VM"));
      }
      return choice;
    }
    case tenon::v1::CPU_POLICY_DEDICATED: {
      choice.rt_priority = request.rt_priority();
      auto free = [&](int cpu) {
        auto users = realtime_users_.find(cpu);
        return dedicated_cpus_.count(cpu) == 0 &&
               (users == realtime_users_.end() || users->second == 0);
      };
      if (host_cpu) {
        if (!contains(partition.realtime_cpus, *host_cpu)) {
          return absl::InvalidArgumentError(
              absl::StrCat("host_cpu ", *host_cpu, " is not a CPU of the real-time partition ",
                           cpu_list(partition.realtime_cpus)));
        }
        if (!free(*host_cpu)) {
          return absl::ResourceExhaustedError(
              absl::StrCat("host_cpu ", *host_cpu, " is already used by another VM"));
        }
        choice.vcpu_cpu = host_cpu;
        return choice;
      }
      for (int cpu : partition.realtime_cpus) {
        if (free(cpu)) {
          choice.vcpu_cpu = cpu;
          return choice;
        }
      }
      return absl::ResourceExhaustedError(
          absl::StrCat("no free real-time CPU for CPU_POLICY_DEDICATED (real-time partition ",
                       cpu_list(partition.realtime_cpus), ")"));
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unknown CPU policy ", static_cast<int>(request.policy())));
  }
}

namespace {

absl::Status check_channels(const tenon::v1::CreateVmRequest& request) {
  if (request.channels().empty()) return absl::OkStatus();
  if (request.channels_size() > static_cast<int>(tenon::abi::kIvcMaxChannels)) {
    return absl::InvalidArgumentError(absl::StrCat("a VM has at most ", tenon::abi::kIvcMaxChannels,
                                                   " channels, got ", request.channels_size()));
  }
  if (request.memory_bytes() > tenon::abi::kIvcWindowBase) {
    return absl::InvalidArgumentError(absl::StrCat("a VM with channels has at most ",
                                                   tenon::abi::kIvcWindowBase >> 20,
                                                   " MiB of memory, got ", request.memory_bytes()));
  }
  std::set<std::string> names;
  for (const tenon::v1::ChannelEndpoint& channel : request.channels()) {
    if (absl::Status status = check_channel_name(channel.name()); !status.ok()) return status;
    if (!names.insert(channel.name()).second) {
      return absl::InvalidArgumentError(absl::StrCat("channel ", channel.name(), " named twice"));
    }
    if (channel.side() != tenon::v1::CHANNEL_SIDE_A &&
        channel.side() != tenon::v1::CHANNEL_SIDE_B) {
      return absl::InvalidArgumentError(
          absl::StrCat("channel ", channel.name(), ": side must be CHANNEL_SIDE_A or _B"));
    }
  }
  return absl::OkStatus();
}

uint32_t side_index(tenon::v1::ChannelSide side) {
  return side == tenon::v1::CHANNEL_SIDE_B ? 1 : 0;
}

}  // namespace

absl::StatusOr<std::vector<IvcEndpointConfig>> Supervisor::acquire_channels(
    const VmIdentity& identity) {
  std::lock_guard lock(registry_mutex_);
  std::map<std::string, std::shared_ptr<IvcChannel>> created;
  for (const tenon::v1::ChannelEndpoint& channel : identity.channels) {
    auto found = channels_.find(channel.name());
    if (found == channels_.end()) {
      absl::StatusOr<IvcChannel> fresh = IvcChannel::create(channel.name());
      if (!fresh.ok()) return fresh.status();
      created[channel.name()] = std::make_shared<IvcChannel>(std::move(*fresh));
      continue;
    }
    const std::string& holder = found->second.holders[side_index(channel.side())];
    if (!holder.empty()) {
      return absl::AlreadyExistsError(
          absl::StrCat("side ", tenon::v1::ChannelSide_Name(channel.side()), " of channel ",
                       channel.name(), " is held by VM ", holder));
    }
  }
  // Nothing can fail from here on: take every side at once.
  std::vector<IvcEndpointConfig> endpoints;
  for (const tenon::v1::ChannelEndpoint& channel : identity.channels) {
    ChannelHolders& entry = channels_[channel.name()];
    if (entry.channel == nullptr) entry.channel = created[channel.name()];
    entry.holders[side_index(channel.side())] = identity.name;
    endpoints.push_back(entry.channel->endpoint(side_index(channel.side())));
  }
  return endpoints;
}

void Supervisor::release(const VmIdentity& identity) {
  memory_reserved_ -= identity.memory_bytes;
  for (const tenon::v1::ChannelEndpoint& channel : identity.channels) {
    auto found = channels_.find(channel.name());
    if (found == channels_.end()) continue;
    std::string& holder = found->second.holders[side_index(channel.side())];
    if (holder == identity.name) holder.clear();
    // The last endpoint gone: the region and doorbells go with it.
    if (found->second.holders[0].empty() && found->second.holders[1].empty()) {
      channels_.erase(found);
    }
  }
  if (!identity.vcpu_cpu) return;
  if (identity.cpu_policy == tenon::v1::CPU_POLICY_DEDICATED) {
    dedicated_cpus_.erase(*identity.vcpu_cpu);
  } else if (identity.cpu_policy == tenon::v1::CPU_POLICY_REALTIME) {
    if (--realtime_users_[*identity.vcpu_cpu] <= 0) realtime_users_.erase(*identity.vcpu_cpu);
  }
}

absl::StatusOr<Supervisor::CpuChoice> Supervisor::reserve(VmIdentity& identity,
                                                          const tenon::v1::CpuRequest& request) {
  std::lock_guard lock(registry_mutex_);
  if (shutting_down_) return absl::UnavailableError("mortised is shutting down");
  if (vms_.count(identity.name) != 0 || names_being_created_.count(identity.name) != 0) {
    return absl::AlreadyExistsError(absl::StrCat("a VM named ", identity.name, " exists"));
  }
  const uint64_t memory = identity.memory_bytes;
  if (memory > options_.guest_memory_budget - memory_reserved_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("guest memory budget exceeded: ", memory, " bytes asked, ",
                     options_.guest_memory_budget - memory_reserved_, " of ",
                     options_.guest_memory_budget, " free"));
  }
  absl::StatusOr<CpuChoice> chosen = choose_cpu(request);
  if (!chosen.ok()) return chosen.status();
  identity.vcpu_cpu = chosen->vcpu_cpu;
  identity.placement_note = chosen->note;
  memory_reserved_ += memory;
  if (chosen->vcpu_cpu && identity.cpu_policy == tenon::v1::CPU_POLICY_DEDICATED) {
    dedicated_cpus_.insert(*chosen->vcpu_cpu);
  } else if (chosen->vcpu_cpu && identity.cpu_policy == tenon::v1::CPU_POLICY_REALTIME) {
    ++realtime_users_[*chosen->vcpu_cpu];
  }
  names_being_created_.insert(identity.name);
  return chosen;
}

absl::StatusOr<tenon::v1::VmOperationResponse> Supervisor::create_vm(
    const tenon::v1::CreateVmRequest& request) {
  const absl::Time received = absl::Now();
  if (absl::Status status = check_name(request.name()); !status.ok()) return status;
  const uint64_t memory = request.memory_bytes();
  if (memory == 0 || memory % tenon::abi::kPageSize != 0 || memory > kMaxGuestMemory) {
    return absl::InvalidArgumentError(
        absl::StrCat("memory_bytes must be a multiple of 4 KiB between 4 KiB and ",
                     kMaxGuestMemory >> 20, " MiB, got ", memory));
  }
  if (request.stack_bytes() % tenon::abi::kPageSize != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("stack_bytes must be a multiple of 4 KiB, got ", request.stack_bytes()));
  }
  if (request.cpu().rt_priority() > 99) {
    return absl::InvalidArgumentError(
        absl::StrCat("rt_priority must be 0 to 99, got ", request.cpu().rt_priority()));
  }
  // A negative or out-of-range run time used to wrap into a huge unsigned count.
  absl::StatusOr<absl::Duration> app_run_time =
      tenon::time::from_proto(request.app_run_time(), "app_run_time");
  if (!app_run_time.ok()) return app_run_time.status();
  absl::StatusOr<uint64_t> app_run_ns =
      tenon::time::to_unsigned_nanoseconds(*app_run_time, "app_run_time");
  if (!app_run_ns.ok()) return absl::InvalidArgumentError(app_run_ns.status().message());
  if (absl::Status status = check_channels(request); !status.ok()) return status;
  if (absl::Status status = check_engine("instances"); !status.ok()) {
    return status;
  }
  if (request.channels_size() > 0 && *engine_ != EngineKind::kKvm) {
    return absl::FailedPreconditionError(
        "inter-VM channels run on the kvm engine only; this mortised runs the qemu engine");
  }
  absl::StatusOr<ResolvedImage> image = resolve_image(request, options_.image_directory, *engine_);
  if (!image.ok()) return image.status();

  VmIdentity identity;
  identity.name = request.name();
  identity.uid = new_uid();
  identity.image_digest = image->digest;
  identity.memory_bytes = memory;
  identity.cpu_policy = request.cpu().policy() == tenon::v1::CPU_POLICY_UNSPECIFIED
                            ? tenon::v1::CPU_POLICY_ANYWHERE
                            : request.cpu().policy();
  identity.create_time = received;
  absl::StatusOr<CpuChoice> reserved = reserve(identity, request.cpu());
  if (!reserved.ok()) return reserved.status();
  const CpuChoice cpu = *reserved;
  auto give_back = [&] {
    std::lock_guard lock(registry_mutex_);
    release(identity);
    names_being_created_.erase(identity.name);
  };
  VmIdentity with_channels = identity;
  with_channels.channels.assign(request.channels().begin(), request.channels().end());
  absl::StatusOr<std::vector<IvcEndpointConfig>> channel_endpoints =
      acquire_channels(with_channels);
  if (!channel_endpoints.ok()) {
    give_back();
    return channel_endpoints.status();
  }
  identity.channels = std::move(with_channels.channels);  // held now: give_back releases them

  VmmLaunch launch;
  launch.vmm_binary = options_.vmm_binary;
  launch.name = identity.name;
  launch.image = std::move(image->memfd);
  launch.memory_bytes = memory;
  launch.stack_bytes = request.stack_bytes() != 0 ? request.stack_bytes() : kDefaultStackBytes;
  launch.app_run_ns = *app_run_ns;
  launch.cpu_policy = identity.cpu_policy;
  launch.management_cpus = options_.partition.management_cpus;
  launch.vcpu_cpu = cpu.vcpu_cpu;
  launch.rt_priority = cpu.rt_priority;
  launch.console_buffer_bytes = options_.vmm_console_buffer_bytes;
  launch.channels = *channel_endpoints;
  launch.engine = *engine_;
  launch.qemu = options_.qemu;
  absl::StatusOr<std::unique_ptr<VmmChild>> child = VmmChild::spawn(std::move(launch));
  if (!child.ok()) {
    give_back();
    return child.status();
  }
  auto vm = std::make_shared<ManagedVm>(identity, options_.console_ring_bytes, options_.timeouts);
  absl::StatusOr<tenon::v1::VmOperationResponse> created =
      vm->launch(std::move(*child), *monitor_, received);
  if (!created.ok()) {
    give_back();
    return as_create_status(created.status());
  }
  {
    std::lock_guard lock(registry_mutex_);
    names_being_created_.erase(identity.name);
    vms_[identity.name] = vm;
  }
  return created;
}

absl::StatusOr<tenon::v1::VmOperationResponse> Supervisor::start_vm(const std::string& name) {
  const absl::Time received = absl::Now();
  absl::StatusOr<std::shared_ptr<ManagedVm>> vm = find(name);
  if (!vm.ok()) return vm.status();
  return (*vm)->start(received);
}

absl::StatusOr<tenon::v1::VmOperationResponse> Supervisor::pause_vm(const std::string& name) {
  const absl::Time received = absl::Now();
  absl::StatusOr<std::shared_ptr<ManagedVm>> vm = find(name);
  if (!vm.ok()) return vm.status();
  return (*vm)->pause(received);
}

absl::StatusOr<tenon::v1::VmOperationResponse> Supervisor::resume_vm(const std::string& name) {
  const absl::Time received = absl::Now();
  absl::StatusOr<std::shared_ptr<ManagedVm>> vm = find(name);
  if (!vm.ok()) return vm.status();
  return (*vm)->resume(received);
}

absl::StatusOr<tenon::v1::VmOperationResponse> Supervisor::destroy_vm(const std::string& name) {
  const absl::Time received = absl::Now();
  absl::StatusOr<std::shared_ptr<ManagedVm>> vm = find(name);
  if (!vm.ok()) return vm.status();
  absl::StatusOr<tenon::v1::VmOperationResponse> destroyed = (*vm)->destroy(received);
  if (!destroyed.ok()) return destroyed.status();
  std::lock_guard lock(registry_mutex_);
  auto found = vms_.find(name);
  if (found != vms_.end() && found->second == *vm) {
    vms_.erase(found);
    release((*vm)->identity());
  }
  return destroyed;
}

absl::StatusOr<tenon::v1::SnapshotVmResponse> Supervisor::snapshot_vm(
    const tenon::v1::SnapshotVmRequest& request) {
  const absl::Time received = absl::Now();
  absl::StatusOr<std::shared_ptr<ManagedVm>> vm = find(request.name());
  if (!vm.ok()) return vm.status();
  absl::StatusOr<std::string> target =
      resolve_snapshot_target(request.path(), options_.snapshot_directory);
  if (!target.ok()) return target.status();
  if (absl::Status status = check_engine("snapshots"); !status.ok()) {
    return status;
  }
  absl::StatusOr<tenon::v1::SnapshotVmResponse> written = (*vm)->snapshot(*target, received);
  if (written.ok()) written->set_path(request.path());
  return written;
}

absl::StatusOr<tenon::v1::VmOperationResponse> Supervisor::restore_vm(
    const tenon::v1::RestoreVmRequest& request) {
  const absl::Time received = absl::Now();
  if (absl::Status status = check_name(request.name()); !status.ok()) return status;
  if (request.cpu().rt_priority() > 99) {
    return absl::InvalidArgumentError(
        absl::StrCat("rt_priority must be 0 to 99, got ", request.cpu().rt_priority()));
  }
  // The file is checked completely, and its digest compared, before KVM or a process is touched.
  absl::StatusOr<ResolvedSnapshot> snapshot = read_snapshot(request, options_.snapshot_directory);
  if (!snapshot.ok()) return snapshot.status();
  if (absl::Status status = check_engine("snapshots"); !status.ok()) {
    return status;
  }
  if (absl::Status status = check_snapshot_engine(snapshot->engine, *engine_); !status.ok()) {
    return status;
  }

  VmIdentity identity;
  identity.name = request.name();
  identity.uid = new_uid();
  identity.run_id = snapshot->run_id.empty() ? identity.uid : snapshot->run_id;
  identity.image_digest = snapshot->image_digest;
  identity.memory_bytes = snapshot->memory_bytes;
  identity.cpu_policy = request.cpu().policy() == tenon::v1::CPU_POLICY_UNSPECIFIED
                            ? tenon::v1::CPU_POLICY_ANYWHERE
                            : request.cpu().policy();
  identity.create_time = received;
  absl::StatusOr<CpuChoice> reserved = reserve(identity, request.cpu());
  if (!reserved.ok()) return reserved.status();
  const CpuChoice cpu = *reserved;
  auto give_back = [&] {
    std::lock_guard lock(registry_mutex_);
    release(identity);
    names_being_created_.erase(identity.name);
  };

  VmmLaunch launch;
  launch.vmm_binary = options_.vmm_binary;
  launch.name = identity.name;
  launch.image = std::move(snapshot->memfd);
  launch.source = VmmSource::kSnapshot;
  launch.engine = *engine_;
  launch.qemu = options_.qemu;
  launch.memory_bytes = identity.memory_bytes;
  launch.cpu_policy = identity.cpu_policy;
  launch.management_cpus = options_.partition.management_cpus;
  launch.vcpu_cpu = cpu.vcpu_cpu;
  launch.rt_priority = cpu.rt_priority;
  launch.console_buffer_bytes = options_.vmm_console_buffer_bytes;
  absl::StatusOr<std::unique_ptr<VmmChild>> child = VmmChild::spawn(std::move(launch));
  if (!child.ok()) {
    give_back();
    return child.status();
  }
  auto vm = std::make_shared<ManagedVm>(identity, options_.console_ring_bytes, options_.timeouts);
  absl::StatusOr<tenon::v1::VmOperationResponse> restored =
      vm->launch(std::move(*child), *monitor_, received, VmmSource::kSnapshot);
  if (!restored.ok()) {
    give_back();
    return as_create_status(restored.status());
  }
  {
    std::lock_guard lock(registry_mutex_);
    names_being_created_.erase(identity.name);
    vms_[identity.name] = vm;
  }
  return restored;
}

tenon::v1::ListVmsResponse Supervisor::list_vms() {
  tenon::v1::ListVmsResponse response;
  // vms_ is a map: ordered by name, as the API promises.
  for (const std::shared_ptr<ManagedVm>& vm : all_vms()) {
    if (!vm->destroyed()) *response.add_vms() = vm->describe(/*include_telemetry=*/false);
  }
  return response;
}

absl::StatusOr<tenon::v1::Vm> Supervisor::get_vm(const tenon::v1::GetVmRequest& request) {
  absl::StatusOr<std::shared_ptr<ManagedVm>> vm = find(request.name());
  if (!vm.ok()) return vm.status();
  return (*vm)->describe(request.include_telemetry());
}

absl::Status Supervisor::stream_console(const tenon::v1::StreamConsoleRequest& request,
                                        const ConsoleWriter& write, const Cancelled& cancelled) {
  absl::StatusOr<std::shared_ptr<ManagedVm>> found = find(request.name());
  if (!found.ok()) return found.status();
  const std::shared_ptr<ManagedVm> vm = *found;
  uint64_t offset = request.from_offset();
  for (;;) {
    const uint64_t seen = vm->change_count();
    bool finished = false;
    absl::StatusOr<ConsoleRing::Chunk> chunk =
        vm->console_from(offset, kConsoleChunkBytes, &finished);
    if (!chunk.ok()) return chunk.status();
    if (!chunk->data.empty()) {
      tenon::v1::ConsoleChunk message;
      message.set_offset(chunk->offset);
      message.set_data(std::move(chunk->data));
      *message.mutable_time() = google::protobuf::util::TimeUtil::NanosecondsToTimestamp(
          absl::ToUnixNanos(chunk->received));
      offset = chunk->offset + message.data().size();
      if (!write(message)) return absl::OkStatus();
      continue;
    }
    if (!request.follow() || finished || cancelled()) return absl::OkStatus();
    vm->wait_for_change(seen, absl::Now() + kCancellationPoll);
  }
}

absl::Status Supervisor::stream_telemetry(const tenon::v1::StreamTelemetryRequest& request,
                                          const TelemetryWriter& write,
                                          const Cancelled& cancelled) {
  absl::Duration interval = kDefaultTelemetryInterval;
  if (request.has_interval()) {
    absl::StatusOr<absl::Duration> asked = tenon::time::from_proto(request.interval(), "interval");
    if (!asked.ok()) return asked.status();
    interval = *asked;
    if (interval < kMinimumTelemetryInterval) {
      return absl::InvalidArgumentError(absl::StrCat(
          "interval must be at least ", absl::FormatDuration(kMinimumTelemetryInterval), ", got ",
          absl::FormatDuration(interval)));
    }
  }
  std::shared_ptr<ManagedVm> single;
  if (!request.name().empty()) {
    absl::StatusOr<std::shared_ptr<ManagedVm>> found = find(request.name());
    if (!found.ok()) return found.status();
    single = *found;
  }
  for (absl::Time next = absl::Now();; next += interval) {
    if (single != nullptr) {
      // Terminal before the sample: this sample is the final one.
      const bool final_sample = single->terminal();
      if (!write(single->telemetry())) return absl::OkStatus();
      if (final_sample) return absl::OkStatus();
    } else {
      for (const std::shared_ptr<ManagedVm>& vm : all_vms()) {
        if (!write(vm->telemetry())) return absl::OkStatus();
      }
    }
    // Wait for the next sample time, looking for a cancelled caller (or, for one VM, its end)
    // meanwhile.
    for (;;) {
      if (cancelled()) return absl::OkStatus();
      const absl::Time now = absl::Now();
      if (now >= next + interval) break;
      const absl::Time wake = std::min(next + interval, now + kCancellationPoll);
      if (single != nullptr) {
        const uint64_t seen = single->change_count();
        if (single->terminal()) break;
        single->wait_for_change(seen, wake);
      } else {
        absl::SleepFor(wake - now);
      }
    }
    if (absl::Now() > next + 2 * interval) next = absl::Now() - interval;  // fell behind: no burst
  }
}

absl::Status Supervisor::check_engine(const char* operation) const {
  if (!engine_) {
    return absl::FailedPreconditionError(
        absl::StrCat("no engine can run ", operation, " here: ", engine_unavailable_reason_));
  }
  return absl::OkStatus();
}

tenon::v1::HostInfo Supervisor::host_info() const {
  tenon::v1::HostInfo info;
  if (engine_) {
    info.set_engine(engine_name(*engine_));
    info.set_engine_detail(engine_detail(*engine_, options_.qemu));
  }
  info.set_engine_unavailable_reason(engine_unavailable_reason_);
  info.set_qemu_version(qemu_version_);
  info.set_mortise_version(MORTISE_VERSION);
  info.set_guest_abi_version(tenon::abi::kVersion);
  info.set_kvm_unavailable_reason(kvm_unavailable_reason_);
  for (const std::string& feature : hypervisor_features_) info.add_hypervisor_features(feature);
  for (const std::string& library :
       std::vector<std::string>(absl::StrSplit(MORTISE_LIBRARIES, ',', absl::SkipEmpty()))) {
    info.add_libraries(library);
  }
  for (int cpu : options_.partition.management_cpus) info.add_management_cpus(cpu);
  for (int cpu : options_.partition.realtime_cpus) info.add_realtime_cpus(cpu);
  info.set_guest_memory_bytes(options_.guest_memory_budget);
  {
    std::lock_guard lock(registry_mutex_);
    info.set_guest_memory_free_bytes(options_.guest_memory_budget - memory_reserved_);
  }
  info.set_tsc_frequency_khz(tsc_frequency_khz_);
  info.set_snapshot_directory(options_.snapshot_directory);
  return info;
}

}  // namespace mortise
