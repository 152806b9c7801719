// mortise-vmm child processes; see vmm_child.h.
#include "vmm_child.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "control_channel.h"

extern char** environ;

namespace mortise {
namespace {

// Where the child finds its control socket and its image.
constexpr int kChildControlFd = 3;
constexpr int kChildImageFd = 4;
constexpr int kSendStallLimitMs = 1000;

int pidfd_open(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

int pidfd_send_signal(int pidfd, int signal) {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0));
}

// A close-on-exec duplicate of `fd` numbered above the descriptors the child gets, so that
// posix_spawn's dup2 onto 3 and 4 can never find its own source already sitting there.
absl::StatusOr<FileDescriptor> duplicate_high(int fd) {
  const int duplicate = fcntl(fd, F_DUPFD_CLOEXEC, kChildImageFd + 1);
  if (duplicate < 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot duplicate a descriptor: ", std::strerror(errno)));
  }
  return FileDescriptor(duplicate);
}

std::string cpu_policy_argument(tenon::v1::CpuPolicy policy) {
  switch (policy) {
    case tenon::v1::CPU_POLICY_REALTIME:
      return "realtime";
    case tenon::v1::CPU_POLICY_DEDICATED:
      return "dedicated";
    default:
      return "anywhere";
  }
}

}  // namespace

std::string describe_wait_status(int wait_status) {
  if (WIFSIGNALED(wait_status)) {
    const int signal = WTERMSIG(wait_status);
    const char* name = strsignal(signal);
    return absl::StrCat("killed by signal ", signal, " (", name != nullptr ? name : "unknown", ")",
                        WCOREDUMP(wait_status) ? ", core dumped" : "");
  }
  if (WIFEXITED(wait_status)) return absl::StrCat("exited with status ", WEXITSTATUS(wait_status));
  return absl::StrCat("ended with wait status ", wait_status);
}

