// Shared benchmark plumbing; see bench_report.h.
#include "bench_report.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iterator>
#include <optional>
#include <thread>

#include "shell_command.h"

extern char** environ;

namespace tenon::bench {

ProcessResult run_process(const std::vector<std::string>& arguments) {
  ProcessResult result;
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return result;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
  std::vector<char*> argv;
  for (const std::string& argument : arguments) argv.push_back(const_cast<char*>(argument.c_str()));
  argv.push_back(nullptr);
  const auto start = std::chrono::steady_clock::now();
  pid_t pid;
  const int spawn_error = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  if (spawn_error != 0) {
    close(pipe_fds[0]);
    return result;
  }
  char buffer[4096];
  ssize_t count;
  while ((count = read(pipe_fds[0], buffer, sizeof(buffer))) > 0)
    result.output.append(buffer, count);
  close(pipe_fds[0]);
  int status = 0;
  rusage usage{};
  wait4(pid, &status, 0, &usage);
  result.wall_ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.max_rss_kib = usage.ru_maxrss;
  return result;
}

nlohmann::json summarize(std::vector<double> samples) {
  if (samples.empty()) return nullptr;
  std::sort(samples.begin(), samples.end());
  auto percentile = [&](double p) {
    const size_t index = static_cast<size_t>(p * static_cast<double>(samples.size() - 1) + 0.5);
    return samples[std::min(index, samples.size() - 1)];
  };
  double sum = 0;
  for (double sample : samples) sum += sample;
  return {{"count", samples.size()}, {"min", samples.front()},
          {"p50", percentile(0.5)},  {"p99", percentile(0.99)},
          {"max", samples.back()},   {"mean", sum / static_cast<double>(samples.size())}};
}

nlohmann::json machine_info() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  const std::string text((std::istreambuf_iterator<char>(cpuinfo)),
                         std::istreambuf_iterator<char>());
  // The "hypervisor" CPU flag says this host is itself a guest; what its /dev/kvm is (if any)
  // is separate: hardware virtualization needs vmx or svm, and kvm_pvm is a paravirtual KVM
  // that runs guest code through an instruction emulator.
  const bool host_is_a_guest = text.find(" hypervisor") != std::string::npos;
  const bool hardware =
      text.find(" vmx") != std::string::npos || text.find(" svm") != std::string::npos;
  std::string kvm = "absent";
  if (access("/dev/kvm", R_OK | W_OK) == 0) {
    if (access("/sys/module/kvm_pvm", F_OK) == 0) {
      kvm = "paravirtual (kvm_pvm: guest code runs in an instruction emulator)";
    } else if (hardware) {
      kvm = host_is_a_guest ? "nested hardware virtualization" : "hardware virtualization";
    } else {
      kvm = "present without vmx/svm";
    }
  }
  return {{"cores", std::thread::hardware_concurrency()},
          {"host_is_a_guest", host_is_a_guest},
          {"kvm", kvm}};
}

Engine auto_engine(const std::string& mortise_binary) {
  const ProcessResult probe = run_process({mortise_binary, "engines", "-o", "json"});
  const std::optional<nlohmann::json> record = test_support::last_json_line(probe.output);
  if (!record) return {"", "mortise engines printed no report"};
  if ((*record)["auto"].is_string()) return {(*record)["auto"].get<std::string>(), ""};
  return {"", "no engine can run here: kvm: " + (*record)["kvm"].value("problem", "") +
                  "; qemu: " + (*record)["qemu"].value("problem", "")};
}

std::string image_dir(const std::string& base, const std::string& engine) {
  return engine == "kvm" ? base + "/kvm" : base;
}

}  // namespace tenon::bench
