// mortised's listening socket; see unix_listener.h.
#include "unix_listener.h"

#include <grpcpp/server.h>
#include <grpcpp/server_posix.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace mortise {

absl::StatusOr<std::unique_ptr<UnixListener>> UnixListener::bind(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("socket path ", path, " is longer than ",
                                                   sizeof(address.sun_path) - 1, " bytes"));
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  struct stat existing {};
  if (lstat(path.c_str(), &existing) == 0) {
    if (!S_ISSOCK(existing.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat(path, " exists and is not a socket"));
    }
    FileDescriptor probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (probe.valid() &&
        connect(probe.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) {
      return absl::AlreadyExistsError(absl::StrCat("another mortised serves ", path));
    }
    unlink(path.c_str());  // left behind by a mortised that died
  }
  FileDescriptor listening(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listening.valid()) {
    return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  }
  if (::bind(listening.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot bind ", path, ": ", std::strerror(errno)));
  }
  chmod(path.c_str(), 0666);
  if (listen(listening.get(), 128) != 0) {
    return absl::InternalError(absl::StrCat("listen on ", path, ": ", std::strerror(errno)));
  }
  return std::unique_ptr<UnixListener>(new UnixListener(path, std::move(listening)));
}

UnixListener::~UnixListener() { stop(); }

void UnixListener::serve(grpc::Server* server) {
  thread_ = std::thread([this, server] { accept_loop(server); });
}

void UnixListener::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopped_) return;
    stopped_ = true;
  }
  // Wakes accept() with an error.
  shutdown(socket_.get(), SHUT_RDWR);
  if (thread_.joinable()) thread_.join();
  unlink(path_.c_str());
}

void UnixListener::accept_loop(grpc::Server* server) {
  for (;;) {
    // Non-blocking: gRPC reads the descriptor from its own poller threads.
    const int connection = accept4(socket_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (connection < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      {
        std::lock_guard lock(mutex_);
        if (stopped_) return;
      }
      // Out of descriptors or memory: keep serving the connections we have.
      std::cerr << "mortised: accept: " << std::strerror(errno) << std::endl;
      if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      return;
    }
    ucred credentials{};
    socklen_t length = sizeof(credentials);
    if (getsockopt(connection, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) {
      close(connection);
      continue;
    }
    {
      std::lock_guard lock(mutex_);
      credentials_[connection] = credentials;
    }
    // gRPC owns the descriptor from here on.
    grpc::AddInsecureChannelFromFd(server, connection);
  }
}

std::optional<ucred> UnixListener::credentials_of(const std::string& peer) const {
  constexpr std::string_view kPrefix = "fd:";
  if (!peer.starts_with(kPrefix)) return std::nullopt;
  int fd = -1;
  if (!absl::SimpleAtoi(peer.substr(kPrefix.size()), &fd)) return std::nullopt;
  std::lock_guard lock(mutex_);
  auto found = credentials_.find(fd);
  if (found == credentials_.end()) return std::nullopt;
  return found->second;
}

}  // namespace mortise