absl::StatusOr<std::unique_ptr<VmmChild>> VmmChild::spawn(VmmLaunch launch) {
  int sockets[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets) != 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot create the control socketpair: ", std::strerror(errno)));
  }
  FileDescriptor ours(sockets[0]);
  FileDescriptor theirs_low(sockets[1]);
  absl::StatusOr<FileDescriptor> theirs = duplicate_high(theirs_low.get());
  if (!theirs.ok()) return theirs.status();
  absl::StatusOr<FileDescriptor> image = duplicate_high(launch.image.get());
  if (!image.ok()) return image.status();
  // Channel descriptors go to 5, 6, 7, ...: their sources are first moved above that range.
  const int first_channel_fd = kChildImageFd + 1;
  const int channel_fd_end = first_channel_fd + 3 * static_cast<int>(launch.channels.size());
  std::vector<FileDescriptor> channel_fds;
  for (const IvcEndpointConfig& channel : launch.channels) {
    for (int fd : {channel.region_fd, channel.ring_fd, channel.doorbell_fd}) {
      FileDescriptor high(fcntl(fd, F_DUPFD_CLOEXEC, channel_fd_end));
      if (!high.valid()) {
        return absl::ResourceExhaustedError(
            absl::StrCat("cannot duplicate a channel descriptor: ", std::strerror(errno)));
      }
      channel_fds.push_back(std::move(high));
    }
  }

  std::vector<std::string> arguments = {
      launch.vmm_binary,
      "--name",
      launch.name,
      "--control-fd",
      std::to_string(kChildControlFd),
      launch.source == VmmSource::kSnapshot ? "--snapshot-fd" : "--image-fd",
      std::to_string(kChildImageFd),
      "--memory",
      std::to_string(launch.memory_bytes),
      "--stack",
      std::to_string(launch.stack_bytes),
      "--app-run-ns",
      std::to_string(launch.app_run_ns),
      "--cpu-policy",
      cpu_policy_argument(launch.cpu_policy),
      "--rt-priority",
      std::to_string(launch.rt_priority),
      "--console-buffer",
      std::to_string(launch.console_buffer_bytes),
  };
  arguments.insert(arguments.end(), {"--engine", engine_name(launch.engine)});
  if (launch.engine == EngineKind::kQemu) {
    arguments.insert(arguments.end(), {"--qemu-binary", launch.qemu.binary});
    if (launch.qemu.icount) arguments.push_back("--icount");
    if (launch.qemu.kvm_acceleration) arguments.push_back("--qemu-kvm");
  }
  if (!launch.management_cpus.empty()) {
    arguments.push_back("--management-cpus");
    arguments.push_back(absl::StrJoin(launch.management_cpus, ","));
  }
  if (launch.vcpu_cpu) {
    arguments.push_back("--vcpu-cpu");
    arguments.push_back(std::to_string(*launch.vcpu_cpu));
  }
  for (size_t i = 0; i < launch.channels.size(); ++i) {
    const int base = first_channel_fd + 3 * static_cast<int>(i);
    arguments.push_back("--ivc-channel");
    arguments.push_back(absl::StrCat(launch.channels[i].name, ":", launch.channels[i].side, ":",
                                     base, ":", base + 1, ":", base + 2));
  }
  std::vector<char*> argv;
  for (std::string& argument : arguments) argv.push_back(argument.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, theirs->get(), kChildControlFd);
  posix_spawn_file_actions_adddup2(&actions, image->get(), kChildImageFd);
  for (size_t i = 0; i < channel_fds.size(); ++i) {
    posix_spawn_file_actions_adddup2(&actions, channel_fds[i].get(),
                                     first_channel_fd + static_cast<int>(i));
  }
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  // mortised blocks its shutdown signals in every thread to take them with sigwait; the child
  // must not inherit that, nor any handler. Its own process group keeps a terminal's ^C away:
  // a VMM ends when mortised tells it to or goes away, not on a signal meant for mortised.
  sigset_t no_signals, all_signals;
  sigemptyset(&no_signals);
  sigfillset(&all_signals);
  posix_spawnattr_setsigmask(&attributes, &no_signals);
  posix_spawnattr_setsigdefault(&attributes, &all_signals);
  posix_spawnattr_setpgroup(&attributes, 0);
  posix_spawnattr_setflags(&attributes,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  pid_t pid = 0;
  const int error =
      posix_spawn(&pid, launch.vmm_binary.c_str(), &actions, &attributes, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (error != 0) {
    return absl::InternalError(
        absl::StrCat("cannot start ", launch.vmm_binary, ": ", std::strerror(error)));
  }
  FileDescriptor pidfd(pidfd_open(pid));
  if (!pidfd.valid()) {
    const int open_error = errno;
    ::kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return absl::ResourceExhaustedError(
        absl::StrCat("pidfd_open of mortise-vmm failed: ", std::strerror(open_error)));
  }
  if (fcntl(ours.get(), F_SETFL, fcntl(ours.get(), F_GETFL) | O_NONBLOCK) != 0) {
    // Without it the event loop could block on one child; the child cannot be supervised.
    ::kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return absl::InternalError("cannot make the control socket non-blocking");
  }
  return std::unique_ptr<VmmChild>(new VmmChild(pid, std::move(ours), std::move(pidfd)));
}

VmmChild::~VmmChild() {
  std::lock_guard lock(reap_mutex_);
  if (!wait_status_) {
    pidfd_send_signal(pidfd_.get(), SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

absl::Status VmmChild::send(const tenon::v1::VmmCommand& command) {
  absl::StatusOr<std::string> frame = frame_message(command);
  if (!frame.ok()) return frame.status();
  std::lock_guard lock(send_mutex_);
  // The socket is non-blocking for the event loop's reads; commands are small and the child
  // reads them promptly, so a socket that stays full for a second means a stuck child.
  size_t done = 0;
  while (done < frame->size()) {
    const ssize_t written =
        ::send(control_.get(), frame->data() + done, frame->size() - done, MSG_NOSIGNAL);
    if (written >= 0) {
      done += static_cast<size_t>(written);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      pollfd writable{control_.get(), POLLOUT, 0};
      if (poll(&writable, 1, kSendStallLimitMs) > 0) continue;
      return absl::UnavailableError(absl::StrCat(
          "mortise-vmm (pid ", pid_, ") has not read its commands for ", kSendStallLimitMs, " ms"));
    }
    return absl::UnavailableError(
        absl::StrCat("cannot send to mortise-vmm (pid ", pid_, "): ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

void VmmChild::kill() {
  std::lock_guard lock(reap_mutex_);
  if (!wait_status_) pidfd_send_signal(pidfd_.get(), SIGKILL);
}

std::optional<int> VmmChild::try_reap() {
  std::lock_guard lock(reap_mutex_);
  if (wait_status_) return wait_status_;
  int status = 0;
  pid_t reaped;
  do {
    reaped = waitpid(pid_, &status, WNOHANG);
  } while (reaped < 0 && errno == EINTR);
  if (reaped == pid_) wait_status_ = status;
  return wait_status_;
}

}  // namespace mortise
