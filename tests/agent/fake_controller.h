// A stand-in for tenon-controller's AgentService, for the agent's tests: a real gRPC server on
// 127.0.0.1 (port 0) that speaks agent.proto, scripted by the test. It hands out a credential for
// a known bootstrap token, sends the DesiredState it is given, serves images in chunks (and can
// corrupt one), can end the stream with any status, and records everything the agent sent.
#pragma once

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "tenon/v1/agent.grpc.pb.h"

namespace tenon::agent::testing {

class FakeController {
 public:
  static std::unique_ptr<FakeController> start();
  ~FakeController();

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  // Script.
  void add_bootstrap_token(const std::string& token);
  // Stores an image; returns its digest.
  std::string add_image(const std::string& bytes);
  void set_chunk_bytes(size_t bytes);
  // Flips a byte in the chunk with this index (0-based) of every transfer; -1: none.
  void set_corrupt_chunk(int index);
  void set_send_chunk_sha256(bool send);
  void set_telemetry_interval(absl::Duration interval);
  // Sends it on the current stream (and on later ones whose Hello is behind).
  void set_desired_state(const tenon::v1::DesiredState& desired);
  // Ends the current stream with `status` (the next message from the agent is its last).
  void end_stream(const grpc::Status& status);

  // Records.
  std::vector<tenon::v1::AgentMessage> received() const;
  std::vector<tenon::v1::Hello> hellos() const;
  std::vector<tenon::v1::EnrollRequest> enrollments() const;
  std::string credential_of(const std::string& device_name) const;
  int streams_started() const;

 private:
  class Service;
  struct Stream {
    std::mutex mutex;
    std::condition_variable wake;
    std::deque<tenon::v1::ControllerMessage> outgoing;
    std::optional<grpc::Status> end;
    bool finished = false;
    uint64_t next_sequence = 1;
    uint64_t acknowledged_version = 0;
  };

  FakeController() = default;
  grpc::Status enroll(const tenon::v1::EnrollRequest& request, tenon::v1::EnrollResponse* response);
  grpc::Status connect(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<tenon::v1::ControllerMessage, tenon::v1::AgentMessage>* stream);
  void queue(Stream& stream, tenon::v1::ControllerMessage message);
  void serve_image(Stream& stream, const tenon::v1::AgentMessage& request);

  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;

  mutable std::mutex mutex_;
  std::set<std::string> tokens_;
  std::map<std::string, std::string> credentials_;  // device name -> credential
  std::map<std::string, std::string> images_;       // digest -> bytes
  size_t chunk_bytes_ = 4096;
  int corrupt_chunk_ = -1;
  bool send_chunk_sha256_ = true;
  absl::Duration telemetry_interval_ = absl::Milliseconds(200);
  std::optional<tenon::v1::DesiredState> desired_;
  std::shared_ptr<Stream> active_;
  int streams_started_ = 0;
  std::vector<tenon::v1::AgentMessage> received_;
  std::vector<tenon::v1::EnrollRequest> enrollments_;
};

}  // namespace tenon::agent::testing
