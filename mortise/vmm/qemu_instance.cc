// A Tenon instance on the QEMU engine; see qemu_instance.h.
#include "qemu_instance.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "boot_rom.h"
#include "file_bytes.h"
#include "qemu_exit.h"
#include "tenon/abi.h"

namespace mortise {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// QEMU's descriptors: the QMP socket, the guest's memory file, the boot ROM, the console pipe.
constexpr int kQemuQmpFd = 3;
constexpr int kQemuMemoryFd = 4;
constexpr int kQemuRomFd = 5;
constexpr int kQemuConsoleFd = 6;
constexpr int kQemuIncomingFd = 7;  // a restored instance's machine state (QEMU's stream)
// The name under which QEMU holds the descriptor a snapshot's stream goes to.
constexpr char kSnapshotFdName[] = "mortise-snapshot";
// QEMU needs a moment to start (TCG sets up its translator); far less than this.
constexpr milliseconds kStartLimit(15000);
constexpr milliseconds kCommandLimit(5000);
// Saving or loading the machine without its RAM takes milliseconds; far less than this.
constexpr milliseconds kMigrationLimit(15000);
constexpr size_t kMaxDiagnosticsBytes = 64 << 10;
constexpr uint64_t kQemuRamStep = 8 << 10;
// A guest cannot make QEMU translate more than this much code at once; bounds QEMU's memory.
constexpr int kTranslationBufferMiB = 32;

absl::Status errno_status(const char* what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

std::vector<std::string> qemu_arguments(uint64_t memory_bytes, const QemuSettings& settings,
                                        bool incoming) {
  std::vector<std::string> arguments = {
      // microvm: no PCI, no legacy devices we do not ask for, no firmware tables.
      "-M",
      "microvm,x-option-roms=off,pit=off,pic=off,rtc=off,isa-serial=off,acpi=off,"
      "memory-backend=guest-memory",
      "-smp", "1", "-m", absl::StrCat(memory_bytes / 1024, "K"), "-object",
      absl::StrCat("memory-backend-file,id=guest-memory,size=", memory_bytes,
                   ",mem-path=/proc/self/fd/", kQemuMemoryFd, ",share=on"),
      "-bios", absl::StrCat("/proc/self/fd/", kQemuRomFd), "-nodefaults", "-no-user-config",
      "-display", "none",
      // Named, so that `ps` and `pgrep -f 'name tenon'` tell an instance's QEMU from others.
      "-name", "tenon,process=tenon-qemu",
      // Held before the first instruction until run() says cont.
      "-S", "-chardev", absl::StrCat("socket,id=qmp,fd=", kQemuQmpFd), "-mon",
      "chardev=qmp,mode=control", "-chardev",
      absl::StrCat("file,id=console,path=/proc/self/fd/", kQemuConsoleFd), "-device",
      absl::StrFormat("isa-debugcon,iobase=%#x,chardev=console", tenon::abi::kQemuConsolePort),
      "-device", absl::StrFormat("isa-debug-exit,iobase=%#x,iosize=4", tenon::abi::kQemuExitPort),
      // A triple fault resets a PC; here it ends the instance instead of rebooting it.
      "-action", "reboot=shutdown"};
  if (settings.kvm_acceleration) {
    arguments.insert(arguments.end(), {"-accel", "kvm"});
  } else {
    arguments.insert(arguments.end(),
                     {"-accel", absl::StrCat("tcg,tb-size=", kTranslationBufferMiB)});
  }
  if (settings.icount) {
    arguments.insert(arguments.end(), {"-icount", "shift=0,align=off,sleep=off"});
  }
  // A restored instance waits for its machine state, which comes once QMP has set the
  // migration capabilities (migrate_incoming).
  if (incoming) arguments.insert(arguments.end(), {"-incoming", "defer"});
  return arguments;
}

// Passes what `fd` has to `sink`; false at end of file.
bool read_available(int fd, const std::function<void(std::span<const uint8_t>)>& sink) {
  uint8_t buffer[4096];
  for (;;) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n > 0) {
      sink({buffer, static_cast<size_t>(n)});
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return true;
    return false;  // end of file, or the descriptor broke
  }
}

void make_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Snapshots carry guest memory themselves (it is Mortise's shared memory file): QEMU's stream
// leaves out RAM that is shared, and holds only the machine (vCPU, LAPIC, clocks, boot ROM).
absl::Status set_migration_capabilities(QmpClient& qmp) {
  absl::StatusOr<nlohmann::json> set = qmp.execute(
      "migrate-set-capabilities",
      {{"capabilities", {{{"capability", "x-ignore-shared"}, {"state", true}}}}}, kCommandLimit);
  return set.ok() ? absl::OkStatus() : set.status();
}

// Waits for the migration in progress (outgoing or incoming) to end; its error otherwise.
absl::Status await_migration(QmpClient& qmp, const char* what) {
  const Clock::time_point deadline = Clock::now() + kMigrationLimit;
  for (;;) {
    absl::StatusOr<nlohmann::json> state = qmp.execute("query-migrate", nullptr, kCommandLimit);
    if (!state.ok()) return state.status();
    const std::string status = state->value("status", "");
    if (status == "completed") return absl::OkStatus();
    if (status == "failed" || status == "cancelled") {
      return absl::InternalError(
          absl::StrCat("QEMU could not ", what, ": ", state->value("error-desc", status)));
    }
    if (Clock::now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("QEMU did not ", what, " within ", kMigrationLimit.count(), " ms"));
    }
    std::this_thread::sleep_for(milliseconds(1));
  }
}

}  // namespace

