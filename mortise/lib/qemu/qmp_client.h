// A client of QEMU's machine protocol (QMP): one JSON object per line over a connected socket.
// Commands are answered in order; asynchronous events may arrive before any answer and are kept
// for take_events(). Not thread-safe: one caller at a time.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "kvm.h"

namespace mortise {

class QmpClient {
 public:
  // Takes the QMP socket, reads QEMU's greeting and enters command mode.
  static absl::StatusOr<QmpClient> connect(FileDescriptor socket,
                                           std::chrono::milliseconds timeout);

  // Runs one command and returns its "return" value. QEMU's refusal is FAILED_PRECONDITION with
  // its error class and description; no answer within `timeout` is DEADLINE_EXCEEDED; a closed
  // socket (QEMU gone) is UNAVAILABLE.
  absl::StatusOr<nlohmann::json> execute(const std::string& command,
                                         const nlohmann::json& arguments,
                                         std::chrono::milliseconds timeout);
  // The same, handing QEMU a copy of `fd` with the command (SCM_RIGHTS), as `getfd` and
  // `add-fd` expect.
  absl::StatusOr<nlohmann::json> execute_with_fd(const std::string& command,
                                                 const nlohmann::json& arguments, int fd,
                                                 std::chrono::milliseconds timeout);

  // Reads what QEMU sends until it closes the socket or `timeout` passes, keeping the events (for
  // the last words of a QEMU that has exited).
  void collect_events(std::chrono::milliseconds timeout);

  // Events received so far, oldest first; the list is emptied.
  std::vector<nlohmann::json> take_events();

 private:
  explicit QmpClient(FileDescriptor socket) : socket_(std::move(socket)) {}
  absl::Status send_command(const std::string& command, const nlohmann::json& arguments, int fd);
  absl::StatusOr<nlohmann::json> await_answer(const std::string& command,
                                              std::chrono::milliseconds timeout);
  // The next message, or an error when none comes in time.
  absl::StatusOr<nlohmann::json> read_message(std::chrono::steady_clock::time_point deadline);

  FileDescriptor socket_;
  std::string buffered_;
  std::vector<nlohmann::json> events_;
};

}  // namespace mortise
