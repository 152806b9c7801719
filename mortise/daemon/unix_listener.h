// mortised's unix socket. mortised accepts connections itself, so that it can read each
// caller's credentials (SO_PEERCRED) before handing the connection to gRPC; gRPC names such a
// connection "fd:<n>" as its peer, which is how a call finds its caller's credentials.
#pragma once

#include <sys/socket.h>

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "kvm.h"

namespace grpc {
class Server;
}

namespace mortise {

class UnixListener {
 public:
  // Binds `path` (a stale socket file left by a dead mortised is replaced; a live one is an
  // error) and listens. The socket file is connectable by every user: whether a caller may do
  // anything is decided per call from its credentials.
  static absl::StatusOr<std::unique_ptr<UnixListener>> bind(const std::string& path);
  ~UnixListener();

  // Accepts connections on a thread of its own and adds each to `server`.
  void serve(grpc::Server* server);
  // Stops accepting and removes the socket file.
  void stop();

  // The credentials of the connection gRPC calls `peer`, as they were when it connected.
  std::optional<ucred> credentials_of(const std::string& peer) const;

 private:
  UnixListener(std::string path, FileDescriptor socket)
      : path_(std::move(path)), socket_(std::move(socket)) {}
  void accept_loop(grpc::Server* server);

  const std::string path_;
  FileDescriptor socket_;
  std::thread thread_;
  mutable std::mutex mutex_;
  bool stopped_ = false;
  // By descriptor number. A number is reused only after gRPC closed the connection that had it,
  // and the entry is overwritten before the new connection is handed to gRPC.
  std::map<int, ucred> credentials_;
};

}  // namespace mortise