QemuInstance::QemuInstance(GuestMemory memory, PreparedGuest guest, QemuProcess process,
                           QmpClient qmp, FileDescriptor console, FileDescriptor wake,
                           ConsoleSink& console_sink, uint64_t tsc_khz)
    : memory_(std::move(memory)),
      guest_(std::move(guest)),
      process_(std::move(process)),
      qmp_(std::move(qmp)),
      console_(std::move(console)),
      wake_(std::move(wake)),
      console_sink_(console_sink),
      tsc_khz_(tsc_khz) {}

QemuInstance::~QemuInstance() = default;

absl::StatusOr<std::unique_ptr<QemuInstance>> QemuInstance::create(const InstanceConfig& config,
                                                                   const QemuSettings& qemu,
                                                                   ConsoleSink& console,
                                                                   uint64_t host_start_tsc) {
  if (!config.channels.empty()) {
    return absl::FailedPreconditionError(
        "inter-VM channels run on the kvm engine only: the qemu engine has no shared-memory "
        "device for them");
  }
  if (host_start_tsc == 0) host_start_tsc = read_host_tsc();
  absl::StatusOr<std::vector<uint8_t>> file = read_image_file(config.image_path);
  if (!file.ok()) return file.status();
  absl::StatusOr<GuestMemory> memory = GuestMemory::create_shared(config.memory_bytes);
  if (!memory.ok()) return memory.status();
  GuestSetup setup;
  setup.engine = EngineKind::kQemu;
  setup.stack_bytes = config.stack_bytes;
  setup.app_run_ns = config.app_run_ns;
  setup.host_start_tsc = host_start_tsc;
  setup.tsc_khz = qemu_guest_tsc_khz(qemu);
  absl::StatusOr<PreparedGuest> guest = prepare_guest(*memory, *file, setup);
  if (!guest.ok()) return guest.status();
  return start(std::move(*memory), std::move(*guest), qemu, console, setup.tsc_khz,
               /*machine_state=*/{});
}

absl::StatusOr<std::unique_ptr<QemuInstance>> QemuInstance::restore(
    const snapshot::Snapshot& parsed, const QemuSettings& qemu, ConsoleSink& console) {
  if (absl::Status status = check_snapshot_engine(parsed.engine, EngineKind::kQemu); !status.ok()) {
    return status;
  }
  // The guest calibrated its timers against the TSC frequency it was told at boot; it must stay.
  const uint64_t saved_khz = parsed.machine.tsc_khz;
  const uint64_t here_khz = qemu_guest_tsc_khz(qemu);
  const uint64_t difference = saved_khz > here_khz ? saved_khz - here_khz : here_khz - saved_khz;
  if (difference * 200 > saved_khz) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the snapshot's guest TSC runs at ", saved_khz, " kHz, this engine's (",
        engine_detail(EngineKind::kQemu, qemu), ") at ", here_khz,
        " kHz: QEMU shows the guest the host's TSC, or virtual nanoseconds under icount"));
  }
  absl::StatusOr<GuestMemory> memory = GuestMemory::create_shared(parsed.memory_bytes);
  if (!memory.ok()) return memory.status();
  const std::span<const uint8_t> saved = parsed.section(snapshot::SectionType::kGuestMemory);
  std::memcpy(memory->host_base(), saved.data(), std::min<uint64_t>(saved.size(), memory->size()));
  PreparedGuest guest;
  guest.layout = layout_of(parsed.machine);
  guest.image = image_of(parsed.machine);
  guest.cr3 = parsed.machine.page_tables;
  absl::StatusOr<std::unique_ptr<QemuInstance>> instance =
      start(std::move(*memory), std::move(guest), qemu, console, saved_khz,
            parsed.section(snapshot::SectionType::kQemuState));
  if (!instance.ok()) return instance.status();
  // Parked until resume(), like a paused instance.
  (*instance)->pause_requested_.store(true);
  (*instance)->paused_.store(true);
  return instance;
}

