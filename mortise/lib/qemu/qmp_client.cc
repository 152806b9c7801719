// QMP client; see qmp_client.h.
#include "qmp_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace mortise {
namespace {

// QEMU's answers are small; anything longer than this without a newline is not QMP.
constexpr size_t kMaxMessageBytes = 1 << 20;

}  // namespace

absl::StatusOr<QmpClient> QmpClient::connect(FileDescriptor socket,
                                             std::chrono::milliseconds timeout) {
  QmpClient client(std::move(socket));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  absl::StatusOr<nlohmann::json> greeting = client.read_message(deadline);
  if (!greeting.ok()) return greeting.status();
  if (!greeting->contains("QMP")) {
    return absl::InternalError(absl::StrCat("QEMU did not greet in QMP: ", greeting->dump()));
  }
  absl::StatusOr<nlohmann::json> ready =
      client.execute("qmp_capabilities", nullptr,
                     std::chrono::duration_cast<std::chrono::milliseconds>(
                         deadline - std::chrono::steady_clock::now()));
  if (!ready.ok()) return ready.status();
  return client;
}

absl::StatusOr<nlohmann::json> QmpClient::execute(const std::string& command,
                                                  const nlohmann::json& arguments,
                                                  std::chrono::milliseconds timeout) {
  if (absl::Status sent = send_command(command, arguments, -1); !sent.ok()) return sent;
  return await_answer(command, timeout);
}

absl::StatusOr<nlohmann::json> QmpClient::execute_with_fd(const std::string& command,
                                                          const nlohmann::json& arguments, int fd,
                                                          std::chrono::milliseconds timeout) {
  if (absl::Status sent = send_command(command, arguments, fd); !sent.ok()) return sent;
  return await_answer(command, timeout);
}

absl::Status QmpClient::send_command(const std::string& command, const nlohmann::json& arguments,
                                     int fd) {
  nlohmann::json request{{"execute", command}};
  if (!arguments.is_null()) request["arguments"] = arguments;
  const std::string line = request.dump() + "\n";
  for (size_t sent = 0; sent < line.size();) {
    iovec part{const_cast<char*>(line.data() + sent), line.size() - sent};
    msghdr message{};
    message.msg_iov = &part;
    message.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    if (fd >= 0 && sent == 0) {
      // The descriptor travels with the command's first byte; QEMU takes it from there.
      message.msg_control = control;
      message.msg_controllen = sizeof(control);
      cmsghdr* header = CMSG_FIRSTHDR(&message);
      header->cmsg_level = SOL_SOCKET;
      header->cmsg_type = SCM_RIGHTS;
      header->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(header), &fd, sizeof(int));
    }
    const ssize_t n = sendmsg(socket_.get(), &message, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::UnavailableError(
          absl::StrCat("QMP: cannot send ", command, ": ", std::strerror(errno)));
    }
    sent += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::json> QmpClient::await_answer(const std::string& command,
                                                       std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    absl::StatusOr<nlohmann::json> message = read_message(deadline);
    if (!message.ok()) {
      return absl::Status(message.status().code(),
                          absl::StrCat("QMP ", command, ": ", message.status().message()));
    }
    if (message->contains("event")) {
      events_.push_back(std::move(*message));
      continue;
    }
    if (message->contains("return")) return (*message)["return"];
    if (message->contains("error")) {
      const nlohmann::json& error = (*message)["error"];
      return absl::FailedPreconditionError(absl::StrCat("QEMU refused ", command, ": ",
                                                        error.value("class", "Error"), ": ",
                                                        error.value("desc", "")));
    }
    return absl::InternalError(
        absl::StrCat("QMP ", command, ": unexpected answer ", message->dump()));
  }
}

void QmpClient::collect_events(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    absl::StatusOr<nlohmann::json> message = read_message(deadline);
    if (!message.ok()) return;
    if (message->contains("event")) events_.push_back(std::move(*message));
  }
}

std::vector<nlohmann::json> QmpClient::take_events() {
  std::vector<nlohmann::json> events;
  events.swap(events_);
  return events;
}

absl::StatusOr<nlohmann::json> QmpClient::read_message(
    std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    const size_t newline = buffered_.find('\n');
    if (newline != std::string::npos) {
      const std::string line = buffered_.substr(0, newline);
      buffered_.erase(0, newline + 1);
      if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
      nlohmann::json message = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (message.is_discarded() || !message.is_object()) {
        return absl::InternalError(absl::StrCat("QMP: not a JSON object: ", line.substr(0, 200)));
      }
      return message;
    }
    if (buffered_.size() > kMaxMessageBytes) {
      return absl::InternalError("QMP: message longer than 1 MiB");
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return absl::DeadlineExceededError("QEMU did not answer in time");
    pollfd readable{socket_.get(), POLLIN, 0};
    const int wait_ms = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1);
    const int ready = poll(&readable, 1, wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char chunk[4096];
    const ssize_t n = read(socket_.get(), chunk, sizeof(chunk));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return absl::UnavailableError("QEMU closed its QMP socket");
    buffered_.append(chunk, static_cast<size_t>(n));
  }
}

}  // namespace mortise
