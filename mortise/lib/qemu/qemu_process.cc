// QEMU processes; see qemu_process.h.
#include "qemu_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace mortise {
namespace {

int pidfd_open(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

// A close-on-exec copy of `fd` numbered above every descriptor the child gets, so that the
// child's dup2 onto small numbers never overwrites a source it has yet to copy.
int high_copy(int fd, int above) { return fcntl(fd, F_DUPFD_CLOEXEC, above + 1); }

}  // namespace

absl::StatusOr<QemuProcess> QemuProcess::start(const QemuLaunch& launch) {
  int highest = STDERR_FILENO;
  for (const auto& [number, fd] : launch.descriptors) {
    if (number <= STDERR_FILENO || fd < 0) {
      return absl::InvalidArgumentError("QEMU descriptors are numbered from 3");
    }
    highest = std::max(highest, number);
  }
  std::vector<std::pair<int, FileDescriptor>> copies;
  for (const auto& [number, fd] : launch.descriptors) {
    FileDescriptor copy(high_copy(fd, highest));
    if (!copy.valid()) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot hand a descriptor to QEMU: ", std::strerror(errno)));
    }
    copies.emplace_back(number, std::move(copy));
  }
  int error_pipe[2];
  if (pipe2(error_pipe, O_CLOEXEC) != 0) {
    return absl::ResourceExhaustedError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  FileDescriptor error_read(error_pipe[0]);
  FileDescriptor error_write(error_pipe[1]);
  const int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd < 0) return absl::InternalError("cannot open /dev/null");
  FileDescriptor null_device(null_fd);

  std::vector<std::string> words;
  words.push_back(launch.binary);
  words.insert(words.end(), launch.arguments.begin(), launch.arguments.end());
  std::vector<char*> argv;
  for (std::string& word : words) argv.push_back(word.data());
  argv.push_back(nullptr);
  const pid_t parent = getpid();

  const pid_t pid = fork();
  if (pid < 0) return absl::ResourceExhaustedError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    // Only async-signal-safe calls from here to exec.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the parent died before the line above
    dup2(null_device.get(), STDIN_FILENO);
    dup2(null_device.get(), STDOUT_FILENO);
    dup2(error_write.get(), STDERR_FILENO);
    for (const auto& [number, copy] : copies) dup2(copy.get(), number);
    syscall(SYS_close_range, static_cast<unsigned>(highest + 1), ~0u, 0u);
    execvp(argv[0], argv.data());
    const char message[] = "mortise: cannot run QEMU\n";
    (void)!write(STDERR_FILENO, message, sizeof(message) - 1);
    _exit(127);
  }
  FileDescriptor pidfd(pidfd_open(pid));
  if (!pidfd.valid()) {
    ::kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return absl::InternalError(absl::StrCat("pidfd_open: ", std::strerror(errno)));
  }
  return QemuProcess(pid, std::move(pidfd), std::move(error_read));
}

QemuProcess::QemuProcess(QemuProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::move(other.pidfd_)),
      stderr_(std::move(other.stderr_)),
      wait_status_(other.wait_status_) {}

QemuProcess::~QemuProcess() {
  if (pid_ < 0) return;
  if (!wait_status_) {
    kill();
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

void QemuProcess::kill() {
  if (pid_ < 0 || wait_status_) return;
  syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
}

std::optional<int> QemuProcess::try_reap() {
  if (wait_status_ || pid_ < 0) return wait_status_;
  int status = 0;
  const pid_t reaped = waitpid(pid_, &status, WNOHANG);
  if (reaped == pid_) wait_status_ = status;
  return wait_status_;
}

}  // namespace mortise