absl::StatusOr<std::unique_ptr<QemuInstance>> QemuInstance::start(
    GuestMemory memory, PreparedGuest guest, const QemuSettings& qemu, ConsoleSink& console,
    uint64_t tsc_khz, std::span<const uint8_t> machine_state) {
  const bool incoming = !machine_state.empty();
  // QEMU sizes RAM in 8 KiB steps: the file grows to the next step, and the page beyond the
  // guest's memory is never mapped for it.
  const uint64_t qemu_memory_bytes =
      (memory.size() + kQemuRamStep - 1) / kQemuRamStep * kQemuRamStep;
  if (ftruncate(memory.shared_fd(), static_cast<off_t>(qemu_memory_bytes)) != 0) {
    return errno_status("sizing the guest memory file");
  }
  // A restored instance's ROM is replaced by the saved one; it only has to have the same size.
  BootRomParameters parameters;
  parameters.entry = guest.image.entry;
  parameters.cr3 = guest.cr3;
  parameters.stack_top = guest.layout.stack_top;
  parameters.boot_info = tenon::abi::kBootInfoAddress;
  const std::vector<uint8_t> rom_bytes = make_boot_rom(parameters);
  if (rom_bytes.empty()) return absl::InternalError("the boot ROM built into Mortise is broken");
  absl::StatusOr<FileDescriptor> rom = memfd_with(
      "mortise-boot-rom", {reinterpret_cast<const char*>(rom_bytes.data()), rom_bytes.size()},
      /*seal=*/true);
  if (!rom.ok()) return rom.status();
  FileDescriptor machine_file;
  if (incoming) {
    absl::StatusOr<FileDescriptor> state =
        memfd_with("mortise-qemu-state",
                   {reinterpret_cast<const char*>(machine_state.data()), machine_state.size()},
                   /*seal=*/true);
    if (!state.ok()) return state.status();
    machine_file = std::move(*state);
  }

  int qmp_pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, qmp_pair) != 0) {
    return errno_status("socketpair");
  }
  FileDescriptor qmp_ours(qmp_pair[0]);
  FileDescriptor qmp_theirs(qmp_pair[1]);
  int console_pipe[2];
  if (pipe2(console_pipe, O_CLOEXEC) != 0) return errno_status("pipe");
  FileDescriptor console_read(console_pipe[0]);
  FileDescriptor console_write(console_pipe[1]);
  FileDescriptor wake(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake.valid()) return errno_status("eventfd");

  QemuLaunch launch;
  launch.binary = qemu.binary;
  launch.arguments = qemu_arguments(qemu_memory_bytes, qemu, incoming);
  launch.descriptors = {{kQemuQmpFd, qmp_theirs.get()},
                        {kQemuMemoryFd, memory.shared_fd()},
                        {kQemuRomFd, rom->get()},
                        {kQemuConsoleFd, console_write.get()}};
  if (incoming) launch.descriptors.push_back({kQemuIncomingFd, machine_file.get()});
  absl::StatusOr<QemuProcess> process = QemuProcess::start(launch);
  if (!process.ok()) return process.status();
  // QEMU holds its own copies now; ours would keep the console pipe open past its exit.
  qmp_theirs = FileDescriptor();
  console_write = FileDescriptor();
  machine_file = FileDescriptor();
  make_nonblocking(console_read.get());
  make_nonblocking(process->stderr_fd());

  // Why QEMU failed, in its own words when it left any.
  auto failure = [&](const char* what, const absl::Status& status) {
    process->kill();
    std::string diagnostics;
    pollfd ended{process->pidfd(), POLLIN, 0};
    poll(&ended, 1, 2000);
    read_available(process->stderr_fd(), [&](std::span<const uint8_t> bytes) {
      if (diagnostics.size() < kMaxDiagnosticsBytes) diagnostics.append(bytes.begin(), bytes.end());
    });
    while (!diagnostics.empty() && diagnostics.back() == '\n') diagnostics.pop_back();
    return absl::Status(
        status.code() == absl::StatusCode::kFailedPrecondition ? status.code()
                                                               : absl::StatusCode::kUnavailable,
        absl::StrCat("QEMU (", qemu.binary, ") ", what, ": ",
                     diagnostics.empty() ? std::string(status.message()) : diagnostics));
  };
  absl::StatusOr<QmpClient> qmp = QmpClient::connect(std::move(qmp_ours), kStartLimit);
  if (!qmp.ok()) return failure("did not start", qmp.status());
  if (incoming) {
    absl::Status loaded = set_migration_capabilities(*qmp);
    absl::StatusOr<nlohmann::json> started =
        loaded.ok() ? qmp->execute("migrate-incoming",
                                   {{"uri", absl::StrCat("fd:", kQemuIncomingFd)}}, kCommandLimit)
                    : absl::StatusOr<nlohmann::json>(loaded);
    loaded = started.ok() ? await_migration(*qmp, "load the snapshot's machine state")
                          : started.status();
    if (!loaded.ok()) return failure("could not restore the snapshot", loaded);
  }
  return std::unique_ptr<QemuInstance>(
      new QemuInstance(std::move(memory), std::move(guest), std::move(*process), std::move(*qmp),
                       std::move(console_read), std::move(wake), console, tsc_khz));
}

