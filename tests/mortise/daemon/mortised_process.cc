// A real mortised for tests and benchmarks; see mortised_process.h.
#include "mortised_process.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

extern char** environ;

namespace mortise::testing {

absl::StatusOr<std::unique_ptr<MortisedProcess>> MortisedProcess::start(
    const MortisedOptions& options) {
  std::unique_ptr<MortisedProcess> process(new MortisedProcess());
  char directory[] = "/tmp/mortised-XXXXXX";
  if (mkdtemp(directory) == nullptr) return absl::InternalError("mkdtemp failed");
  process->directory_ = directory;
  process->socket_path_ = process->directory_ + "/mortised.sock";
  process->log_path_ = process->directory_ + "/mortised.log";

  std::vector<std::string> arguments = {options.mortised_binary, "--socket", process->socket_path_,
                                        "--state-dir", process->directory_ + "/state"};
  if (!options.image_directory.empty()) {
    arguments.push_back("--image-dir");
    arguments.push_back(options.image_directory);
  }
  for (const std::string& argument : options.extra_arguments) arguments.push_back(argument);
  std::vector<char*> argv;
  for (std::string& argument : arguments) argv.push_back(argument.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, process->log_path_.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  const int error = posix_spawn(&process->pid_, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) {
    return absl::InternalError(absl::StrCat("cannot start ", argv[0], ": ", strerror(error)));
  }
  process->stub_ = process->new_stub();

  const absl::Time deadline = absl::Now() + options.startup_limit;
  grpc::Status last;
  for (;;) {
    int status = 0;
    if (waitpid(process->pid_, &status, WNOHANG) == process->pid_) {
      process->reaped_ = true;
      return absl::InternalError(absl::StrCat("mortised ended during startup (wait status ", status,
                                              "): ", process->log()));
    }
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
    context.set_wait_for_ready(true);
    tenon::v1::HostInfo info;
    last = process->stub_->GetHostInfo(&context, {}, &info);
    if (last.ok()) return process;
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "mortised did not answer within ", absl::FormatDuration(options.startup_limit),
          " (last: ", last.error_message(), "): ", process->log()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::unique_ptr<tenon::v1::MortiseService::Stub> MortisedProcess::new_stub() const {
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(32 << 20);
  // A channel per stub: connections are never shared, so one test's client cannot hold
  // another's connection open.
  arguments.SetInt("grpc.use_local_subchannel_pool", 1);
  // mortised may not listen yet when the first call goes out: retry the connection quickly
  // rather than with gRPC's default backoff of a second and more.
  arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 10);
  arguments.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 10);
  arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  return tenon::v1::MortiseService::NewStub(grpc::CreateCustomChannel(
      "unix:" + socket_path_, grpc::InsecureChannelCredentials(), arguments));
}

std::string MortisedProcess::log() const {
  std::ifstream file(log_path_);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

absl::StatusOr<int> MortisedProcess::terminate() {
  if (reaped_) return absl::FailedPreconditionError("mortised has ended already");
  kill(pid_, SIGTERM);
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  for (;;) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      reaped_ = true;
      return status;
    }
    if (absl::Now() > deadline) return absl::DeadlineExceededError("mortised did not stop");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

MortisedProcess::~MortisedProcess() {
  stub_.reset();
  if (!reaped_ && pid_ > 0 && !terminate().ok()) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  std::error_code ignored;
  if (!directory_.empty()) std::filesystem::remove_all(directory_, ignored);
}

bool wait_until(const std::function<bool()>& condition, absl::Duration limit) {
  const absl::Time deadline = absl::Now() + limit;
  for (;;) {
    if (condition()) return true;
    if (absl::Now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

int open_descriptor_count(pid_t pid) {
  DIR* directory = opendir(absl::StrCat("/proc/", pid, "/fd").c_str());
  if (directory == nullptr) return -1;
  int count = 0;
  while (dirent* entry = readdir(directory)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(directory);
  return count;
}

bool process_running(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string text;
  if (!std::getline(stat, text)) return false;
  // pid (comm) STATE ...; comm may hold spaces and parentheses, so look after the last ')'.
  const size_t close = text.rfind(')');
  return close != std::string::npos && close + 2 < text.size() && text[close + 2] != 'Z' &&
         text[close + 2] != 'X';
}

absl::StatusOr<MemoryUse> memory_use(pid_t pid) {
  std::ifstream file(absl::StrCat("/proc/", pid, "/smaps_rollup"));
  if (!file) return absl::NotFoundError(absl::StrCat("no process ", pid));
  MemoryUse use;
  for (std::string line; std::getline(file, line);) {
    std::vector<std::string> fields = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    if (fields.size() < 2) continue;
    if (fields[0] == "Rss:") (void)absl::SimpleAtoi(fields[1], &use.rss_kib);
    if (fields[0] == "Pss:") (void)absl::SimpleAtoi(fields[1], &use.pss_kib);
  }
  return use;
}

}  // namespace mortise::testing
