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
#include <thread>

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
  // The "hypervisor" CPU flag: this host is itself a guest, so its KVM is nested.
  return {{"cores", std::thread::hardware_concurrency()},
          {"kvm_nested", text.find(" hypervisor") != std::string::npos}};
}

}  // namespace tenon::bench