bool QemuInstance::drain_output(bool block) {
  auto to_console = [&](std::span<const uint8_t> bytes) { console_sink_.write(bytes); };
  auto to_diagnostics = [&](std::span<const uint8_t> bytes) {
    std::lock_guard lock(diagnostics_mutex_);
    if (diagnostics_.size() < kMaxDiagnosticsBytes) diagnostics_.append(bytes.begin(), bytes.end());
  };
  do {
    if (console_open_) console_open_ = read_available(console_.get(), to_console);
    if (diagnostics_open_) {
      diagnostics_open_ = read_available(process_.stderr_fd(), to_diagnostics);
    }
    if (!block || (!console_open_ && !diagnostics_open_)) break;
    pollfd fds[2] = {{console_open_ ? console_.get() : -1, POLLIN, 0},
                     {diagnostics_open_ ? process_.stderr_fd() : -1, POLLIN, 0}};
    // QEMU has exited: its ends are closed, so end of file is near; the bound is a safety net.
    if (poll(fds, 2, 1000) <= 0) break;
  } while (true);
  return console_open_ || diagnostics_open_;
}

std::string QemuInstance::guest_position() {
  std::lock_guard lock(qmp_mutex_);
  absl::StatusOr<nlohmann::json> registers = qmp_.execute(
      "human-monitor-command", {{"command-line", "info registers"}}, milliseconds(1000));
  if (!registers.ok() || !registers->is_string()) return "";
  static const std::regex kRip("RIP=([0-9a-fA-F]+)");
  std::smatch match;
  const std::string text = registers->get<std::string>();
  if (!std::regex_search(text, match, kRip)) return "";
  return absl::StrCat(", guest at rip 0x", match[1].str());
}

ExitReason QemuInstance::run(std::optional<std::chrono::nanoseconds> time_limit) {
  const Clock::time_point start = Clock::now();
  {
    std::lock_guard lock(qmp_mutex_);
    started_.store(true);
    if (!pause_requested_.load() && !stop_requested_.load()) {
      // A refusal means QEMU is gone; the loop below learns how it ended.
      (void)qmp_.execute("cont", nullptr, kCommandLimit);
    }
  }
  bool limit_reached = false;
  for (;;) {
    if (stop_requested_.load()) break;
    int timeout_ms = -1;
    if (time_limit) {
      const auto left = start + *time_limit - Clock::now();
      if (left <= Clock::duration::zero()) {
        limit_reached = true;
        break;
      }
      timeout_ms = static_cast<int>(std::chrono::ceil<milliseconds>(left).count());
    }
    pollfd fds[4] = {{process_.pidfd(), POLLIN, 0},
                     {wake_.get(), POLLIN, 0},
                     {console_open_ ? console_.get() : -1, POLLIN, 0},
                     {diagnostics_open_ ? process_.stderr_fd() : -1, POLLIN, 0}};
    const int ready = poll(fds, 4, timeout_ms);
    if (ready < 0 && errno != EINTR) break;
    if (fds[1].revents != 0) {
      uint64_t count;
      (void)!read(wake_.get(), &count, sizeof(count));
    }
    drain_output(/*block=*/false);
    if (fds[0].revents != 0) break;  // QEMU has exited
  }

  ExitReason reason;
  if (!process_.try_reap()) {
    // Still running: the time limit or a stop ends it.
    const std::string position = guest_position();
    process_.kill();
    pollfd ended{process_.pidfd(), POLLIN, 0};
    poll(&ended, 1, -1);
    process_.try_reap();
    drain_output(/*block=*/true);
    reason.kind = ExitKind::kTimeout;
    reason.message =
        limit_reached && time_limit
            ? absl::StrFormat("stopped after the time limit of %d ms%s",
                              std::chrono::duration_cast<milliseconds>(*time_limit).count(),
                              position)
            : absl::StrCat("stopped on request", position);
  } else {
    drain_output(/*block=*/true);
    bool guest_reset = false;
    {
      std::lock_guard lock(qmp_mutex_);
      qmp_.collect_events(milliseconds(200));
      for (const nlohmann::json& event : qmp_.take_events()) {
        if (event.value("event", "") == "SHUTDOWN" && event.contains("data") &&
            event["data"].value("reason", "") == "guest-reset") {
          guest_reset = true;
        }
      }
    }
    reason = decode_qemu_exit(*process_.try_reap(), memory_, guest_.layout, guest_reset,
                              qemu_diagnostics());
  }
  finished_.store(true);
  return reason;
}

