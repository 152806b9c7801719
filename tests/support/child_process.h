// A daemon under test: started with fork/exec, its stderr and stdout in a log file, stopped with
// a signal, its exit status collected. Used by the end-to-end tests that run tenon-controller,
// tenon-agent and friends as real processes.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace tenon::test_support {

class ChildProcess {
 public:
  // Starts arguments[0] (a path) with the rest as arguments; output goes to `log_path`.
  static std::optional<ChildProcess> start(const std::vector<std::string>& arguments,
                                           const std::string& log_path);
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  // Kills (SIGKILL) and reaps a child still running.
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  bool running();
  void signal(int number);
  // Waits for the exit: the exit code, 128 + signal when killed, nullopt after `limit`.
  std::optional<int> wait_exit(std::chrono::milliseconds limit);
  // SIGTERM, then SIGKILL after `grace`; the exit status as wait_exit reports it.
  std::optional<int> stop(std::chrono::milliseconds grace = std::chrono::seconds(10));
  std::string log() const;

 private:
  ChildProcess(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}

  pid_t pid_ = -1;
  std::optional<int> exit_status_;
  std::string log_path_;
};

// Polls `condition` every 50 ms until it holds or `limit` passes; whether it held.
bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds limit);

}  // namespace tenon::test_support