void QemuInstance::stop() {
  stop_requested_.store(true);
  const uint64_t one = 1;
  (void)!write(wake_.get(), &one, sizeof(one));
}

void QemuInstance::pause() {
  std::lock_guard lock(qmp_mutex_);
  pause_requested_.store(true);
  if (started_.load() && !finished_.load()) {
    absl::StatusOr<nlohmann::json> stopped = qmp_.execute("stop", nullptr, kCommandLimit);
    if (!stopped.ok()) return;  // QEMU is gone; run() reports how it ended
  }
  paused_.store(true);
}

void QemuInstance::resume() {
  std::lock_guard lock(qmp_mutex_);
  if (!pause_requested_.load()) return;
  // Tell the guest about the pause before it runs again. Its clock stood still meanwhile (QEMU
  // stops the guest TSC and timers with the CPU), so no release fell into the pause: the resume
  // instant is 0.
  note_resume(memory_, 0);
  pause_requested_.store(false);
  if (started_.load() && !finished_.load()) {
    (void)qmp_.execute("cont", nullptr, kCommandLimit);
  }
  paused_.store(false);
}

absl::StatusOr<TelemetrySnapshot> QemuInstance::telemetry() const {
  return read_telemetry(memory_, tsc_khz_);
}

bool QemuInstance::telemetry_mid_update() const { return mortise::telemetry_mid_update(memory_); }

BootTiming QemuInstance::boot_timing() const {
  // The guest's TSC starts near zero when QEMU starts the CPU (or counts instructions under
  // icount): it cannot be compared with the host's.
  return read_boot_timing(memory_, /*tsc_synchronized=*/false, tsc_khz_);
}

absl::StatusOr<std::unique_ptr<SnapshotCapture>> QemuInstance::capture(
    const SnapshotLabels& labels) const {
  if (!paused_.load()) {
    return absl::FailedPreconditionError("the instance must be paused for a snapshot");
  }
  absl::StatusOr<std::unique_ptr<SnapshotCapture>> captured = begin_capture(
      snapshot::Engine::kQemu, labels, memory_, guest_.layout, guest_.image, tsc_khz_);
  if (!captured.ok()) return captured.status();
  FileDescriptor stream(memfd_create("mortise-qemu-state", MFD_CLOEXEC));
  if (!stream.valid()) return errno_status("memfd_create");
  {
    std::lock_guard lock(qmp_mutex_);
    if (finished_.load()) return absl::FailedPreconditionError("the guest has stopped");
    // A stopped machine is saved in one pass; QEMU stays stopped ("postmigrate") until cont.
    if (absl::Status status = set_migration_capabilities(qmp_); !status.ok()) return status;
    absl::StatusOr<nlohmann::json> handed =
        qmp_.execute_with_fd("getfd", {{"fdname", kSnapshotFdName}}, stream.get(), kCommandLimit);
    if (!handed.ok()) return handed.status();
    absl::StatusOr<nlohmann::json> started =
        qmp_.execute("migrate", {{"uri", absl::StrCat("fd:", kSnapshotFdName)}}, kCommandLimit);
    if (!started.ok()) return started.status();
    if (absl::Status saved = await_migration(qmp_, "save the machine state"); !saved.ok()) {
      return saved;
    }
  }
  absl::StatusOr<std::string> state = read_regular_file(stream.get(), snapshot::kMaxQemuStateBytes);
  if (!state.ok() || state->empty()) {
    return absl::InternalError(absl::StrCat(
        "QEMU's machine state: ", state.ok() ? "empty" : std::string(state.status().message())));
  }
  (*captured)->qemu_state = std::move(*state);
  return captured;
}

std::string QemuInstance::qemu_diagnostics() const {
  std::lock_guard lock(diagnostics_mutex_);
  return diagnostics_;
}

}  // namespace mortise
